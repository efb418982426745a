#!/usr/bin/env bash
# CPU speed side by side: tfusion-bench and llama.cpp's llama-bench on the same GGUF file, same threads, in one
# run, alternating (ROUNDS times) so that both see the same machine load. Prints both tables.
#   scripts/bench-cpu-peer.sh [MODEL.gguf] [THREADS] [ROUNDS]
# Needs the peer built here first:  ../shared/peer/llama-cpp.sh prepare /work/peer && ... build-cpu /work/peer
# (PEER_BIN overrides where llama-bench is).
set -euo pipefail
cd "$(dirname "$0")/.."
model=${1:-../shared/models/stories260K.gguf}
threads=${2:-$(nproc)}
rounds=${3:-3}
peer=${PEER_BIN:-/work/peer/llama.cpp/build-cpu/bin}/llama-bench
[ -x "$peer" ] || { echo "llama-bench not found at $peer (set PEER_BIN)" >&2; exit 2; }
cmake --preset cpu-release >/dev/null
cmake --build --preset cpu-release --target tfusion-bench >/dev/null
ours=./build/cpu-release/tools/bench/tfusion-bench
echo "# $(date -u +%F) $(uname -m), $(nproc) cores: $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | xargs)"
echo "# model $model, threads $threads, load before: $(cut -d' ' -f1-3 /proc/loadavg)"
for r in $(seq "$rounds"); do
  echo "## round $r: tfusion-bench"
  "$ours" -m "$model" -p 128 -n 128 -r 5 -t "$threads" 2>&1 | grep -E '^\||time to first'
  echo "## round $r: llama-bench"
  "$peer" -m "$model" -p 128 -n 128 -r 5 -t "$threads" 2>&1 | grep -E '^\|'
done
