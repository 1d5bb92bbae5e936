#!/usr/bin/env bash
# The main job (about 10 minutes on 2 cores): what this build is, then
#   1. H3 learns associative recall (the H3 paper's synthetic task) to high accuracy,
#   2. a small hybrid H3 + attention language model trains on Moby Dick for a few minutes and
#      reports its validation perplexity,
#   3. it generates text from a prompt through the recurrent state (SSM) and the KV cache,
#   4. the loss curves of both runs are drawn to runs/demo-curves.svg.
# Environment: BUILD_DIR (build), RUNS (runs), AR_STEPS (8000), LM_STEPS (300), THREADS.
set -euo pipefail
cd "$(dirname "$0")/.."
hippo=${BUILD_DIR:-build}/hippo
runs=${RUNS:-runs}
threads=${THREADS:-$(nproc)}
mkdir -p "$runs"

"$hippo" info
echo

echo "== 1. H3 on associative recall (2 layers, d_model 32; test accuracy on the final answer)"
rm -rf "$runs/demo-ar"
"$hippo" train --model configs/synthetic/h3.json --data assoc_recall --out "$runs/demo-ar" \
    --steps "${AR_STEPS:-8000}" --threads 1
"$hippo" eval "$runs/demo-ar" --split test
echo

echo "== 2. A hybrid H3 + attention byte-level LM on Moby Dick"
bash scripts/fetch_data.sh moby_dick
rm -rf "$runs/demo-lm"
"$hippo" train --model configs/lm/hybrid.json --data moby_dick --out "$runs/demo-lm" \
    --steps "${LM_STEPS:-300}" --batch 8 --seq-len 256 --lr 2e-3 --eval-every 100 --threads "$threads"
"$hippo" eval "$runs/demo-lm" --split val --batches 40
echo

echo "== 3. Generation (prefill in parallel mode, then token by token)"
"$hippo" generate "$runs/demo-lm" --prompt "Call me Ishmael. " --n 300 --temperature 0.8 --top-k 40 --seed 1
echo

echo "== 4. Curves"
"$hippo" plot "$runs/demo-ar" "$runs/demo-lm" --out "$runs/demo-curves.svg"
echo "wrote $runs/demo-curves.svg"
