#!/usr/bin/env bash
# Byte-level language modelling on a real corpus: small Transformer / H3 / hybrid (H3 + 1 attention
# layer) / S4D / GSS / DSS / DLR models of about equal size (configs/lm/*.json, 2.9-3.6M parameters,
# d_model 256)
# trained with the same token budget and recipe, then evaluated on the validation split.
#
#   scripts/lm_compare.sh [OUT_DIR]     env: DATA (moby_dick), STEPS (600), BATCH (8), SEQ_LEN (256),
#                                            LR (1e-3), THREADS (1), SEEDS ("0"), MODELS, HIPPO,
#                                            LRS (unset: LR for every model; e.g. "3e-4 1e-3 3e-3":
#                                            a sweep of SWEEP_STEPS (STEPS / 4) steps per model and
#                                            rate on seed 0 picks each model's rate by validation
#                                            loss, then the full runs use it), SAVE_EVERY (STEPS / 10)
#
# Resumable: every run saves a checkpoint every SAVE_EVERY steps; running the script again with the
# same settings skips finished runs and continues unfinished ones (--resume), so a long study (the
# issue's ~3 hours: equal tokens, a rate per model, 2 seeds) can span sessions. Finished cells are
# read back from their eval files.
#
# Needs the corpus: scripts/fetch_data.sh moby_dick (or sotu, brown; DATA=text:PATH for any file).
# Token budget: STEPS x BATCH x SEQ_LEN bytes (default 1.2M, about 1.1 epochs of Moby Dick's train split;
# use more steps for a meaningful ranking, e.g. STEPS=3000 BATCH=16 on a free machine).
# Runtime, measured on the 2-core dev machine (shared with other builds): one thread trains the H3
# model at about 2,600 tok/s (1.3 steps/s at 8 x 256), the Transformer at about 2,100 tok/s; two
# threads were slower while the other core was busy. So one model takes about 8-10 minutes at the
# defaults and the five-model comparison about 45 minutes; STEPS=10 checks the pipeline end to end
# (about 5 minutes, mostly the full validation pass of each model).
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
if [ -z "${HIPPO:-}" ]; then  # the newest build whose hippo has the train command
    for h in $(ls -t "$ROOT"/build/hippo "$ROOT"/build-*/hippo 2>/dev/null); do
        if [ -x "$h" ] && "$h" train --help >/dev/null 2>&1; then HIPPO=$h; break; fi
    done
fi
[ -n "${HIPPO:-}" ] || { echo "lm_compare.sh: build hippo first (cmake --build build), or set HIPPO" >&2; exit 1; }
OUT=${1:-runs/lm}
DATA=${DATA:-moby_dick}
STEPS=${STEPS:-600}
BATCH=${BATCH:-8}
SEQ_LEN=${SEQ_LEN:-256}
LR=${LR:-1e-3}
THREADS=${THREADS:-1}
read -r -a SEEDS <<< "${SEEDS:-${SEED:-0}}"
read -r -a MODELS <<< "${MODELS:-transformer h3 hybrid s4d gss dss dlr s5}"
read -r -a LRS <<< "${LRS:-}"
SWEEP_STEPS=${SWEEP_STEPS:-$(( STEPS / 4 > 0 ? STEPS / 4 : 1 ))}
SAVE_EVERY=${SAVE_EVERY:-$(( STEPS / 10 > 0 ? STEPS / 10 : 1 ))}
mkdir -p "$OUT"

# One run, resumable: DIR MODEL STEPS LR SEED. Leaves DIR.eval.json (validation split).
run_cell() {
    local dir=$1 m=$2 steps=$3 lr=$4 seed=$5 mode=()
    if [ -f "$dir.eval.json" ]; then echo "   $dir: done" >&2; return 0; fi
    if [ -f "$dir/checkpoint/model.safetensors" ]; then mode=(--resume); else mode=(--model "$ROOT/configs/lm/$m.json" --overwrite); fi
    echo "== $dir (${mode[0]})" >&2
    local t0
    t0=$(date +%s)
    if [ "${mode[0]}" = --resume ]; then
        "$HIPPO" train --out "$dir" --resume --threads "$THREADS" >> "$dir.log" 2>&1
    else
        "$HIPPO" train "${mode[@]}" --data "$DATA" --out "$dir" --steps "$steps" --batch "$BATCH" --seq-len "$SEQ_LEN" \
            --lr "$lr" --eval-every $(( steps / 4 > 0 ? steps / 4 : 1 )) --eval-batches 8 --save-every "$SAVE_EVERY" \
            --seed "$seed" --threads "$THREADS" > "$dir.log" 2>&1
    fi || { echo "run $dir failed, see $dir.log" >&2; tail -3 "$dir.log" >&2; exit 1; }
    "$HIPPO" eval "$dir" --split val --json --batch "$BATCH" --threads "$THREADS" > "$dir.eval.json"
    echo "   $(( $(date +%s) - t0 ))s" >&2
}
field() { sed -E "s/.*\"$2\":([0-9.eE+-]+).*/\1/" "$1"; }

declare -A BEST_LR
for m in "${MODELS[@]}"; do
    BEST_LR[$m]=$LR
    if [ ${#LRS[@]} -gt 0 ]; then  # the learning-rate sweep: short runs on seed 0
        best=""
        for lr in "${LRS[@]}"; do
            run_cell "$OUT/sweep-$m-lr$lr" "$m" "$SWEEP_STEPS" "$lr" 0
            loss=$(field "$OUT/sweep-$m-lr$lr.eval.json" loss)
            if [ -z "$best" ] || awk -v a="$loss" -v b="$best" 'BEGIN { exit !(a < b) }'; then best=$loss; BEST_LR[$m]=$lr; fi
        done
        echo "   $m: learning rate ${BEST_LR[$m]} (sweep of ${LRS[*]}, $SWEEP_STEPS steps)" >&2
    fi
    for seed in "${SEEDS[@]}"; do run_cell "$OUT/$m-s$seed" "$m" "$STEPS" "${BEST_LR[$m]}" "$seed"; done
done

printf '\nByte-level LM on %s: validation split, %s steps x %s x %s bytes, seeds %s\n\n' "$DATA" "$STEPS" "$BATCH" "$SEQ_LEN" "${SEEDS[*]}"
printf '%-12s %10s %8s' model params lr
for seed in "${SEEDS[@]}"; do printf ' %12s' "val_ppl_s$seed"; done
printf ' %10s %12s\n' bits/byte train_tok/s
for m in "${MODELS[@]}"; do
    d0=$OUT/$m-s${SEEDS[0]}
    params=$(sed -nE 's/.*parameters: ([0-9]+).*/\1/p' "$d0.log" | head -1)
    speed=$(sed -nE 's/^done: .*\(([0-9.]+) steps\/s, ([0-9]+) tok\/s\).*/\2/p' "$d0.log" | tail -1)
    printf '%-12s %10s %8s' "$m" "$params" "${BEST_LR[$m]}"
    for seed in "${SEEDS[@]}"; do printf ' %12.3f' "$(field "$OUT/$m-s$seed.eval.json" perplexity)"; done
    printf ' %10.4f %12s\n' "$(field "$d0.eval.json" bits_per_byte)" "$speed"
done
"$HIPPO" plot $(for m in "${MODELS[@]}"; do echo "$OUT/$m-s${SEEDS[0]}"; done) --out "$OUT/curves.svg" 2>/dev/null || true
printf '\n(paper, OpenWebText 125M, 50B tokens, ppl: H3 21.0, hybrid 19.6, S4D 24.9, GSS 24.0, Transformer 20.6)\ncurves: %s/curves.svg\n' "$OUT"
