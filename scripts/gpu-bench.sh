#!/usr/bin/env bash
# On the GPU machine: tfusion-bench on a GPU backend and llama.cpp's llama-bench (its CUDA build, all layers on
# the GPU, flash attention on) on the same Llama-3.2-1B-shaped files, in the same call, one file after the other.
#   scripts/gpu-bench.sh TOOLS_DIR VOCAB.gguf PEER_BIN_DIR MODEL_DIR [TYPES] [BACKEND]
# TOOLS_DIR: our tools (build/cuda/tools); VOCAB: ggml-vocab-llama-bpe.gguf; PEER_BIN_DIR: llama.cpp's bin folder
# (empty: ours only); TYPES (default "f16 q8_0 q4_0"); BACKEND (default cuda). Files are made by tfusion-synth
# (seed 1) when missing. Prints both tools' tables; the figures go to docs/perf/ by hand, with the device.
set -uo pipefail
tools=$1 vocab=$2 peer=$3 dir=$4 types=${5:-"f16 q8_0 q4_0"} backend=${6:-cuda}
mkdir -p "$dir"
nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.max.sm --format=csv,noheader 2>/dev/null
for ty in $types; do
  m="$dir/llama-3.2-1b-$ty.gguf"
  [ -f "$m" ] || "$tools/synth/tfusion-synth" --preset Llama-3.2-1B --vocab "$vocab" --type "$ty" --seed 1 -o "$m" >&2
  echo "## $ty: tfusion-bench --backend $backend"
  "$tools/bench/tfusion-bench" -m "$m" --backend "$backend" -p 512 -n 128 -r 3 2>&1 | grep -E '^\||error|TFU_'
  if [ -n "$peer" ]; then
    echo "## $ty: llama-bench (-ngl 99 -fa 1)"
    "$peer/llama-bench" -m "$m" -ngl 99 -fa 1 -p 512 -n 128 -r 3 2>&1 | grep -E '^\||error'
  fi
done
