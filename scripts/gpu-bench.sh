#!/usr/bin/env bash
# On the GPU machine: tfusion-bench on a GPU backend and llama.cpp's llama-bench (its CUDA build, all layers on
# the GPU, flash attention on) on the same Llama-3.2-1B-shaped files, in the same call, one file after the other.
#   scripts/gpu-bench.sh TOOLS_DIR VOCAB.gguf PEER_BIN_DIR MODEL_DIR [TYPES] [BACKEND]
# TOOLS_DIR: our tools (build/cuda/tools); VOCAB: ggml-vocab-llama-bpe.gguf; PEER_BIN_DIR: llama.cpp's bin folder
# (empty: ours only); TYPES (default "f16 q8_0 q4_0"); BACKEND (default cuda). Files are made by tfusion-synth
# (seed 1) when missing, or for llama.cpp's mixes (q4_k_m ...) by tfusion-quantize from the F16 file. Then, for
# the first type: decode at depths 4096 and 16384 (DEPTHS), with quantized KV caches at 8192 and 16384
# (KV_DEPTHS), and ours with 4
# batched sessions; EIGHT_B=1 adds the Llama-3-8B shape in Q4_0 (a 4.5 GB file, ~1 min to write with 16 cores).
# Prints both tools' tables; the figures go to docs/perf/ by hand, with the device.
set -uo pipefail
tools=$1 vocab=$2 peer=$3 dir=$4 types=${5:-"f16 q8_0 q4_0"} backend=${6:-cuda}
mkdir -p "$dir"
nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.max.sm --format=csv,noheader 2>/dev/null
# A file per type: tfusion-synth writes the pure types; a llama.cpp mix (q4_k_m, q5_k_m, ...: lower case with a
# size suffix) is tfusion-quantize's conversion of the F16 file, as llama.cpp's users make theirs.
make_1b() {
  local ty=$1 m="$dir/llama-3.2-1b-$1.gguf"
  [ -f "$m" ] && return 0
  case $ty in
    *_s|*_m|*_l)
      make_1b f16 || return 1
      "$tools/quantize/tfusion-quantize" "$dir/llama-3.2-1b-f16.gguf" "$m" "${ty^^}" --quiet >&2 ;;
    *) "$tools/synth/tfusion-synth" --preset Llama-3.2-1B --vocab "$vocab" --type "$ty" --seed 1 -o "$m" >&2 ;;
  esac
}
for ty in $types; do
  m="$dir/llama-3.2-1b-$ty.gguf"
  make_1b "$ty"
  echo "## $ty: tfusion-bench --backend $backend"
  "$tools/bench/tfusion-bench" -m "$m" --backend "$backend" -p 512 -n 128 -r 3 2>&1 | grep -E '^\||error|TFU_'
  if [ -n "$peer" ]; then
    echo "## $ty: llama-bench (-ngl 99 -fa 1)"
    "$peer/llama-bench" -m "$m" -ngl 99 -fa 1 -p 512 -n 128 -r 3 2>&1 | grep -E '^\||error'
  fi
done
first=${types%% *}
m="$dir/llama-3.2-1b-$first.gguf"
echo "## $first: decode at depth (${DEPTHS:-4096,16384}), ours then llama-bench"
"$tools/bench/tfusion-bench" -m "$m" --backend "$backend" -p 0 -n 128 -d "${DEPTHS:-4096,16384}" -r 2 2>&1 | grep -E '^\| [a-z]|error|TFU_'
[ -n "$peer" ] && "$peer/llama-bench" -m "$m" -ngl 99 -fa 1 -p 0 -n 128 -d "${DEPTHS:-4096,16384}" -r 2 2>&1 | grep -E '^\| [a-z]|error'
# The quantized KV caches at depth (ours: the paged cache in device memory; llama.cpp: its q8_0 / q4_0 cache),
# against the f16 figures above.
kv_depths=${KV_DEPTHS:-8192,16384}
echo "## $first: decode at depth ($kv_depths) with quantized KV caches, ours then llama-bench"
"$tools/bench/tfusion-bench" -m "$m" --backend "$backend" -p 0 -n 128 -d "$kv_depths" -r 2 -ctk f16,q8 -ctv q8,q4 2>&1 |
  grep -E '^\| [a-z]|error|TFU_'
if [ -n "$peer" ]; then
  for t in q8_0 q4_0; do
    "$peer/llama-bench" -m "$m" -ngl 99 -fa 1 -p 0 -n 128 -d "$kv_depths" -r 2 -ctk $t -ctv $t 2>&1 | grep -E '^\| [a-z]|error'
  done
fi
echo "## $first: 4 sessions in one batched step (ours)"
"$tools/bench/tfusion-bench" -m "$m" --backend "$backend" -p 0 -n 128 -r 2 --sessions 4 2>&1 | grep -E '^\| [a-z]|error|TFU_'
if [ "${EIGHT_B:-0}" = 1 ]; then
  m8="$dir/llama-3-8b-q4_0.gguf"
  [ -f "$m8" ] || "$tools/synth/tfusion-synth" --preset Llama-3-8B --vocab "$vocab" --type q4_0 --seed 1 -o "$m8" >&2
  echo "## 8B q4_0: ours then llama-bench"
  "$tools/bench/tfusion-bench" -m "$m8" --backend "$backend" -p 512 -n 128 -r 3 2>&1 | grep -E '^\| [a-z]|error|TFU_'
  [ -n "$peer" ] && "$peer/llama-bench" -m "$m8" -ngl 99 -fa 1 -p 512 -n 128 -r 3 2>&1 | grep -E '^\| [a-z]|error'
fi
exit 0
