#!/usr/bin/env bash
# Runs the benchmarks behind the performance figures in one go, side by side, and writes the JSON
# of each to OUT_DIR (default bench-out/): machine peaks and core kernels, GEMM backends (with and
# without the OPENBLAS_CORETYPE override), FlashConv (fused / unfused / direct / FFTW / state
# passing), the H3 mixer, the attention kernels when built, the PyTorch 1.13 side (when
# /usr/bin/python3 has torch) and the shared peer programs (when ../shared/peers and FFTW exist).
# Takes 10-20 minutes on 2 cores; run it on an otherwise idle machine.
set -uo pipefail
cd "$(dirname "$0")/.."
out=${OUT_DIR:-bench-out}
hippo=${BUILD_DIR:-build}/hippo
threads=${THREADS:-$(nproc)}
mkdir -p "$out"
run() {  # name, command...
    local name=$1
    shift
    echo "== $name: $*" >&2
    "$@" > "$out/$name.json" 2> "$out/$name.err" || echo "   ($name failed, see $out/$name.err)" >&2
}
run core "$hippo" bench core --json --threads "$threads"
run gemm_env "$hippo" bench gemm --all-backends --json --threads "$threads"
run gemm_noenv env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE "$hippo" bench gemm --all-backends --json --threads "$threads"
run gemm_blis_arch env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE BLIS_ARCH_TYPE=zen3 "$hippo" bench gemm --all-backends --json --threads "$threads"
run fftconv "$hippo" bench fftconv --json --threads "$threads" --L "${FFTCONV_L:-1024,4096,16384,65536,1048576}"
run h3 "$hippo" bench h3 --json --threads "$threads"
run attention "$hippo" bench attention --json --threads "$threads"
run train "$hippo" bench train --json --threads "$threads"
run generate "$hippo" bench generate --json --threads "$threads"
if /usr/bin/python3 -c "import torch" 2>/dev/null; then
    run torch_fftconv /usr/bin/python3 scripts/bench_torch.py fftconv --L 4096 --channels 768 --threads "$threads"
    run torch_h3 /usr/bin/python3 scripts/bench_torch.py h3 --L 2048 --channels 768 --threads "$threads"
    run torch_train /usr/bin/python3 scripts/bench_torch.py train --L 2048 --channels 768 --threads "$threads" --runs 2
fi
peers=../shared/peers
if [ -d "$peers" ] && [ -f /usr/include/fftw3.h ]; then
    tmp=$(mktemp -d)
    gcc -O2 -fopenmp "$peers/fma_peak.c" -o "$tmp/fma_peak" && OMP_NUM_THREADS=$threads "$tmp/fma_peak" > "$out/peer_fma.txt"
    gcc -O3 -march=native -fopenmp "$peers/stream.c" -o "$tmp/stream" && OMP_NUM_THREADS=$threads "$tmp/stream" > "$out/peer_stream.txt"
    gcc -O3 -march=native -fopenmp "$peers/fftconv_fftw.c" -o "$tmp/fftconv_fftw" -lfftw3f -lm &&
        OMP_NUM_THREADS=$threads "$tmp/fftconv_fftw" conv 768 1024 4096 16384 > "$out/peer_fftconv.txt" &&
        OMP_NUM_THREADS=1 "$tmp/fftconv_fftw" fft > "$out/peer_fft.txt"
    rm -rf "$tmp"
fi
echo "results in $out/" >&2
