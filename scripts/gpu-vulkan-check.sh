#!/usr/bin/env bash
# On the GPU machine: the Vulkan backend through NVIDIA's Vulkan driver. Runs every Vulkan op and model test, then
# tfusion-bench --backend vulkan beside llama.cpp's Vulkan backend on the same Llama-3.2-1B-shaped files, in the
# same call, and writes logs plus report.md to $OUT (default out/gpu-vulkan-check). Exit status: 0 when every
# test step passed (the benchmarks are figures, never a pass/fail).
#   BUILD_DIR=DIR   a tree built with -DTFU_VULKAN=ON (the Vulkan module and the tests); the GPU machine has no
#                   glslc, so build it elsewhere (scripts/gpu-prebuild.sh or the `vulkan` preset) and carry it
#   VKDEBS=DIR      the .deb files of libvulkan1 libegl1 libglvnd0 libopengl0 libgl1 libglx0 libgles2 (the machine
#                   has NVIDIA's driver but no Vulkan loader or glvnd; the device tool's README says how to fetch
#                   them): unpacked into / when no libvulkan.so.1 is installed. Default .gl
#   VKPEER=FILE     llama.cpp's prebuilt Vulkan libraries (../shared/peer/llama-cpp.sh prepare-vulkan); empty: ours
#                   only. PEER_SCRIPT=FILE: that llama-cpp.sh (default ../shared/peer/llama-cpp.sh)
#   VOCAB=FILE      ggml-vocab-llama-bpe.gguf (for tfusion-synth); MODELS=DIR where the files go (/tmp/m)
#   TYPES="f16 q8_0 q4_0"  BENCH=0 skips the benchmarks; COMMIT= names the tree in the report where it is no git
#   checkout
set -uo pipefail
cd "$(dirname "$0")/.."
OUT=${OUT:-out/gpu-vulkan-check}
mkdir -p "$OUT"
STEP_TIMEOUT=${STEP_TIMEOUT:-240}
source scripts/gpu-steps.sh
B=${BUILD_DIR:-build/vulkan}
T=$B/tests
export TFU_MODULE_DIR=${TFU_MODULE_DIR:-$B/modules}

note "# gpu-vulkan-check $(date -u +%FT%TZ) ${COMMIT:-$(git log -1 --format=%h 2>/dev/null)}"
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader 2>&1 | tee -a "$report"
VKDEBS=${VKDEBS:-.gl}
if ! ldconfig -p | grep -q 'libvulkan.so.1' && ls "$VKDEBS"/*.deb >/dev/null 2>&1; then
  for f in "$VKDEBS"/*.deb; do dpkg -x "$f" /; done
  ldconfig
  note "unpacked the Vulkan loader and glvnd from $VKDEBS"
fi
icd=/usr/local/nvidia/share/vulkan/icd.d/nvidia_icd.json
if [ -z "${VK_DRIVER_FILES:-}" ] && [ -f "$icd" ]; then
  export VK_DRIVER_FILES=$icd __EGL_VENDOR_LIBRARY_FILENAMES=/usr/local/nvidia/share/glvnd/egl_vendor.d/10_nvidia.json
fi

step "test_vk_module" tests.log $T/test_vk_module; summary
step "test_vk_memory" tests.log $T/test_vk_memory; summary
step "test_vk_submission" tests.log $T/test_vk_submission; summary
step "test_ops (vulkan)" tests.log $T/test_ops --gtest_filter='*vulkan*'; summary
step "test_ops (vulkan, TFU_VK_SUBGROUP=0)" tests.log env TFU_VK_SUBGROUP=0 $T/test_ops --gtest_filter='*vulkan*'
summary
step "test_vk_mmv_units" tests.log $T/test_vk_mmv_units; summary
step "test_vk_mul_mat" tests.log $T/test_vk_mul_mat; summary
step "test_vk_attention" tests.log $T/test_vk_attention; summary
step "test_vk_fusion" tests.log $T/test_vk_fusion; summary
step "test_vk_replay" tests.log $T/test_vk_replay; summary
step "test_stories260k (vulkan)" tests.log $T/test_stories260k --gtest_filter='*vulkan*'; summary
step "test_device_argmax (vulkan)" tests.log $T/test_device_argmax --gtest_filter='*vulkan*'; summary
step "test_batch_decode (TFU_BACKEND=vulkan)" tests.log env TFU_BACKEND=vulkan $T/test_batch_decode; summary
tests_status=$status

if [ "${BENCH:-1}" != 0 ]; then
  dir=${MODELS:-/tmp/m}
  vocab=${VOCAB:-.gpu/ggml-vocab-llama-bpe.gguf}
  mkdir -p "$dir"
  for ty in ${TYPES:-f16 q8_0 q4_0}; do
    m="$dir/llama-3.2-1b-$ty.gguf"
    [ -f "$m" ] || $B/tools/synth/tfusion-synth --preset Llama-3.2-1B --vocab "$vocab" --type "$ty" --seed 1 -o "$m" \
      >>"$OUT/bench.log" 2>&1 || note "tfusion-synth $ty failed (bench.log)"
    note "## $ty: tfusion-bench --backend vulkan -p 512 -n 128 -r 3"
    $B/tools/bench/tfusion-bench -m "$m" --backend vulkan -p 512 -n 128 -r 3 2>&1 | grep -E '^\| [a-z]|error' |
      tee -a "$report"
    if [ -n "${VKPEER:-}" ]; then
      note "## $ty: llama.cpp Vulkan, llama-bench -ngl 99 -fa 1 -p 512 -n 128 -r 3"
      VKDEBS=$VKDEBS bash "${PEER_SCRIPT:-../shared/peer/llama-cpp.sh}" vulkan-bench "$VKPEER" -m "$m" \
        -ngl 99 -fa 1 -p 512 -n 128 -r 3 2>&1 |
        grep -E '^\| [a-z]|error' | tee -a "$report"
    fi
  done
fi
if [ "$tests_status" = 0 ]; then note "RESULT: all test steps passed"; else note "RESULT: some test steps failed"; fi
exit $tests_status
