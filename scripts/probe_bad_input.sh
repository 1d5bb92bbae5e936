#!/usr/bin/env bash
# Probes the CLI with bad input, as a careless or hostile user would, and fails if any case crashes
# (signal), hangs past its limit, exits 0 where it must refuse, prints more than one error line, or
# changes a file it must not touch. Run by ctest (label fast) and by hand:
#
#   scripts/probe_bad_input.sh [HIPPO_BINARY]        (default: build/hippo)
#
# Each case is one line: the arguments of hippo. Cases run in a scratch directory holding a tiny
# trained run (RUN), its log (RUN/metrics.jsonl, checked unchanged after every case), a token file
# (TOK), a text file (TXT) and a config (CFG).
set -uo pipefail
HIPPO=${1:-$(cd "$(dirname "$0")/.." && pwd)/build/hippo}
[ -x "$HIPPO" ] || { echo "probe: no hippo binary at $HIPPO" >&2; exit 2; }
W=$(mktemp -d /tmp/hippo-probe.XXXXXX)
trap 'rm -rf "$W"' EXIT
cd "$W"
cat > cfg.json <<'JSON'
{"model": {"d_model": 16, "n_layer": 1, "vocab_size": "data", "mixer": "h3", "ssm_cfg": {"d_state": 8}},
 "train": {"batch": 4, "steps": 4, "eval_batches": 1}}
JSON
"$HIPPO" train --model cfg.json --data assoc_recall --out run --quiet --threads 1 >/dev/null 2>&1 ||
    { echo "probe: could not train the tiny run" >&2; exit 2; }
printf 'hello world, this is a probe.\n' > text.txt
head -c 64 /dev/urandom | od -An -tu1 -v | tr -s ' ' '\n' | awk 'NF {printf "%c%c%c%c", $1 % 20, 0, 0, 0}' > tok.bin
mkfifo fifo
before=$(sha256sum run/metrics.jsonl run/checkpoint/* text.txt tok.bin cfg.json | sha256sum)

fail=0 n=0
refuse() {  # the command must exit 1 with a one-line message, within 60 s
    n=$((n + 1))
    local out rc
    out=$(timeout 60 "$HIPPO" "$@" 2>&1 </dev/null)
    rc=$?
    local lines
    lines=$(printf '%s' "$out" | grep -c . || true)
    if [ $rc -eq 124 ]; then echo "HANG   hippo $*"; fail=1
    elif [ $rc -ge 128 ]; then echo "CRASH  hippo $* (exit $rc)"; fail=1
    elif [ $rc -eq 0 ]; then echo "ACCEPT hippo $* (must refuse)"; fail=1
    elif [ "$lines" -ne 1 ]; then echo "LINES  hippo $* ($lines lines): $out"; fail=1
    fi
}
# Numbers: hex, overflow, NaN, negative, zero where a count is needed.
refuse train --model cfg.json --data assoc_recall --out new1 --steps 99999999999999999999
refuse train --model cfg.json --data assoc_recall --out new1 --lr 0x10
refuse train --model cfg.json --data assoc_recall --out new1 --clip nan
refuse train --model cfg.json --data assoc_recall --out new1 --clip inf
refuse train --model cfg.json --data assoc_recall --out new1 --dropout nan
refuse train --model cfg.json --data assoc_recall --out new1 --dropout -0.1
refuse train --model cfg.json --data assoc_recall --out new1 --ssm-lr -1
refuse train --model cfg.json --data assoc_recall --out new1 --warmup -5
refuse train --model cfg.json --data assoc_recall --out new1 --threads -1
refuse train --model cfg.json --data assoc_recall --out new1 --seed -1
refuse train --model cfg.json --data assoc_recall --out new1 --batch 0
refuse train --model cfg.json --data assoc_recall --out new1 --seq-len 0
refuse eval run --seq-len 0
refuse eval run --batch 0
refuse eval run --batch -1
refuse eval run --batches -3
refuse bench fftconv --L -1
refuse bench fftconv --L 0
refuse generate run --prompt x --batch 100000000
refuse generate run --prompt x --n -1
refuse generate run --prompt x --temperature nan
refuse score run --tokens tok.bin --batch 0
# Special files and missing files as data, models or configs.
refuse train --model /dev/zero --describe
refuse train --model fifo --describe
refuse train --model . --describe
refuse train --model cfg.json --data text:/dev/zero --out new2
refuse train --model cfg.json --data text:fifo --out new2
refuse train --model cfg.json --data text:. --out new2
refuse train --model cfg.json --data text:missing.txt --out new2
refuse score run --tokens /dev/zero
refuse score run --tokens fifo
refuse eval missing_run
# Outputs that are inputs; a run directory that already holds a run.
refuse plot run --out run/metrics.jsonl
refuse score run --tokens tok.bin --logits-out tok.bin
refuse score run --text text.txt --logits-out text.txt
refuse train --model cfg.json --data assoc_recall --out run
refuse train --out run --resume --seed 5
# Absurd sizes and broken configs.
printf '{"d_model": 20000, "n_layer": 64, "vocab_size": 50257}' > big.json
refuse train --model big.json --describe
printf '{"d_model": 32, "n_layer": 1000000, "vocab_size": 20}' > deep.json
refuse train --model deep.json --describe
printf '{"d_model": 32, "n_layer": 2, "n_layer": 3, "vocab_size": 20}' > dup.json
refuse train --model dup.json --describe
printf '{"d_model": 32, "n_layer": 2, "vocab_size": 20, "d_inner": 0}' > zero.json
refuse train --model zero.json --describe
printf '{"d_model": 32, "n_layer": 2, "vocab_size": 20, "ssm_cfg": {"d_state": 7}}' > odd.json
refuse train --model odd.json --describe
printf '{"d_model": 32, "n_layer": 2, "vocab_size": 20, "mixer": "mamba"}' > mixer.json
refuse train --model mixer.json --describe
refuse import /dev/zero --out imp
refuse import text.txt --out imp

after=$(sha256sum run/metrics.jsonl run/checkpoint/* text.txt tok.bin cfg.json | sha256sum)
if [ "$before" != "$after" ]; then echo "CHANGED: a refused command changed the run, its log or an input"; fail=1; fi
for d in new1 new2 imp; do [ -e "$d/checkpoint" ] && { echo "WROTE: $d/checkpoint after a refused command"; fail=1; }; done
if [ $fail = 0 ]; then echo "probe: $n passed, 0 failed"; else echo "probe: some of $n cases failed"; fi
exit $fail
