#!/usr/bin/env bash
# The H3 paper's synthetic-task table (Table 2): 2-layer attention / H3 / S4D / GSS models
# (configs/synthetic/*.json: d_model 32, d_inner 128, as safari's configs) trained on induction_head
# and assoc_recall, then evaluated on the 500 held-out sequences (accuracy of the final answer).
#
#   scripts/synthetic_table.sh [OUT_DIR]   env: STEPS (12000, associative recall), IH_STEPS (36000,
#                                               induction head), LR (default: each config's "train.lr":
#                                               H3 2e-3, S4D / GSS / attention 5e-3), JOBS (2),
#                                               SEEDS ("0"; e.g. "0 1 2 3 4": every cell on each seed,
#                                               the table gives each seed and the minimum), MODELS
#                                               ("attention h3 s4d gss"), TASKS, HIPPO
#
# Two cells train with safari's own recipe (62,500 steps at lr 5e-4, cosine to 0.1 lr after 10%
# warmup, no clipping), from configs/synthetic/MODEL-TASK.json:
#   attention-induction_head.json: the only recipe found with which the 2-layer attention model forms an
#     induction head (seed 0: 15% at step 32,500, 99.8% at 35,000; seed 1: 97.4% at the end); with
#     the short CPU recipes below it stayed at chance;
#   s4d-induction_head.json: with the CPU recipe this S4D learns the task outright (100% at 24,000
#     steps, lr 5e-3), unlike the paper's S4D; with safari's recipe it climbs slowly to 24.6%.
# RECIPE_STEPS shortens those two runs.
#
# Runtime (measured on the 2-core dev machine, 1 thread per run, 2 runs at a time): H3 trains at about
# 58 steps/s, S4D 65, GSS 170, attention 190 (22-31 tokens x batch 32) when it has a core to itself,
# 3-4x slower on a busy machine. The whole table took 1175 s (20 min) with JOBS=2, the 16-minute S4D
# induction-head run being the longest (and a build shared the machine for part of it).
# STEPS=20 IH_STEPS=20 RECIPE_STEPS=20 checks the pipeline in ~15 s.
#
# Observed at the defaults (seed 0, 1175 s):      attention   H3   S4D   GSS
#   induction head  (paper 100 / 100 / 35.6 / 6.8)    100.0  100.0  24.6   6.8
#   assoc. recall   (paper 100 / 99.8 / 86.0 / 78.0)   99.6   99.6  89.8  71.2
# H3 over seeds (this recipe; seed 0 from the row above, seeds 1-5 in session 5 on an AVX2-only
# machine, one thread each), test accuracy %:
#   assoc. recall   seeds 0-5: 99.6 100.0 99.8 97.6 99.0 99.8      min 97.6 (seed 3 learns late:
#                   47.6 at step 3000, 81.2 at 9000, 97.6 at 12000)
#   induction head  seeds 0-5: 100.0 100.0 100.0 6.2 100.0 100.0   seed 3 never forms the induction
#                   circuit in 24,000 steps (5.8-7.8 at every eval); seed 2 forms it between steps
#                   18,000 (82.6) and 24,000 (100.0), seed 5 before 6,000 (99.8). With a
#                   36,000-step schedule (same lr, warmup and decay stretched), seed 3 reached 50.8
#                   at step 6,000 and 99.8 at 12,000: the longer schedule is the candidate fix, to be
#                   checked on all seeds before it replaces IH_STEPS=24000.
#   So the 24,000-step induction-head recipe did NOT hold on every seed: the phase change comes at a
#   seed-dependent step, sometimes after the budget. The default is now 36,000 steps (session 6,
#   same machine, 2 runs at a time): seeds 0-5 reach 100.0 100.0 100.0 99.8 100.0 100.0, min 99.8
#   (validation accuracy >= 99 at every eval from step 9,000 on, every seed).
#   Tried for associative recall: 20,000 steps (seed 0: 99.4, seed 1: 98.0, against 99.6 and 100.0
#   at 12,000): worse; seed 1's validation loss rose from 0.037 at 10,000 to 0.094 at 20,000 (the
#   5,000 training sequences overfit).
# Earlier variants (seed 0, single runs):
#   associative recall, 8000 steps: lr 2e-3: H3 99.8, S4D 84.0, GSS 52.2, attention 47.0 (with dropout)
#                                   lr 5e-3: H3 100.0, S4D 88.6, GSS 52.4, attention 47.6 (with dropout)
#   attention without dropout, lr 5e-3, 12000 steps: 99.6 (hence the attention config has no dropout)
#   induction head: near chance after 8000 steps for every model (H3 27.0 at lr 5e-3, 9.8 at 2e-3);
#   H3 with a 24000-step schedule at lr 2e-3 jumps to 100.0 at step 6000 (a sharp phase change);
#   attention with the CPU recipes (lr 3e-4 .. 2e-3, 20-30k steps, with or without dropout and
#   weight decay, rotary instead of learned positions): 4-9%;
#   S4D with the S4D paper's GLU head (S4D-Lin): 5.4% (CPU recipe), 7.8% (safari's recipe); with
#   S4D-Inv and the GLU head: 98% (CPU recipe).
#
# Recipe differences from the paper (CPU budget): the paper trains 400 / 200 epochs of 5000
# sequences (62,500 / 31,250 steps) at lr 5e-4; here STEPS steps at LR with 10% warmup and linear
# decay (the configs' "train" defaults), AdamW wd 0.1, SSM parameters at min(1e-3, lr) without weight
# decay; the two induction-head cells above are the exception. The attention baseline has learned
# positions and 1 head (h3.md 4.3).
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
if [ -z "${HIPPO:-}" ]; then  # the first build whose hippo has the train command
    for h in $(ls -t "$ROOT"/build/hippo "$ROOT"/build-*/hippo 2>/dev/null); do  # newest first
        if [ -x "$h" ] && "$h" train --help >/dev/null 2>&1; then HIPPO=$h; break; fi
    done
fi
[ -n "${HIPPO:-}" ] || { echo "$(basename "$0"): build hippo first (cmake --build build), or set HIPPO" >&2; exit 1; }
OUT=${1:-runs/synthetic}
STEPS=${STEPS:-12000}
IH_STEPS=${IH_STEPS:-36000}
LR=${LR:-}
JOBS=${JOBS:-2}
SEEDS=(${SEEDS:-${SEED:-0}})
read -r -a MODELS <<< "${MODELS:-attention h3 s4d gss}"
read -r -a TASKS <<< "${TASKS:-induction_head assoc_recall}"
mkdir -p "$OUT"

start=$(date +%s)
run_one() {  # MODEL TASK SEED
    local dir=$OUT/$2-$1-s$3 steps=$STEPS cfg=$ROOT/configs/synthetic/$1.json opts
    [ "$2" = induction_head ] && steps=$IH_STEPS
    opts=(--steps "$steps" ${LR:+--lr "$LR"} --eval-every $(( steps / 4 > 0 ? steps / 4 : 1 )))
    # A MODEL-TASK.json config carries its own whole recipe (steps, lr, schedule); RECIPE_STEPS
    # (for a quick check of the pipeline) still shortens it.
    if [ -f "$ROOT/configs/synthetic/$1-$2.json" ]; then
        cfg=$ROOT/configs/synthetic/$1-$2.json
        opts=()
        [ -n "${RECIPE_STEPS:-}" ] &&
            opts=(--steps "$RECIPE_STEPS" --eval-every $(( RECIPE_STEPS / 4 > 0 ? RECIPE_STEPS / 4 : 1 )))
    fi
    "$HIPPO" train --model "$cfg" --data "$2" --out "$dir" "${opts[@]}" --seed "$3" --threads 1 --overwrite > "$dir.log" 2>&1 ||
        { echo "run $2 / $1 failed, see $dir.log" >&2; tail -3 "$dir.log" >&2; return 1; }
    "$HIPPO" eval "$dir" --split test --json --threads 1 > "$dir.eval.json"
}
pids=()
for seed in "${SEEDS[@]}"; do
    for task in "${TASKS[@]}"; do
        for model in "${MODELS[@]}"; do
            mkdir -p "$OUT"
            run_one "$model" "$task" "$seed" &
            pids+=($!)
            while [ "$(jobs -rp | wc -l)" -ge "$JOBS" ]; do sleep 1; done
        done
    done
done
fail=0
for p in "${pids[@]}"; do wait "$p" || fail=1; done
[ $fail = 0 ] || exit 1
elapsed=$(( $(date +%s) - start ))

acc() { python3 -c "import json,sys; print('%.1f' % (100 * json.load(open(sys.argv[1]))['accuracy']))" "$1" 2>/dev/null ||
        sed -E 's/.*"accuracy":([0-9.eE+-]+).*/\1/' "$1" | awk '{printf "%.1f", 100 * $1}'; }
printf '\nSynthetic tasks, test accuracy %% (hippo: %s steps, induction head %s, lr %s; paper: Table 2)\n\n' "$STEPS" "$IH_STEPS" "${LR:-per config}"
printf '%-16s %-10s' task model
for seed in "${SEEDS[@]}"; do printf ' %7s' "seed$seed"; done
printf ' %7s %7s\n' min paper
declare -A PAPER=([induction_head-attention]=100.0 [induction_head-h3]=100.0 [induction_head-s4d]=35.6
                  [induction_head-gss]=6.8 [assoc_recall-attention]=100.0 [assoc_recall-h3]=99.8
                  [assoc_recall-s4d]=86.0 [assoc_recall-gss]=78.0)
for task in "${TASKS[@]}"; do
    for model in "${MODELS[@]}"; do
        printf '%-16s %-10s' "$task" "$model"
        min=""
        for seed in "${SEEDS[@]}"; do
            a=$(acc "$OUT/$task-$model-s$seed.eval.json")
            printf ' %7s' "$a"
            min=$(awk -v a="$a" -v m="$min" 'BEGIN { print (m == "" || a + 0 < m + 0) ? a : m }')
        done
        printf ' %7s %7s\n' "$min" "${PAPER[$task-$model]:-}"
    done
done
printf '\n(random guessing: induction head 5.0, associative recall 25.0)\n'
"$HIPPO" plot $(for t in "${TASKS[@]}"; do for m in "${MODELS[@]}"; do echo "$OUT/$t-$m-s${SEEDS[0]}"; done; done) --out "$OUT/curves.svg" 2>/dev/null || true
printf 'total wall time %ss; curves: %s/curves.svg\n' "$elapsed" "$OUT"
