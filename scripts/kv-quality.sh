#!/usr/bin/env bash
# KV cache quality: perplexity and KL divergence of every K/V cache format against the f16 cache, with the bytes per
# token each format holds, on stories260K and a synthetic model. Writes a markdown table to stdout (progress on
# stderr); docs/kv-quality.md holds its figures.
#   scripts/kv-quality.sh [OUT_DIR]
# Environment: TFU_BIN (folder holding perplexity/tfusion-perplexity; default build/cpu-release/tools, built here),
# CTXS (default "128 512"), THREADS (default nproc), SYNTH (synthetic model; default
# /work/models/xcheck/tiny-llama-f32.gguf, else generated with tfusion-synth), SYNTH_CHUNKS (default 8: its
# vocabulary is 32000 tokens, so it is slower per chunk), PAIRS (default "f16/f16 bf16/bf16 q8/q8 q8/q4 q4/q4 q4/q8"),
# POLICIES (default "window h2o summary"), WINDOWS (cache sizes for the policy table, at the largest -c,
# stories260K; default "384 256 160"), WINDOW_PAIRS (default "f16/f16 q8/q8 q8/q4").
set -euo pipefail
cd "$(dirname "$0")/.."
out=${1:-/tmp/tfu-kv-quality}
mkdir -p "$out"
text=tools/perplexity/testdata/stories.txt
threads=${THREADS:-$(nproc)}
read -r -a ctxs <<<"${CTXS:-128 512}"
read -r -a pairs <<<"${PAIRS:-f16/f16 bf16/bf16 q8/q8 q8/q4 q4/q4 q4/q8}"
[ "${pairs[0]}" = "f16/f16" ] || { echo "kv-quality: PAIRS must start with f16/f16 (the base)" >&2; exit 2; }

if [ -n "${TFU_BIN:-}" ]; then
  bin=$TFU_BIN
else
  cmake --preset cpu-release >/dev/null
  cmake --build --preset cpu-release --target tfusion-perplexity >/dev/null
  bin=build/cpu-release/tools
fi
ppl_exe=$bin/perplexity/tfusion-perplexity

synth=${SYNTH:-/work/models/xcheck/tiny-llama-f32.gguf}
if [ ! -f "$synth" ]; then
  synth=/tmp/tiny-llama-f32.gguf
  if [ ! -f "$synth" ]; then
    cmake --preset cpu-release >/dev/null
    cmake --build --preset cpu-release --target tfusion-synth >/dev/null
    build/cpu-release/tools/synth/tfusion-synth --preset tiny-llama \
      --vocab /work/shared/vocab/ggml-vocab-llama-spm.gguf --type f32 -o "$synth" >&2
  fi
fi
# model:chunks (0 = the whole text)
models=("/work/shared/models/stories260K.gguf:0" "$synth:${SYNTH_CHUNKS:-8}")

echo "| model | -c | K/V | bytes/token | PPL | PPL vs f16 | mean KLD | same top-1 |"
echo "| --- | ---: | --- | ---: | ---: | ---: | ---: | ---: |"
for mc in "${models[@]}"; do
  model=${mc%:*}; chunks=${mc##*:}
  name=$(basename "$model" .gguf)
  chunk_args=()
  [ "$chunks" -gt 0 ] && chunk_args=(--chunks "$chunks")
  for ctx in "${ctxs[@]}"; do
    base="$out/$name-c$ctx-f16.kld"
    base_ppl=""
    for pair in "${pairs[@]}"; do
      k=${pair%/*}; v=${pair#*/}
      log="$out/$name-c$ctx-$k-$v.log"
      echo "== $name -c $ctx K $k V $v" >&2
      args=(-m "$model" -f "$text" -c "$ctx" -t "$threads" -ctk "$k" -ctv "$v")
      if [ "$pair" = "f16/f16" ]; then  # the base fixes the chunks the other runs compare
        "$ppl_exe" "${args[@]}" "${chunk_args[@]}" --kl-base "$base" --save-base >"$log" 2>&1
      else
        "$ppl_exe" "${args[@]}" --kl-base "$base" >"$log" 2>&1
      fi
      ppl=$(sed -n 's/^PPL = \([0-9.]*\).*/\1/p' "$log")
      bpt=$(sed -n 's/^kv: K [a-z0-9]* V [a-z0-9]*, \([0-9.]*\) bytes\/token.*/\1/p' "$log")
      kld=$(sed -n 's/^Mean    KLD: *\([-0-9.]*\).*/\1/p' "$log")
      top=$(sed -n 's/^Same top p: *\([0-9.]*\).*/\1/p' "$log")
      [ -n "$ppl" ] && [ -n "$bpt" ] || { echo "kv-quality: $log has no PPL or kv line" >&2; exit 1; }
      if [ "$pair" = "f16/f16" ]; then
        base_ppl=$ppl; kld="(base)"; top="(base)"; rel="(base)"
      else
        rel=$(awk -v a="$ppl" -v b="$base_ppl" 'BEGIN { printf "%+.3f%%", 100 * (a / b - 1) }')
        top="$top%"
      fi
      echo "| $name | $ctx | $k/$v | $bpt | $ppl | $rel | $kld | $top |"
    done
  done
done

# The eviction policies: the cache holds fewer tokens than a chunk, so tokens are dropped (or pooled) while the
# chunk is evaluated; compared with the full f16 cache of the same chunks (the base saved above).
read -r -a policies <<<"${POLICIES:-window h2o summary}"
read -r -a windows <<<"${WINDOWS:-384 256 160}"
read -r -a wpairs <<<"${WINDOW_PAIRS:-f16/f16 q8/q8 q8/q4}"
ctx=${ctxs[-1]}
model=/work/shared/models/stories260K.gguf
name=$(basename "$model" .gguf)
base="$out/$name-c$ctx-f16.kld"
base_ppl=$(sed -n 's/^PPL = \([0-9.]*\).*/\1/p' "$out/$name-c$ctx-f16-f16.log")
echo
echo "| model | -c | policy | K/V | cache tokens (sinks 4) | tokens dropped per chunk | PPL | PPL vs full f16 | mean KLD | same top-1 |"
echo "| --- | ---: | --- | --- | ---: | ---: | ---: | ---: | ---: | ---: |"
for pol in "${policies[@]}"; do
for w in "${windows[@]}"; do
  for pair in "${wpairs[@]}"; do
    k=${pair%/*}; v=${pair#*/}
    log="$out/$name-c$ctx-$k-$v-$pol$w.log"
    echo "== $name -c $ctx K $k V $v $pol $w" >&2
    "$ppl_exe" -m "$model" -f "$text" -c "$ctx" -t "$threads" -ctk "$k" -ctv "$v" --kv-policy "$pol" \
      --kv-window "$w" --kl-base "$base" >"$log" 2>&1
    ppl=$(sed -n 's/^PPL = \([0-9.]*\).*/\1/p' "$log")
    dropped=$(sed -n 's/.*the policy dropped \([0-9]*\) tokens.*/\1/p' "$log" | tail -1)
    kld=$(sed -n 's/^Mean    KLD: *\([-0-9.]*\).*/\1/p' "$log")
    top=$(sed -n 's/^Same top p: *\([0-9.]*\).*/\1/p' "$log")
    [ -n "$ppl" ] || { echo "kv-quality: $log has no PPL" >&2; exit 1; }
    rel=$(awk -v a="$ppl" -v b="$base_ppl" 'BEGIN { printf "%+.3f%%", 100 * (a / b - 1) }')
    echo "| $name | $ctx | $pol | $k/$v | $w | ${dropped:-0} | $ppl | $rel | $kld | $top% |"
  done
done
done
