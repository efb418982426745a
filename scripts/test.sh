#!/usr/bin/env bash
# Sets up, builds and runs every test: the ci preset (release + asserts), then ASan/UBSan, then the fuzz targets
# briefly. TFU_TEST_QUICK=1 runs only the ci preset.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
jobs=$(nproc)
run_preset() {
  echo "== preset $1" >&2
  cmake --preset "$1" >/dev/null
  cmake --build --preset "$1" -j "$jobs"
  ctest --preset "$1" "${@:2}"
}
run_preset ci
if [ "${TFU_TEST_QUICK:-0}" != 1 ]; then
  run_preset asan
  echo "== fuzz targets (short runs)" >&2
  cmake --preset fuzz >/dev/null
  cmake --build --preset fuzz -j "$jobs" --target fuzz_all
  ctest --test-dir build/fuzz -L fuzz --output-on-failure
fi
