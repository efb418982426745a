#!/usr/bin/env bash
# Issue #3's CPU comparison on 1B-class files: tfusion-bench and llama-bench, same run, alternating per file, on
# Llama-3.2-1B-shaped synthetic models at F16, Q8_0, Q4_0 and Q4_K_M (made by tfusion-synth + tfusion-quantize
# into DIR when missing).   scripts/bench-1b-peer.sh [DIR] [THREADS]
set -euo pipefail
cd "$(dirname "$0")/.."
dir=${1:-/tmp/tfu-1b}; threads=${2:-$(nproc)}
peer=${PEER_BIN:-/work/peer/llama.cpp/build-cpu/bin}/llama-bench
cmake --preset cpu-release >/dev/null
cmake --build --preset cpu-release --target tfusion-bench tfusion-synth tfusion-quantize >/dev/null
t=build/cpu-release/tools
mkdir -p "$dir"
f16="$dir/llama-3.2-1b-f16.gguf"
[ -f "$f16" ] || "$t/synth/tfusion-synth" --preset Llama-3.2-1B --vocab ../shared/vocab/ggml-vocab-llama-bpe.gguf \
  --type f16 --seed 1 -o "$f16"
for q in Q8_0 Q4_0 Q4_K_M; do
  out="$dir/llama-3.2-1b-$(echo $q | tr A-Z a-z).gguf"
  [ -f "$out" ] || "$t/quantize/tfusion-quantize" "$f16" "$out" "$q" --quiet
done
echo "# $(date -u +%F) $(nproc) cores: $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | xargs); threads $threads"
for q in f16 q8_0 q4_0 q4_k_m; do
  m="$dir/llama-3.2-1b-$q.gguf"
  echo "## $q: tfusion-bench"
  "$t/bench/tfusion-bench" -m "$m" -p 64 -n 16 -r 2 -t "$threads" 2>&1 | grep -E '^\|'
  echo "## $q: llama-bench"
  "$peer" -m "$m" -p 64 -n 16 -r 2 -t "$threads" 2>&1 | grep -E '^\|'
done
