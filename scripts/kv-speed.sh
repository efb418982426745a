#!/usr/bin/env bash
# KV cache decode speed per format at long contexts (issue #4): tfusion-bench decodes 64 tokens (tg64) after
# 1K, 4K and 16K tokens of context with the cache in f16, q8 and q4 (K and V alike), on one synthetic model
# with Qwen2.5-0.5B's shapes (24 layers, 2 KV heads of 64: attention is a large share of a step at 16K), Q4_0
# weights. Prints tfusion-bench's tables; JSON per format in OUT_DIR.
#   scripts/kv-speed.sh BIN_DIR VOCAB.gguf OUT_DIR [THREADS]
# BIN_DIR holds synth/tfusion-synth and bench/tfusion-bench (e.g. build/cpu-release/tools). Environment: DEPTHS
# (default 1024,4096,16384), REPS (default 3), FORMATS (default "f16 q8 q4"), INTERLEAVE=1: the formats take
# turns, one repetition each per round (REPS rounds), so that a slow spell of a shared machine falls on every
# format alike; then prints each format's t/s per round and mean ± sample stddev per depth.
set -euo pipefail
bin=$1 vocab=$2 out=$3 threads=${4:-$(nproc)}
mkdir -p "$out"
model=$out/qwen2.5-0.5b-shape-q4_0.gguf
[ -f "$model" ] || "$bin/synth/tfusion-synth" --preset Qwen2.5-0.5B --vocab "$vocab" --type q4_0 -o "$model" >&2
bench() {  # FORMAT REPS [tfusion-bench options]
  "$bin/bench/tfusion-bench" -m "$model" --backend cpu -p 0 -n 64 -d "${DEPTHS:-1024,4096,16384}" -t "$threads" \
    -ctk "$1" -ctv "$1" -r "$2" "${@:3}"
}
if [ "${INTERLEAVE:-0}" != 1 ]; then
  for t in ${FORMATS:-f16 q8 q4}; do
    echo "== K $t V $t"
    bench "$t" "${REPS:-3}" --json "$out/kv-$t.json"
  done
  exit 0
fi
rows=$out/interleaved.txt
: >"$rows"
for round in $(seq "${REPS:-3}"); do
  for t in ${FORMATS:-f16 q8 q4}; do
    # The table row's last two cells: the test ("tg64 @ d1024") and "t/s ± sd" (one repetition: sd 0).
    bench "$t" 1 | awk -F'|' -v f="$t" -v r="$round" '/tg64/ { gsub(/ /, "", $(NF-2)); split($(NF-1), v, "±");
      gsub(/ /, "", v[1]); print f, $(NF-2), r, v[1] }' | tee -a "$rows"
  done
done
echo "== mean ± sample stddev over $(seq "${REPS:-3}" | wc -l) rounds"
awk '{ k = $1 " " $2; n[k]++; s[k] += $4; q[k] += $4 * $4 }
  END { for (k in n) { m = s[k] / n[k]; v = n[k] > 1 ? (q[k] - n[k] * m * m) / (n[k] - 1) : 0;
        printf "%s %.2f ± %.2f t/s\n", k, m, sqrt(v > 0 ? v : 0) } }' "$rows" | sort
