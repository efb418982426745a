#!/usr/bin/env bash
# Compares tfusion-quantize with llama.cpp's llama-quantize on the same F32 models: per-tensor relative RMSE
# (sqrt(mean((dequant(q) - x)^2)) / RMS(x), dequantized by our reader for both outputs), per type and weight
# distribution. Prints a Markdown table; exits non-zero if any tensor of ours is worse than llama.cpp's by more
# than a relative 1e-4 (rounding noise of equal algorithms).
#
#   scripts/quant-vs-peer.sh [BUILD_DIR] [WORK_DIR]
# BUILD_DIR: a build tree with tfusion-quantize and tfusion-quant-util (default build/h9-quantize);
# PEER: llama-quantize (default /work/peer/llama.cpp/build-cpu/bin/llama-quantize).
# Inputs: random llama models (n_embd 512, 4 layers, seed 7) with Gaussian, Student-t(3) and 1%-outlier
# weights, and ../shared/models/stories260K.gguf (trained, n_embd 64: K-quants fall back to 32-block types).
# Both tools run in "pure" mode (every 2-D weight gets the type: llama-quantize --pure), so tensors match 1:1.
set -euo pipefail
cd "$(dirname "$0")/.."
BUILD=${1:-build/h9-quantize}
WORK=${2:-$(mktemp -d)}
PEER=${PEER:-/work/peer/llama.cpp/build-cpu/bin/llama-quantize}
Q=$BUILD/tools/quantize/tfusion-quantize
U=$BUILD/tools/quantize/tfusion-quant-util
STORIES=${STORIES:-../shared/models/stories260K.gguf}
for f in "$Q" "$U" "$PEER" "$STORIES"; do [ -e "$f" ] || { echo "missing: $f" >&2; exit 2; }; done
mkdir -p "$WORK"

# our pure type : llama-quantize ftype whose base type it is
TYPES=${TYPES:-"q4_0:Q4_0 q4_1:Q4_1 q5_0:Q5_0 q5_1:Q5_1 q8_0:Q8_0 q2_K:Q2_K q3_K:Q3_K_S q4_K:Q4_K_S q5_K:Q5_K_S q6_K:Q6_K"}
for d in gauss student outlier; do
  [ -f "$WORK/in_$d.gguf" ] || "$U" gen "$WORK/in_$d.gguf" --dist $d --seed 7 --n-embd 512 --n-layer 4 --n-ff 1024
done
cp "$STORIES" "$WORK/in_stories.gguf"

echo "| input | type | tensors | ours: mean rel RMSE | llama.cpp: mean rel RMSE | ours/llama.cpp (mean) | worst ratio | tensors worse |"
echo "|---|---|---|---|---|---|---|---|"
bad=0
for d in gauss student outlier stories; do
  for tp in $TYPES; do
    ours=${tp%%:*}; peer=${tp##*:}
    "$Q" "$WORK/in_$d.gguf" "$WORK/ours.gguf" "$ours" --quiet > /dev/null
    "$PEER" --pure "$WORK/in_$d.gguf" "$WORK/peer.gguf" "$peer" 2 > "$WORK/peer.log" 2>&1 || { cat "$WORK/peer.log" >&2; exit 1; }
    "$U" rmse "$WORK/in_$d.gguf" "$WORK/ours.gguf" > "$WORK/ours.txt"
    "$U" rmse "$WORK/in_$d.gguf" "$WORK/peer.gguf" > "$WORK/peer.txt"
    line=$(paste -d' ' "$WORK/ours.txt" "$WORK/peer.txt" | awk -v d=$d -v t=$ours '
      $1 != $4 || $2 != $5 { printf "tensor mismatch: %s %s vs %s %s\n", $1, $2, $4, $5 > "/dev/stderr"; exit 3 }
      { n++; so += $3; sp += $6; r = ($6 > 0) ? $3 / $6 : 1; if (r > worst) worst = r; if ($3 > $6 * (1 + 1e-4)) w++;
        types[$2] = 1 }
      END { tl = ""; for (k in types) tl = tl (tl == "" ? "" : "+") k;
            printf "| %s | %s (%s) | %d | %.6f | %.6f | %.4f | %.4f | %d |\n", d, t, tl, n, so / n, sp / n, so / sp, worst, w }')
    echo "$line"
    case "$line" in *"| 0 |") ;; *) bad=1 ;; esac
  done
done
exit $bad
