#!/usr/bin/env bash
# Data-parallel figures on this machine: all-reduce bandwidth at K = 2, and one LM training step
# at K = 1 (1 and 2 threads) and K = 2 (1 thread per rank; overlap, plain all-reduce, ZeRO-1),
# with the expected scaling to 8 and 64 machines (the dp.model records). JSON records, one array
# per run, into ${OUT:-bench_dp.json}; a summary on stdout.
#   scripts/bench_dp.sh [extra dp-step options, e.g. --models hybrid --batch 32]
set -euo pipefail
cd "$(dirname "$0")/.."
hippo=${HIPPO:-build/hippo}
out=${OUT:-bench_dp.json}
mpirun=(mpirun --allow-run-as-root --oversubscribe)
: > "$out"
run() { echo "# $*" >&2; "$@" --json | tee -a "$out" | grep -o '"name": "[^"]*"\|"ms": [0-9.]*\|"[a-z_]*gbps": [0-9.]*\|"tokens_per_s": [0-9.]*\|"comm_ms": [0-9.]*\|"efficiency[a-z_]*": [0-9.]*\|"mode": "[a-z0-9]*"\|"K": [0-9]*\|"n": [0-9]*\|"network": "[^"]*"' | paste -sd' ' | sed 's/"name"/\n"name"/g'; echo; }
run "${mpirun[@]}" -np 2 "$hippo" bench allreduce
for rep in 1 2; do
    run "$hippo" bench dp-step --threads 1 "$@"
    run "$hippo" bench dp-step --threads 2 "$@"
    run "${mpirun[@]}" -np 2 "$hippo" bench dp-step "$@"
    run "${mpirun[@]}" -np 2 "$hippo" bench dp-step --no-overlap "$@"
    run "${mpirun[@]}" -np 2 "$hippo" bench dp-step --zero1 "$@"
done
