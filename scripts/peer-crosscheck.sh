#!/usr/bin/env bash
# Cross-check with the peer (llama.cpp) on the same files: for each architecture preset at a small size and each
# weight type, tfusion-synth writes a model, llama.cpp must load it, and tfusion-perplexity and llama-perplexity
# on the same text must agree to 0.1%. Writes a markdown table to stdout (and progress to stderr).
#   scripts/peer-crosscheck.sh [OUT_DIR] [TYPES...]
# Needs the peer's CPU build (../shared/peer/llama-cpp.sh build-cpu DIR; PEER_BIN overrides the bin folder).
# BUILD=DIR builds our tools in DIR (Release) instead of the cpu-release preset's folder. A model in OUT_DIR is
# reused only when it is newer than the tfusion-synth that would write it (weight scales may have changed).
set -euo pipefail
cd "$(dirname "$0")/.."
out=${1:-/tmp/tfu-crosscheck}; shift || true
types=("$@")
[ ${#types[@]} -gt 0 ] || types=(f32 f16 bf16 q8_0 q4_0 q4_1 q5_0 q5_1 q2_K q3_K q4_K q5_K q6_K)
peer=${PEER_BIN:-/work/peer/llama.cpp/build-cpu/bin}
text=tools/perplexity/testdata/stories.txt
ctx=${CTX:-128}
chunks=${CHUNKS:-8}
threads=${THREADS:-$(nproc)}
mkdir -p "$out"
if [ -n "${BUILD:-}" ]; then
  cmake -S . -B "$BUILD" -G Ninja -DCMAKE_BUILD_TYPE=Release >/dev/null
  cmake --build "$BUILD" --target tfusion-synth tfusion-perplexity >/dev/null
  bin=$BUILD/tools
else
  cmake --preset cpu-release >/dev/null
  cmake --build --preset cpu-release --target tfusion-synth tfusion-perplexity >/dev/null
  bin=build/cpu-release/tools
fi
# preset:vocab pairs: the llama family with SentencePiece and Llama-3 BPE vocabularies, qwen2 with GPT-2 BPE.
presets=("tiny-llama:ggml-vocab-llama-spm" "tiny-llama3:ggml-vocab-llama-bpe" "tiny-qwen2:ggml-vocab-gpt-2")
echo "| preset | vocab | type | tfusion PPL | llama.cpp PPL | rel. diff | ok (< 0.1%) |"
echo "| --- | --- | --- | ---: | ---: | ---: | --- |"
fails=0; total=0; maxrel=0
for pv in "${presets[@]}"; do
  preset=${pv%%:*}; vocab=${pv##*:}
  for t in "${types[@]}"; do
    f="$out/$preset-$t.gguf"
    echo "== $preset $t" >&2
    total=$((total + 1))
    [ "$f" -nt "$bin/synth/tfusion-synth" ] || "$bin/synth/tfusion-synth" --preset "$preset" --vocab "../shared/vocab/$vocab.gguf" --type "$t" \
      --seed 1 -o "$f" 2>/dev/null
    ours=$("$bin/perplexity/tfusion-perplexity" -m "$f" -f "$text" -c "$ctx" --chunks "$chunks" -t "$threads" 2>/dev/null |
      sed -n 's/^PPL = \([0-9.]*\).*/\1/p')
    theirs=$("$peer/llama-perplexity" -m "$f" -f "$text" -c "$ctx" --chunks "$chunks" -t "$threads" 2>&1 |
      sed -n 's/.*Final estimate: PPL = \([0-9.]*\).*/\1/p')
    if [ -z "$ours" ] || [ -z "$theirs" ]; then
      echo "| $preset | $vocab | $t | ${ours:-error} | ${theirs:-error} | | no |"; fails=$((fails + 1)); continue
    fi
    read -r rel ok < <(awk -v a="$ours" -v b="$theirs" \
      'BEGIN { d = (a - b) / b; if (d < 0) d = -d; printf "%.5f%% %s\n", d * 100, (d < 0.001 ? "yes" : "no") }')
    [ "$ok" = yes ] || fails=$((fails + 1))
    maxrel=$(awk -v a="$maxrel" -v b="${rel%\%}" 'BEGIN { print (b > a ? b : a) }')
    echo "| $preset | $vocab | $t | $ours | $theirs | $rel | $ok |"
  done
done
echo "$((total - fails)) of $total within 0.1%; largest difference $maxrel%; $fails mismatches" >&2
[ "$fails" -eq 0 ]
