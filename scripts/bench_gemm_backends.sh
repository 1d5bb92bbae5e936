#!/usr/bin/env bash
# GEMM backend comparison on the shapes of a 125M-parameter layer (T = 2048 tokens):
# OpenBLAS (linked), the built-in GEMM, BLIS and oneDNN (loaded at run time when installed), each
# with the environment's OPENBLAS_CORETYPE override and without it, BLIS with and without
# BLIS_ARCH_TYPE. Needs libblis4-openmp and libdnnl2 for the run-time backends:
#   apt-get install -y libblis4-openmp libdnnl2
# Prints one JSON array per configuration.
set -euo pipefail
cd "$(dirname "$0")/.."
hippo=${BUILD_DIR:-build}/hippo
echo "# with the environment as it is (OPENBLAS_CORETYPE=${OPENBLAS_CORETYPE:-unset})"
"$hippo" bench gemm --all-backends --json
echo "# without OPENBLAS_CORETYPE / OPENBLAS_L2_SIZE"
env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE "$hippo" bench gemm --all-backends --json
echo "# BLIS_ARCH_TYPE=${BLIS_ARCH:-zen3} (BLIS 0.9 does not recognise Zen 5 by itself)"
env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE BLIS_ARCH_TYPE=${BLIS_ARCH:-zen3} "$hippo" bench gemm --all-backends --json
