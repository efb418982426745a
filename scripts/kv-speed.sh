#!/usr/bin/env bash
# KV cache decode speed per format at long contexts (issue #4): tfusion-bench decodes 64 tokens (tg64) after
# 1K, 4K and 16K tokens of context with the cache in f16, q8 and q4 (K and V alike), on one synthetic model
# with Qwen2.5-0.5B's shapes (24 layers, 2 KV heads of 64: attention is a large share of a step at 16K), Q4_0
# weights. Prints tfusion-bench's tables; JSON per format in OUT_DIR.
#   scripts/kv-speed.sh BIN_DIR VOCAB.gguf OUT_DIR [THREADS]
# BIN_DIR holds synth/tfusion-synth and bench/tfusion-bench (e.g. build/cpu-release/tools). Environment: DEPTHS
# (default 1024,4096,16384), REPS (default 3), FORMATS (default "f16 q8 q4").
set -euo pipefail
bin=$1 vocab=$2 out=$3 threads=${4:-$(nproc)}
mkdir -p "$out"
model=$out/qwen2.5-0.5b-shape-q4_0.gguf
[ -f "$model" ] || "$bin/synth/tfusion-synth" --preset Qwen2.5-0.5B --vocab "$vocab" --type q4_0 -o "$model" >&2
for t in ${FORMATS:-f16 q8 q4}; do
  echo "== K $t V $t"
  "$bin/bench/tfusion-bench" -m "$model" --backend cpu -p 0 -n 64 -d "${DEPTHS:-1024,4096,16384}" -t "$threads" -ctk "$t" \
    -ctv "$t" -r "${REPS:-3}" --json "$out/kv-$t.json"
done
