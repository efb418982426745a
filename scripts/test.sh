#!/usr/bin/env bash
# Sets up, builds and runs every test: the ci preset (release + asserts), then ASan/UBSan, then the fuzz targets
# briefly. TFU_TEST_QUICK=1 runs only the ci preset.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
jobs=$(nproc)
run_preset() {
  echo "== preset $1" >&2
  cmake --preset "$1" "${@:2}" >/dev/null
  cmake --build --preset "$1" -j "$jobs"
  ctest --preset "$1"
}
# The ci preset also builds the GPU modules: Vulkan (its op tests run on Mesa's lavapipe with the validation
# layers on) and CUDA (compiled for one architecture; its tests skip cleanly without a GPU). Without nvcc here the
# CUDA module is left out, and said so.
ci_flags=()
if [ ! -x /usr/local/cuda/bin/nvcc ]; then
  echo "test.sh: no /usr/local/cuda/bin/nvcc: the CUDA module is not compiled" >&2
  ci_flags+=(-DTFU_CUDA=OFF)
fi
run_preset ci "${ci_flags[@]}"
if [ "${TFU_TEST_QUICK:-0}" != 1 ]; then
  run_preset asan
  echo "== fuzz targets (short runs)" >&2
  cmake --preset fuzz >/dev/null
  cmake --build --preset fuzz -j "$jobs" --target fuzz_all
  ctest --test-dir build/fuzz -L fuzz --output-on-failure
fi
