#!/usr/bin/env bash
# The main job for now: what this machine and build are, then the core benchmark (machine peaks,
# GEMM, FFT side by side with FFTW, elementwise and norm kernels). Later issues replace this with
# training and generation demos.
set -euo pipefail
cd "$(dirname "$0")/.."
build_dir=${BUILD_DIR:-build}
"$build_dir/hippo" info
echo
"$build_dir/hippo" bench core
