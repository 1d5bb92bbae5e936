#!/usr/bin/env bash
# Whole-book check of hippo's GPT-2 tokenizer against the npm reference tokenizers.
#
#   scripts/tokenizer_compare.sh [BUILD_DIR] [BOOK...]    (defaults: build, moby_dick sotu)
#
# 1. fetches the vocabulary + reference tokenizers (scripts/fetch_tokenizer.sh --reference) and the
#    books (scripts/fetch_data.sh) into $HIPPO_DATA or ~/.cache/hippo;
# 2. writes $CACHE/text/BOOK.gpt2.ids with js-tiktoken (scripts/tokenizer_reference.js) and, for
#    books under 2 MB, cross-checks gpt-tokenizer on it too;
# 3. encodes each book with `hippo tokenize encode --stats` (prints MB/s) and compares the ids
#    (cmp), then checks that `hippo tokenize decode` gives the book back byte for byte.
# Afterwards tests/test_tokenizer (Tokenizer.WholeBooksMatchReference) also compares these files.
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
BUILD=${1:-$ROOT/build}
shift || true
books=("$@")
[ ${#books[@]} -eq 0 ] && books=(moby_dick sotu)
CACHE=${HIPPO_DATA:-$HOME/.cache/hippo}
HIPPO=$BUILD/hippo
[ -x "$HIPPO" ] || { echo "tokenizer_compare.sh: $HIPPO not built" >&2; exit 1; }

"$ROOT/scripts/fetch_tokenizer.sh" --reference
"$ROOT/scripts/fetch_data.sh" "${books[@]}"
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
status=0
for b in "${books[@]}"; do
    txt=$CACHE/text/$b.txt
    ids=$CACHE/text/$b.gpt2.ids
    if [ ! -f "$ids" ]; then
        node "$ROOT/scripts/tokenizer_reference.js" encode "$txt" > "$ids.tmp" && mv "$ids.tmp" "$ids"
    fi
    if [ "$(stat -c %s "$txt")" -lt 2000000 ]; then
        node "$ROOT/scripts/tokenizer_reference.js" encode --impl gpt-tokenizer "$txt" > "$tmp/other.ids"
        cmp -s "$ids" "$tmp/other.ids" || { echo "$b: js-tiktoken and gpt-tokenizer disagree" >&2; status=1; }
    fi
    "$HIPPO" tokenize encode "$txt" --stats > "$tmp/hippo.ids"
    if cmp -s "$ids" "$tmp/hippo.ids"; then
        echo "$b: $(wc -w < "$ids") tokens, identical to js-tiktoken"
    else
        echo "$b: MISMATCH with js-tiktoken" >&2
        status=1
    fi
    "$HIPPO" tokenize decode "$tmp/hippo.ids" > "$tmp/back.txt"
    cmp -s "$txt" "$tmp/back.txt" || { echo "$b: decode(encode(book)) != book" >&2; status=1; }
done
exit $status
