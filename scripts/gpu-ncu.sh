#!/usr/bin/env bash
# On the GPU machine: Nsight Compute metrics of a few decode kernels, one row per launch. Runs tfusion-bench's
# decode (-p 0) under ncu (clocks left alone, as METHOD.md asks), profiles the launches whose kernel name matches
# REGEX after skipping SKIP of them (past the warm-up and the first runs, which are not yet graphs), COUNT of them,
# and prints per launch: grid, registers, duration, DRAM bytes and throughput, achieved occupancy, and the issue
# stalls per instruction (long scoreboard = waiting on global memory, barrier, short scoreboard = shared memory).
#   scripts/gpu-ncu.sh TOOLS_DIR MODEL.gguf REGEX [SKIP] [COUNT] [BACKEND]
# Environment switches of the backend pass through (e.g. TFU_CUDA_MMV_I8_SPLIT=1).
set -uo pipefail
tools=$1 model=$2 regex=$3 skip=${4:-400} count=${5:-4} backend=${6:-cuda}
NCU=$(command -v ncu || ls /usr/local/cuda/bin/ncu /opt/nvidia/nsight-compute/*/ncu 2>/dev/null | head -1)
[ -n "$NCU" ] || { echo "no ncu here"; exit 0; }
metrics=gpu__time_duration.sum,dram__bytes_read.sum,dram__throughput.avg.pct_of_peak_sustained_elapsed
metrics+=,sm__warps_active.avg.pct_of_peak_sustained_active,launch__grid_size,launch__registers_per_thread
for s in long_scoreboard barrier short_scoreboard wait math_pipe_throttle lg_throttle; do
  metrics+=,smsp__average_warps_issue_stalled_${s}_per_issue_active.ratio
done
csv=$(mktemp)
"$NCU" --clock-control none --kernel-name "regex:$regex" --launch-skip "$skip" --launch-count "$count" \
  --metrics "$metrics" --csv --print-units base "$tools/bench/tfusion-bench" -m "$model" --backend "$backend" \
  -p 0 -n 64 -r 1 >"$csv" 2>/dev/null
/usr/bin/env python3 - "$csv" <<'PY'
import csv, sys, collections
rows = [r for r in csv.reader(open(sys.argv[1])) if len(r) > 10]
if not rows: print("ncu wrote nothing"); sys.exit(0)
h = rows[0]
idi, ki, mi, vi = h.index("ID"), h.index("Kernel Name"), h.index("Metric Name"), h.index("Metric Value")
per = collections.OrderedDict()
for r in rows[1:]:
    per.setdefault((r[idi], r[ki]), {})[r[mi]] = r[vi].replace(",", "")
short = lambda m: m.replace("smsp__average_warps_issue_stalled_", "stall_").replace("_per_issue_active.ratio", "")
cols = ["launch__grid_size", "launch__registers_per_thread", "gpu__time_duration.sum", "dram__bytes_read.sum",
        "dram__throughput.avg.pct_of_peak_sustained_elapsed", "sm__warps_active.avg.pct_of_peak_sustained_active"]
stalls = [m for m in next(iter(per.values())) if m.startswith("smsp__average_warps_issue_stalled_")]
print("| id | kernel | grid | regs | us | MB read | DRAM % | occupancy % | " + " | ".join(short(m) for m in stalls) + " |")
print("| --- " * (8 + len(stalls)) + "|")
for (i, k), m in per.items():
    name = k.split("(")[0][-32:] + ("<" + k.split("<", 1)[1].split(">")[0][-24:] + ">" if "<" in k else "")
    v = [m.get(c, "") for c in cols]
    f = lambda x, s=1.0, d=1: f"{float(x) * s:.{d}f}" if x else ""
    print(f"| {i} | {name} | {v[0]} | {v[1]} | {f(v[2], 1e-3, 2)} | {f(v[3], 1e-6, 2)} | {f(v[4])} | {f(v[5])} | " +
          " | ".join(f(m.get(s, ""), 1, 2) for s in stalls) + " |")
PY
rm -f "$csv"
