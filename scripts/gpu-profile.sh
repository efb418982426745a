#!/usr/bin/env bash
# On the GPU machine: where a decode step's time goes. Runs tfusion-bench tg (wall time per token), then the same
# decode under Nsight Compute (ncu, GPU duration of every kernel, clocks left alone as METHOD.md asks) and prints
# per kernel name: launches per token, microseconds per token, share; and the GPU-busy time per token beside the
# wall time per token (their difference is host work and launch gaps). The wall run logs TFU_CUDA_PROFILE's host
# times and GPU timeline (time inside runs, between runs, copying the logits).
#   scripts/gpu-profile.sh TOOLS_DIR MODEL.gguf [BACKEND] [TOKENS]
# TOOLS_DIR: build/cuda/tools. TOKENS decoded under ncu (default 8; the untimed warm-up decodes as many again).
set -uo pipefail
tools=$1 model=$2 backend=${3:-cuda} n=${4:-8}
bench=$tools/bench/tfusion-bench
echo "## wall: tfusion-bench --backend $backend -p 0 -n 128 -r 3 (TFU_CUDA_PROFILE=1: host and GPU time per step)"
TFU_CUDA_PROFILE=1 "$bench" -v -m "$model" --backend "$backend" -p 0 -n 128 -r 3 2>&1 |
  grep -E '^\||error|host time|GPU time'
NCU=$(command -v ncu || ls /usr/local/cuda/bin/ncu /opt/nvidia/nsight-compute/*/ncu 2>/dev/null | head -1)
[ -n "$NCU" ] || { echo "no ncu here"; exit 0; }
csv=$(mktemp)
"$NCU" --clock-control none --metrics gpu__time_duration.sum --csv --print-units base \
  "$bench" -m "$model" --backend "$backend" -p 0 -n "$n" -r 1 >"$csv" 2>/dev/null
# Tokens decoded while profiling: the warm-up run and the timed one.
/usr/bin/env python3 - "$csv" "$((2 * n))" <<'EOF'
import csv, sys, collections
rows = [r for r in csv.reader(open(sys.argv[1])) if len(r) > 10]
hdr = rows[0]
ki, mi, vi = hdr.index("Kernel Name"), hdr.index("Metric Name"), hdr.index("Metric Value")
gi = hdr.index("Grid Size") if "Grid Size" in hdr else None  # kernels of one name told apart by their grid
tok = int(sys.argv[2])
tot = collections.Counter(); cnt = collections.Counter()
for r in rows[1:]:
    if r[mi] != "gpu__time_duration.sum": continue
    name = r[ki].split("(")[0].split("<")[0][-40:] + (" " + r[gi].replace(" ", "") if gi is not None else "")
    tot[name] += float(r[vi].replace(",", "")); cnt[name] += 1
all_ns = sum(tot.values())
print(f"kernels profiled: {sum(cnt.values())}; tokens (warm-up + timed): {tok}")
print(f"GPU busy per token: {all_ns / tok / 1e3:.1f} us (kernel durations summed, serialised by ncu)")
print("| kernel | launches/token | us/token | share |")
print("| --- | ---: | ---: | ---: |")
for name, ns in tot.most_common(30):
    print(f"| {name} | {cnt[name] / tok:.1f} | {ns / tok / 1e3:.1f} | {100 * ns / all_ns:.1f}% |")
EOF
rm -f "$csv"
