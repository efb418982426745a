#!/usr/bin/env bash
# On the GPU machine: builds the `cuda` preset (sm_90a), runs the CUDA op and module tests, then
# compute-sanitizer memcheck and racecheck on the CUDA op tests, and writes logs plus report.md to $OUT
# (default out/gpu-check). GoogleTest is built from .gpu/googletest when the machine has none
# (copy /usr/src/googletest there; the folder travels with `carry`). Exit status: 0 when every step passed.
# BUILD_DIR=DIR with PREBUILT=1: use a tree already built for sm_90a (scripts/gpu-prebuild.sh, on a machine with nvcc
# and no GPU, then carried), so that the GPU machine's time goes to the tests; its compiled-in paths must exist here.
set -uo pipefail
cd "$(dirname "$0")/.."
OUT=${OUT:-out/gpu-check}
mkdir -p "$OUT"
JOBS=${JOBS:-$(nproc)}
STEP_TIMEOUT=${STEP_TIMEOUT:-240}
source scripts/gpu-steps.sh

note "# gpu-check $(date -u +%FT%TZ) $(git log -1 --format=%h 2>/dev/null)"
nvidia-smi --query-gpu=name,driver_version,memory.total,memory.used --format=csv 2>&1 | tee -a "$report"
NVCC=$(command -v nvcc || echo /usr/local/cuda/bin/nvcc)
note "nvcc: $($NVCC --version | tail -2 | head -1)"

B=${BUILD_DIR:-build/cuda}
prefix_args=()
if [ "${PREBUILT:-0}" = 1 ]; then
  note "prebuilt tree: $B"
elif [ -d .gpu/googletest ] && ! [ -f /usr/lib/x86_64-linux-gnu/cmake/GTest/GTestConfig.cmake ]; then
  step "googletest build" build.log bash -c "cmake -S .gpu/googletest -B /tmp/gtest-build -G Ninja \
    -DCMAKE_BUILD_TYPE=Release -DBUILD_GMOCK=OFF -DCMAKE_INSTALL_PREFIX=/tmp/gtest && \
    cmake --build /tmp/gtest-build -j $JOBS && cmake --install /tmp/gtest-build"
  prefix_args=(-DCMAKE_PREFIX_PATH=/tmp/gtest)
fi

if [ "${PREBUILT:-0}" != 1 ]; then
  t0=$SECONDS
  step "configure (preset cuda)" build.log cmake --preset cuda -B "$B" -DCMAKE_CUDA_COMPILER="$NVCC" "${prefix_args[@]}" || {
    tail -30 "$OUT/build.log"; exit 1; }
  step "build" build.log cmake --build "$B" -j "$JOBS" --target tfusion-cuda test_ops test_ops_contract \
    test_cuda_backend test_cuda_paths test_cuda_fusion test_cuda_fused_rows test_cuda_graphs test_stories260k \
    test_device_argmax test_batch_decode test_cuda_attention test_kv_blocks tfusion-synth || { grep -E "error|Error" "$OUT/build.log" | head -40; exit 1; }
  note "build time: $((SECONDS - t0)) s"
fi

T=$B/tests
step "test_cuda_backend" tests.log $T/test_cuda_backend; summary
step "test_cuda_paths" tests.log $T/test_cuda_paths; summary
step "test_cuda_fusion" tests.log $T/test_cuda_fusion; summary
step "test_cuda_fusion (TFU_CUDA_MMV=float)" tests.log env TFU_CUDA_MMV=float $T/test_cuda_fusion; summary
step "test_cuda_fusion (TFU_CUDA_MMV=staged)" tests.log env TFU_CUDA_MMV=staged $T/test_cuda_fusion; summary
step "test_cuda_fusion (TFU_CUDA_PDL=1)" tests.log env TFU_CUDA_PDL=1 $T/test_cuda_fusion; summary
step "test_cuda_fused_rows" tests.log $T/test_cuda_fused_rows; summary
step "test_cuda_graphs" tests.log $T/test_cuda_graphs; summary
step "test_ops (cuda)" tests.log $T/test_ops --gtest_filter='*cuda*'; summary
step "test_stories260k (cuda)" tests.log $T/test_stories260k --gtest_filter='*cuda*'; summary
step "test_ops_contract" tests.log $T/test_ops_contract; summary
step "test_cuda_attention" tests.log $T/test_cuda_attention; summary
step "test_cuda_attention (TFU_CUDA_ATTN_GQA=0)" tests.log env TFU_CUDA_ATTN_GQA=0 $T/test_cuda_attention; summary
step "test_ops attention (TFU_CUDA_ATTN_TILES=0)" tests.log env TFU_CUDA_ATTN_TILES=0 $T/test_ops --gtest_filter='*cuda_attention*'; summary
step "test_device_argmax (cuda)" tests.log $T/test_device_argmax --gtest_filter='*cuda*'; summary
step "test_batch_decode (TFU_BACKEND=cuda)" tests.log env TFU_BACKEND=cuda TFU_MODULE_DIR=$B/modules $T/test_batch_decode; summary
step "test_kv_blocks (cuda)" tests.log $T/test_kv_blocks --gtest_filter='*cuda*'; summary
step "test_ops attention_blocks (TFU_CUDA_ATTN_GQA=0)" tests.log env TFU_CUDA_ATTN_GQA=0 $T/test_ops --gtest_filter='*cuda_attention_blocks*'; summary

SAN=$(command -v compute-sanitizer || ls /usr/local/cuda/bin/compute-sanitizer 2>/dev/null)
for tool in memcheck racecheck; do
  step "compute-sanitizer $tool (test_ops cuda)" sanitizer.log "$SAN" --tool "$tool" --error-exitcode 99 \
    $T/test_ops --gtest_filter='*cuda*'
  tail -3 "$OUT/sanitizer.log" | grep -E "ERROR SUMMARY|RACECHECK SUMMARY" | tee -a "$report"
done
# The decode kernels' shared-memory stages (mul_mat_vec.cu: cp.async double buffering) under racecheck.
step "compute-sanitizer racecheck (test_cuda_fusion, test_cuda_attention)" sanitizer.log bash -c \
  "'$SAN' --tool racecheck --error-exitcode 99 $T/test_cuda_fusion && '$SAN' --tool racecheck --error-exitcode 99 $T/test_cuda_attention"
tail -3 "$OUT/sanitizer.log" | grep -E "RACECHECK SUMMARY" | tee -a "$report"
# The module tests, without the one that provokes a cudaMalloc failure on purpose (memcheck reports the
# failed API call as an error).
step "compute-sanitizer memcheck (test_cuda_paths, test_cuda_backend)" sanitizer.log bash -c \
  "'$SAN' --tool memcheck --error-exitcode 99 $T/test_cuda_paths && '$SAN' --tool memcheck --error-exitcode 99 $T/test_cuda_fusion && '$SAN' --tool memcheck --error-exitcode 99 $T/test_cuda_graphs && '$SAN' --tool memcheck --error-exitcode 99 $T/test_cuda_fused_rows && '$SAN' --tool memcheck --error-exitcode 99 $T/test_cuda_attention && '$SAN' --tool memcheck --error-exitcode 99 \
   $T/test_cuda_backend --gtest_filter=-*huge_alloc* && '$SAN' --tool memcheck --error-exitcode 99 $T/test_device_argmax --gtest_filter=*cuda* && '$SAN' --tool memcheck --error-exitcode 99 $T/test_kv_blocks --gtest_filter=*cuda*"
grep -E "ERROR SUMMARY" "$OUT/sanitizer.log" | tail -2 | tee -a "$report"
if [ "$status" = 0 ]; then note "RESULT: all steps passed"; else note "RESULT: some steps failed"; fi
exit $status
