#!/usr/bin/env bash
# On a machine with nvcc but no GPU (or no time on one): builds the CUDA and Vulkan modules, the GPU tests and the
# benchmark tools for sm_90a (preset `cuda` plus TFU_VULKAN=ON, Release), then packs what the GPU machine runs into
# one xz tarball, so that the GPU machine's time goes to tests and benchmarks instead of a ~3.5 min build.
#   scripts/gpu-prebuild.sh OUT.tar.xz [BUILD_DIR] [SHARED_DIR]
# BUILD_DIR (default /tmp/tfu-sm90a) and SHARED_DIR (default /tmp/shared) are compiled into the binaries (the
# module folder, the test data), so the GPU machine must have them at the same absolute paths:
#   tar -xJf OUT.tar.xz -C /                      # restores BUILD_DIR there
#   mkdir -p SHARED_DIR && cp -r <../shared>/* SHARED_DIR/
#   PREBUILT=1 BUILD_DIR=BUILD_DIR scripts/gpu-check.sh
#   scripts/gpu-bench.sh BUILD_DIR/tools ...
# The tarball holds the two modules, libtfusion, tfusion-bench, -synth, -perplexity (scripts/gpu-ppl-check.sh) and
# -quantize (Q4_K_M files) and the GPU tests, stripped (~16 MB;
# the device tool carries at most 64 MiB). Set CCACHE=1 to build through ccache.
set -euo pipefail
cd "$(dirname "$0")/.."
out=$1 bdir=${2:-/tmp/tfu-sm90a} shared=${3:-/tmp/shared}
launcher=()
[ "${CCACHE:-0}" = 1 ] && launcher=(-DCMAKE_C_COMPILER_LAUNCHER=ccache -DCMAKE_CXX_COMPILER_LAUNCHER=ccache
  -DCMAKE_CUDA_COMPILER_LAUNCHER=ccache)
nvcc=$(command -v nvcc || echo /usr/local/cuda/bin/nvcc)
cmake --preset cuda -B "$bdir" -DCMAKE_CUDA_COMPILER="$nvcc" -DTFU_VULKAN=ON -DTFU_BUILD_SAMPLES=ON \
  -DTFU_SHARED_DIR="$shared" "${launcher[@]}" >/dev/null
tests=(test_cuda_backend test_cuda_paths test_cuda_fusion test_cuda_fused_rows test_cuda_graphs test_ops
  test_ops_contract test_stories260k test_device_argmax test_batch_decode test_decoder_runs test_cuda_attention
  test_vk_attention test_vk_mul_mat)
cmake --build "$bdir" -j "$(nproc)" --target tfusion-cuda tfusion-vulkan tfusion-bench tfusion-synth tfusion-perplexity \
  tfusion-quantize "${tests[@]}"

# The packed tree mirrors BUILD_DIR's layout (absolute paths inside the tarball, without the leading /).
stage=$(mktemp -d)
trap 'rm -rf "$stage"' EXIT
dst="$stage${bdir}"
mkdir -p "$dst/tests" "$dst/engine" "$dst/modules"
cp "$bdir"/modules/*.so "$dst/modules/"
for t in bench synth perplexity quantize; do mkdir -p "$dst/tools/$t" && cp "$bdir/tools/$t/tfusion-$t" "$dst/tools/$t/"; done
for t in "${tests[@]}"; do cp "$bdir/tests/$t" "$dst/tests/"; done
# libtfusion's links become copies (a carried tree may not keep links).
real=$(readlink -f "$bdir/engine/libtfusion.so")
for name in libtfusion.so libtfusion.so.0 "$(basename "$real")"; do cp "$real" "$dst/engine/$name"; done
strip --strip-unneeded "$dst"/tests/* "$dst"/tools/*/* "$dst"/modules/*.so "$dst"/engine/*
tar -C "$stage" -cf - "${bdir#/}" | xz -T0 -4 >"$out"
ls -la "$out"
