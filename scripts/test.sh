#!/usr/bin/env bash
# Runs the whole test suite of an existing build (scripts/setup.sh builds it).
#   scripts/test.sh            every test (fast and slow labels)
#   scripts/test.sh --fast     only the tests labelled fast
set -euo pipefail
cd "$(dirname "$0")/.."
build_dir=${BUILD_DIR:-build}
label_args=()
[ "${1:-}" = "--fast" ] && label_args=(-L fast)
ctest --test-dir "$build_dir" --output-on-failure -j "$(nproc)" --timeout 600 "${label_args[@]}"
