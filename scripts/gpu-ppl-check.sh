#!/usr/bin/env bash
# Perplexity on a GPU backend equals the CPU path's: for every tiny architecture preset and every weight type,
# tfusion-synth writes the model, tfusion-perplexity runs it on the cpu backend, on the scalar cpu-ref backend
# (f32 activations) and on BACKEND (same text, -c 128, 4 chunks); the differences of BACKEND against both are
# checked against 0.1%. Each pair is judged against cpu-ref, the scalar f32 path: tfusion-perplexity evaluates each
# chunk as one batch, so a GPU backend runs its prefill path (MUL_MAT n > 8: f16 or bf16 tensor-core GEMM, close to
# f32), not the decode kernels; the cpu backend itself rounds activations to int8 per 32 values for the quantized
# types and is up to ~0.15% from cpu-ref, so its column is shown for information. Prints a table and summary
# lines; exit 1 if a pair differs by more than 0.1% from cpu-ref.
#   scripts/gpu-ppl-check.sh TOOLS_DIR VOCAB_DIR OUT_DIR [BACKEND]
# PRESETS / TYPES (space-separated) narrow the sweep, e.g. to finish one cut short by a time limit.
set -uo pipefail
cd "$(dirname "$0")/.."
tools=$1 vocabs=$2 out=$3 backend=${4:-cuda}
mkdir -p "$out"
text=tools/perplexity/testdata/stories.txt
types=${TYPES:-"f32 f16 bf16 q8_0 q4_0 q4_1 q5_0 q5_1 q2_k q3_k q4_k q5_k q6_k"}
vocab_of() { case $1 in tiny-llama) echo ggml-vocab-llama-spm ;; tiny-llama3) echo ggml-vocab-llama-bpe ;; *) echo ggml-vocab-gpt-2 ;; esac; }
n=0 ok=0 worst=0 ok_ref=0 worst_ref=0
echo "| preset | type | cpu PPL | cpu-ref PPL | $backend PPL | vs cpu | vs cpu-ref |"
echo "| --- | --- | ---: | ---: | ---: | ---: | ---: |"
for preset in ${PRESETS:-tiny-llama tiny-llama3 tiny-qwen2}; do
  vocab=$vocabs/$(vocab_of "$preset").gguf
  for ty in $types; do
    m="$out/$preset-$ty.gguf"
    [ -f "$m" ] || "$tools/synth/tfusion-synth" --preset "$preset" --vocab "$vocab" --type "$ty" --seed 1 -o "$m" >/dev/null 2>&1
    a=$("$tools/perplexity/tfusion-perplexity" -m "$m" -f "$text" -c 128 --chunks 4 --backend cpu 2>/dev/null | sed -n 's/^PPL = \([0-9.]*\).*/\1/p')
    r=$("$tools/perplexity/tfusion-perplexity" -m "$m" -f "$text" -c 128 --chunks 4 --backend cpu-ref 2>/dev/null | sed -n 's/^PPL = \([0-9.]*\).*/\1/p')
    b=$("$tools/perplexity/tfusion-perplexity" -m "$m" -f "$text" -c 128 --chunks 4 --backend "$backend" 2>"$out/err.txt" | sed -n 's/^PPL = \([0-9.]*\).*/\1/p')
    [ -n "$b" ] || { echo "| $preset | $ty | $a | $r | failed: $(tail -1 "$out/err.txt") | | |"; n=$((n + 1)); continue; }
    d=$(awk -v a="$a" -v b="$b" 'BEGIN { d = (b - a) / a; if (d < 0) d = -d; printf "%.5f", 100 * d }')
    dr=$(awk -v a="$r" -v b="$b" 'BEGIN { d = (b - a) / a; if (d < 0) d = -d; printf "%.5f", 100 * d }')
    echo "| $preset | $ty | $a | $r | $b | $d% | $dr% |"
    n=$((n + 1))
    awk -v d="$d" 'BEGIN { exit !(d < 0.1) }' && ok=$((ok + 1))
    awk -v d="$dr" 'BEGIN { exit !(d < 0.1) }' && ok_ref=$((ok_ref + 1))
    worst=$(awk -v a="$worst" -v b="$d" 'BEGIN { print (b > a ? b : a) }')
    worst_ref=$(awk -v a="$worst_ref" -v b="$dr" 'BEGIN { print (b > a ? b : a) }')
  done
done
echo "summary vs cpu: $ok of $n within 0.1% (largest difference $worst%)"
echo "summary vs cpu-ref: $ok_ref of $n within 0.1% (largest difference $worst_ref%)"
[ "$ok_ref" = "$n" ]
