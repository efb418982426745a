#!/usr/bin/env bash
# On the GPU machine: builds the `cuda` preset (sm_90a), runs the CUDA op and module tests, then
# compute-sanitizer memcheck and racecheck on the CUDA op tests, and writes logs plus report.md to $OUT
# (default out/gpu-check). GoogleTest is built from .gpu/googletest when the machine has none
# (copy /usr/src/googletest there; the folder travels with `carry`). Exit status: 0 when every step passed.
set -uo pipefail
cd "$(dirname "$0")/.."
OUT=${OUT:-out/gpu-check}
mkdir -p "$OUT"
JOBS=${JOBS:-$(nproc)}
STEP_TIMEOUT=${STEP_TIMEOUT:-240}
report="$OUT/report.md"
: >"$report"
status=0
note() { echo "$*" | tee -a "$report"; }
# step NAME LOG CMD...: runs CMD with a time limit, keeps its output in $OUT/LOG, records pass/fail.
step() {
  local name=$1 log=$2
  shift 2
  local t0=$SECONDS rc
  timeout "$STEP_TIMEOUT" "$@" >"$OUT/$log" 2>&1
  rc=$?
  note "- $name: $([ $rc = 0 ] && echo PASS || echo "FAIL (exit $rc)") in $((SECONDS - t0)) s, log $log"
  [ $rc = 0 ] || status=1
  return $rc
}

note "# gpu-check $(date -u +%FT%TZ) $(git log -1 --format=%h 2>/dev/null)"
nvidia-smi --query-gpu=name,driver_version,memory.total,memory.used --format=csv 2>&1 | tee -a "$report"
NVCC=$(command -v nvcc || echo /usr/local/cuda/bin/nvcc)
note "nvcc: $($NVCC --version | tail -2 | head -1)"

prefix_args=()
if [ -d .gpu/googletest ] && ! [ -f /usr/lib/x86_64-linux-gnu/cmake/GTest/GTestConfig.cmake ]; then
  step "googletest build" gtest-build.log bash -c "cmake -S .gpu/googletest -B /tmp/gtest-build -G Ninja \
    -DCMAKE_BUILD_TYPE=Release -DBUILD_GMOCK=OFF -DCMAKE_INSTALL_PREFIX=/tmp/gtest && \
    cmake --build /tmp/gtest-build -j $JOBS && cmake --install /tmp/gtest-build"
  prefix_args=(-DCMAKE_PREFIX_PATH=/tmp/gtest)
fi

t0=$SECONDS
step "configure (preset cuda)" configure.log cmake --preset cuda -DCMAKE_CUDA_COMPILER="$NVCC" "${prefix_args[@]}" || {
  tail -30 "$OUT/configure.log"; exit 1; }
step "build" build.log cmake --build build/cuda -j "$JOBS" --target tfusion-cuda test_ops test_ops_contract \
  test_cuda_backend test_cuda_paths || { grep -E "error|Error" "$OUT/build.log" | head -40; exit 1; }
note "build time: $((SECONDS - t0)) s"

T=build/cuda/tests
summary() { grep -E "^\[  (PASSED|FAILED|SKIPPED) |tests? ran|^\[  FAILED  \] " "$OUT/$1" | head -40 | tee -a "$report"; }
step "test_cuda_backend" test_cuda_backend.log $T/test_cuda_backend; summary test_cuda_backend.log
step "test_cuda_paths" test_cuda_paths.log $T/test_cuda_paths; summary test_cuda_paths.log
step "test_ops (cuda)" test_ops.log $T/test_ops --gtest_filter='*cuda*'; summary test_ops.log
step "test_ops_contract" test_ops_contract.log $T/test_ops_contract; summary test_ops_contract.log

SAN=$(command -v compute-sanitizer || ls /usr/local/cuda/bin/compute-sanitizer 2>/dev/null)
for tool in memcheck racecheck; do
  step "compute-sanitizer $tool (test_ops cuda)" "sanitizer-$tool.log" "$SAN" --tool "$tool" --error-exitcode 99 \
    $T/test_ops --gtest_filter='*cuda*'
  grep -E "ERROR SUMMARY|RACECHECK SUMMARY|Invalid|Race|hazard" "$OUT/sanitizer-$tool.log" | head -20 | tee -a "$report"
done
step "compute-sanitizer memcheck (test_cuda_paths, test_cuda_backend)" sanitizer-memcheck-paths.log bash -c \
  "'$SAN' --tool memcheck --error-exitcode 99 $T/test_cuda_paths && '$SAN' --tool memcheck --error-exitcode 99 $T/test_cuda_backend"
grep -E "ERROR SUMMARY|Invalid" "$OUT/sanitizer-memcheck-paths.log" | head -20 | tee -a "$report"
if [ "$status" = 0 ]; then note "RESULT: all steps passed"; else note "RESULT: some steps failed"; fi
exit $status
