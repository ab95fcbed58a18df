"""The fixed texts of a kit: ``verify-kit.sh`` and ``README.txt`` (the same in every part and in
the kit archive, so they are byte-identical across kits and reviewable here).

The script is POSIX sh, tested under dash and busybox sh (with GNU tools, and with busybox's
own); see docs/kit.md. It follows the ideas of the devportal's verify-offline.sh (checksums
first, DSSE by splitting the envelope at quotes, PAE rebuilt with printf, openssl for the
signature) but is its own script: it reads our canonical JSON with anchored sed patterns and
refuses anything else.
"""

from __future__ import annotations

__all__ = ["README_TEXT", "VERIFY_KIT_SCRIPT"]

#: verify-kit.sh (mode 0755).
VERIFY_KIT_SCRIPT = r"""#!/bin/sh
# verify-kit.sh: check the parts of a Stella Offline Kit, and the whole kit, with a POSIX shell.
#
# Usage:
#   sh verify-kit.sh [PUBLIC_KEY.pem]          the directory this script is in: one part of a
#                                              kit (or an extracted kit archive)
#   sh verify-kit.sh PUBLIC_KEY.pem DIR...     each DIR (parts, or an extracted kit); when the
#                                              parts are all the parts of one kit, also the
#                                              reassembled kit and every file it lists
# Without a key only integrity is checked (checksums), not who made the kit.
# Needs: sha256sum (or shasum -a 256), awk, sed, tr, sort, cmp, find, grep, head, wc, tar;
# and openssl for signatures (Ed25519 or ECDSA P-256 public key in PEM).
# Exit codes: 0 verified, 2 damaged, missing or foreign file, 3 signature failure,
# 4 usage or missing tool.

set -u
LC_ALL=C
export LC_ALL
umask 077

PART_TYPE='application/vnd.stellaops.offline-kit-part+json'
KIT_TYPE='application/vnd.stellaops.offline-kit+json'

say() { printf '%s\n' "$*"; }
ok() { printf 'OK    %s\n' "$*"; }
fail() {
    code=$1
    shift
    printf 'FAIL  %s\n' "$*" >&2
    exit "$code"
}
usage() {
    say "usage: sh verify-kit.sh [PUBLIC_KEY.pem] [DIR...]"
    say "  DIR: a part directory (part.json) or an extracted kit (kit.json); default: here"
    say "  exit codes: 0 verified, 2 damaged or foreign file, 3 signature failure, 4 usage"
}

key=
case ${1-} in
    -h | --help) usage; exit 0 ;;
    -*) usage >&2; exit 4 ;;
esac
if [ $# -gt 0 ] && [ ! -d "$1" ]; then
    key=$1
    shift
    case $key in
        /*) ;;
        *) key=$PWD/$key ;;
    esac
    [ -f "$key" ] && [ -r "$key" ] || fail 4 "cannot read the public key file $key"
fi
if [ $# -eq 0 ]; then
    case $0 in
        */*) set -- "${0%/*}" ;;
        *) set -- . ;;
    esac
fi

if command -v sha256sum >/dev/null 2>&1; then
    sha256() { sha256sum "$@"; }
elif command -v shasum >/dev/null 2>&1; then
    sha256() { shasum -a 256 "$@"; }
else
    fail 4 "neither sha256sum nor shasum is installed"
fi
for tool in awk cat cmp find grep head mkdir rm sed sort tar tr wc; do
    command -v "$tool" >/dev/null 2>&1 || fail 4 "$tool is not installed"
done
if [ -n "$key" ]; then
    command -v openssl >/dev/null 2>&1 || fail 4 "openssl is needed to check signatures"
fi

n=0
while :; do
    tmp=${TMPDIR:-/tmp}/verify-kit.$$.$n
    mkdir "$tmp" 2>/dev/null && break
    n=$((n + 1))
    [ "$n" -lt 100 ] || fail 4 "cannot create a temporary directory in ${TMPDIR:-/tmp}"
done
trap 'rm -rf "$tmp"' EXIT
trap 'exit 4' HUP INT TERM

# Lines of file 2 missing from file 1 (comm is not in every busybox build).
missing_from() { awk 'NR == FNR { seen[$0] = 1; next } !($0 in seen)' "$1" "$2"; }

# -- the public key ---------------------------------------------------------------------------

if [ -n "$key" ]; then
    openssl pkey -pubin -in "$key" -text -noout >"$tmp/key.txt" 2>/dev/null ||
        fail 4 "$key is not a PEM public key"
    if grep -q 'ED25519' "$tmp/key.txt"; then
        key_type=ed25519
    elif grep -q -e prime256v1 -e P-256 "$tmp/key.txt"; then
        key_type=ecdsa-p256
    else
        fail 4 "$key: unsupported key type (Ed25519 or ECDSA P-256 expected)"
    fi
    openssl pkey -pubin -in "$key" -outform DER >"$tmp/key.der" 2>/dev/null ||
        fail 4 "$key: cannot convert the key to DER"
    keyid=$(sha256 "$tmp/key.der" | awk '{ print $1 }')
fi

# -- checksums.txt of a directory: well-formed, complete, matching ----------------------------

# check_sums DIR LABEL
check_sums() {
    [ -f "$1/checksums.txt" ] || fail 2 "$2: checksums.txt is missing"
    if ! awk '
        {
            h = substr($0, 1, 64); s = substr($0, 65, 2); p = substr($0, 67)
            if (length(h) != 64 || h !~ /^[0-9a-f]+$/ || s != "  " || p == "") bad = 1
            if (p ~ /^\// || p ~ /\\/ || ("/" p "/") ~ /\/\.\.?\//) bad = 1
            if (p == "checksums.txt" || (NR > 1 && p <= last)) bad = 1
            if (bad) { print "checksums.txt line " NR " is malformed or out of order"; exit 1 }
            last = p
        }' "$1/checksums.txt" >"$tmp/format.err"; then
        fail 2 "$2: $(cat "$tmp/format.err")"
    fi
    (cd "$1" && find . ! -type d ! -type f) >"$tmp/odd"
    [ -s "$tmp/odd" ] && fail 2 "$2: not a regular file: $(head -n 1 "$tmp/odd")"
    sed 's/^[0-9a-f]*  //' "$1/checksums.txt" | sort >"$tmp/listed"
    (cd "$1" && find . -type f -print) | sed 's|^\./||' | grep -v '^checksums\.txt$' |
        sort >"$tmp/present"
    absdir=$(cd "$1" && pwd)
    case ${key:-} in
        "$absdir"/*) # the key file may sit in the directory
            printf '%s\n' "${key#"$absdir"/}" >>"$tmp/listed"
            sort "$tmp/listed" >"$tmp/listed.sorted"
            cat "$tmp/listed.sorted" >"$tmp/listed"
            ;;
    esac
    extra=$(missing_from "$tmp/listed" "$tmp/present" | head -n 1)
    [ -z "$extra" ] || fail 2 "$2: unexpected file not listed in checksums.txt: $extra"
    absent=$(missing_from "$tmp/present" "$tmp/listed" | head -n 1)
    [ -z "$absent" ] || fail 2 "$2: $absent is missing"
    if ! (cd "$1" && sha256 -c checksums.txt) >"$tmp/check.out" 2>&1; then
        bad=$(grep -v ': OK$' "$tmp/check.out" | head -n 1)
        fail 2 "$2: does not match checksums.txt: $bad"
    fi
}

# -- DSSE: the signed payload is the file, and a signature verifies with the key ---------------

b64decode() { # b64decode IN OUT: standard or URL-safe base64, padded or not
    tr '_-' '/+' <"$1" | awk '{ s = $0; while (length(s) % 4) s = s "="; print s }' >"$1.std"
    grep -q '^[A-Za-z0-9+/]*=*$' "$1.std" || return 1
    openssl base64 -d -A -in "$1.std" -out "$2" 2>/dev/null
}

# check_dsse ENVELOPE FILE TYPE LABEL
check_dsse() {
    tr '"' '\n' <"$1" >"$tmp/env.tokens"
    field() {
        awk -v want="$1" '
            p2 == want && p1 ~ /^[ \t\r]*:[ \t\r]*$/ { print }
            { p2 = p1; p1 = $0 }' "$tmp/env.tokens"
    }
    ptype=$(field payloadType)
    field payload >"$tmp/payload.b64"
    field sig >"$tmp/sigs.b64"
    [ "$(wc -l <"$tmp/payload.b64" | tr -d ' ')" = 1 ] ||
        fail 3 "$4: ${1##*/} must have exactly one payload"
    [ "$ptype" = "$3" ] || fail 3 "$4: ${1##*/}: payloadType is '$ptype', expected '$3'"
    [ -s "$tmp/sigs.b64" ] || fail 3 "$4: ${1##*/} has no signature"
    b64decode "$tmp/payload.b64" "$tmp/payload" || fail 3 "$4: ${1##*/}: payload not base64"
    cmp -s "$tmp/payload" "$2" || fail 3 "$4: ${2##*/} is not the payload signed in ${1##*/}"
    plen=$(wc -c <"$tmp/payload" | tr -d ' ')
    {
        printf 'DSSEv1 %s %s %s ' "${#ptype}" "$ptype" "$plen"
        cat "$tmp/payload"
    } >"$tmp/pae"
    verified=
    while IFS= read -r sig; do
        printf '%s\n' "$sig" >"$tmp/sig.b64"
        b64decode "$tmp/sig.b64" "$tmp/sig" || continue
        if [ "$key_type" = ed25519 ]; then
            openssl pkeyutl -verify -pubin -inkey "$key" -rawin -in "$tmp/pae" \
                -sigfile "$tmp/sig" >/dev/null 2>&1 && verified=1
        else
            openssl dgst -sha256 -verify "$key" -signature "$tmp/sig" "$tmp/pae" \
                >/dev/null 2>&1 && verified=1
        fi
        [ -n "$verified" ] && break
    done <"$tmp/sigs.b64"
    [ -n "$verified" ] || fail 3 "$4: no signature in ${1##*/} verifies with $key_type key $keyid"
}

# -- one part ---------------------------------------------------------------------------------

# part.json is RFC 8785 JSON; split at '{' it reads (one object per line):
#   "count":N,"index":I,"kit":
#   "path":P,"sha256":H,"size":S},"kitId":K,"kitManifest":"sha256:M","parts":[
#   "index":I,"offset":O,"path":P,"sha256":H,"size":S},   (one line per part)
# read_part DIR LABEL: sets count, index, kit_id, kit_sha, kit_size; the table in $tmp/table
read_part() {
    tr '{' '\n' <"$1/part.json" >"$tmp/part.lines"
    head_line=$(sed -n '2p' "$tmp/part.lines")
    kit_line=$(sed -n '3p' "$tmp/part.lines")
    count=$(printf '%s\n' "$head_line" | sed -n 's/^"count":\([0-9]*\),"index":[0-9]*,"kit":$/\1/p')
    index=$(printf '%s\n' "$head_line" | sed -n 's/^"count":[0-9]*,"index":\([0-9]*\),"kit":$/\1/p')
    kit_sha=$(printf '%s\n' "$kit_line" |
        sed -n 's/^"path":"[^"]*","sha256":"\([0-9a-f]*\)","size":[0-9]*},"kitId":.*$/\1/p')
    kit_size=$(printf '%s\n' "$kit_line" |
        sed -n 's/^"path":"[^"]*","sha256":"[0-9a-f]*","size":\([0-9]*\)},"kitId":.*$/\1/p')
    id_re='^.*},"kitId":"\(kit-[0-9a-f]*\)","kitManifest":"sha256:[0-9a-f]*","parts":\[$'
    kit_id=$(printf '%s\n' "$kit_line" | sed -n "s/$id_re/\\1/p")
    # one row per part: "INDEX SHA256 SIZE PATH"
    row_re='^"index":\([0-9]*\),"offset":[0-9]*,"path":"\([^"]*\)",'
    row_re=$row_re'"sha256":"\([0-9a-f]*\)","size":\([0-9]*\)}.*$'
    sed -n "s/$row_re/\\1 \\3 \\4 \\2/p" "$tmp/part.lines" >"$tmp/table"
    if [ -z "$count" ] || [ -z "$index" ] || [ -z "$kit_id" ] || [ -z "$kit_sha" ] ||
        [ -z "$kit_size" ] || [ "$(wc -l <"$tmp/table" | tr -d ' ')" != "$count" ]; then
        fail 2 "$2: part.json is not a kit part manifest"
    fi
}

# check_part DIR LABEL: checksums, signature, and the slice against the signed table
check_part() {
    check_sums "$1" "$2"
    [ -f "$1/part.json" ] && [ -f "$1/part.json.dsse" ] || fail 2 "$2: part.json is missing"
    if [ -n "$key" ]; then
        check_dsse "$1/part.json.dsse" "$1/part.json" "$PART_TYPE" "$2"
    fi
    read_part "$1" "$2"
    row=$(awk -v i="$index" '$1 == i' "$tmp/table")
    set -- "$1" "$2" $row
    [ $# -eq 6 ] || fail 2 "$2: part $index is not in its own table"
    [ -f "$1/$6" ] || fail 2 "$2: $6 is missing"
    grep -q "^$4  $6\$" "$1/checksums.txt" ||
        fail 2 "$2: $6 is not the slice part.json signs (sha256 $4)"
    [ "$(wc -c <"$1/$6" | tr -d ' ')" = "$5" ] || fail 2 "$2: $6 is not $5 bytes"
    chunk=$6
    ok "$2: part $index of $count of kit $kit_id ($5 bytes)"
}

# -- an extracted kit -------------------------------------------------------------------------

# kit.json is RFC 8785 JSON; every file object reads {"path":P,"sha256":H,"size":S}.
check_kit() {
    check_sums "$1" "$2"
    for f in kit.json kit.json.dsse README.txt verify-kit.sh; do
        [ -f "$1/$f" ] || fail 2 "$2: $f is missing"
    done
    if [ -n "$key" ]; then
        check_dsse "$1/kit.json.dsse" "$1/kit.json" "$KIT_TYPE" "$2"
    fi
    tr '{' '\n' <"$1/kit.json" |
        sed -n 's/^"path":"\([^"]*\)","sha256":"\([0-9a-f]*\)","size":[0-9]*}.*$/\2  \1/p' |
        sort >"$tmp/signed"
    grep '  bundles/' "$1/checksums.txt" | sort >"$tmp/bundled"
    if ! cmp -s "$tmp/signed" "$tmp/bundled"; then
        unsigned=$(missing_from "$tmp/signed" "$tmp/bundled" | head -n 1)
        [ -z "$unsigned" ] || fail 3 "$2: not as signed in kit.json: ${unsigned#*  }"
        absent=$(missing_from "$tmp/bundled" "$tmp/signed" | head -n 1)
        fail 2 "$2: listed in kit.json but not in the kit: ${absent#*  }"
    fi
    files=$(wc -l <"$tmp/signed" | tr -d ' ')
    ok "$2: kit.json lists $files bundle files; all present and intact"
}

# -- main -------------------------------------------------------------------------------------

first_id=
first_label=
parts=0
for dir in "$@"; do
    case $dir in
        */) dir=${dir%/} ;;
    esac
    label=${dir##*/}
    [ "$label" = . ] && label=$(cd "$dir" && pwd) && label=${label##*/}
    [ -d "$dir" ] || fail 4 "$dir is not a directory"
    if [ -f "$dir/part.json" ]; then
        check_part "$dir" "$label"
        if [ -z "$first_id" ]; then
            first_id=$kit_id
            first_label=$label
            first_count=$count
            cat "$tmp/table" >"$tmp/first.table"
            first_sha=$kit_sha
        elif [ "$kit_id" != "$first_id" ]; then
            fail 2 "$label: belongs to kit $kit_id, not to kit $first_id (of $first_label)"
        elif ! cmp -s "$tmp/table" "$tmp/first.table"; then
            fail 2 "$label: its table of parts differs from that of $first_label"
        fi
        if [ -f "$tmp/have.$index" ]; then
            fail 2 "$label: part $index was given twice (also $(cat "$tmp/have.$index"))"
        fi
        printf '%s\n' "$dir" >"$tmp/have.$index"
        printf '%s\n' "$chunk" >"$tmp/chunk.$index"
        parts=$((parts + 1))
    elif [ -f "$dir/kit.json" ]; then
        check_kit "$dir" "$label"
    else
        fail 2 "$label: neither a kit part (part.json) nor a kit (kit.json)"
    fi
done

if [ "$parts" -gt 0 ]; then
    if [ "$parts" -lt "$first_count" ]; then
        i=1
        missing=
        while [ "$i" -le "$first_count" ]; do
            [ -f "$tmp/have.$i" ] || missing="$missing $i"
            i=$((i + 1))
        done
        say "NOTE  kit $first_id: $parts of $first_count parts checked; missing:$missing"
        say "      each part above is intact; the kit is checked once all parts are given"
    else
        : >"$tmp/kit.tar"
        i=1
        while [ "$i" -le "$first_count" ]; do
            cat "$(cat "$tmp/have.$i")/$(cat "$tmp/chunk.$i")" >>"$tmp/kit.tar"
            i=$((i + 1))
        done
        got=$(sha256 "$tmp/kit.tar" | awk '{ print $1 }')
        [ "$got" = "$first_sha" ] ||
            fail 2 "kit $first_id: the joined parts hash to $got, not $first_sha"
        ok "kit $first_id: $first_count parts join into the signed kit archive"
        mkdir "$tmp/kit" && (cd "$tmp/kit" && tar -xf ../kit.tar) ||
            fail 2 "kit $first_id: cannot extract the joined archive"
        check_kit "$tmp/kit" "kit $first_id"
    fi
fi

if [ -z "$key" ]; then
    say "NOTE  signatures NOT checked: no public key given. The checksums prove the files"
    say "      are intact, not who made them: sh verify-kit.sh PUBLIC_KEY.pem [DIR...]"
    say "INTACT"
    exit 0
fi
say "VERIFIED  (key $keyid)"
exit 0
""".encode("ascii")

#: README.txt of every part and of the kit archive.
README_TEXT = """STELLA OFFLINE KIT (offline-kit/v1)
===================================

An Offline Kit carries several signed export bundles (mirror evidence, Trivy databases, the
developer portal, ...) across an air gap at once, in the order to import them. It travels as
parts of a fixed maximum size, one directory per part:

  part-001-of-003/
    <kitId>.tar.001     this part's slice of the kit archive
    part.json           which kit, which part, and the SHA-256 of every part's slice
    part.json.dsse      the signature over part.json (a DSSE envelope)
    checksums.txt       SHA-256 of every file here except itself
    verify-kit.sh       checks all of this with a POSIX shell
    README.txt          this file

1. Get the public key, out of band
----------------------------------
Use the publisher's public key (PEM) obtained through a channel you trust, never one that
travelled with the kit.

2. Check each part as it arrives
--------------------------------
  sh part-001-of-003/verify-kit.sh PUBLIC_KEY.pem

finds a damaged medium at once, before the other parts arrive. Exit codes: 0 verified,
2 damaged, missing or foreign file, 3 signature failure, 4 usage error or missing tool.

3. Check the whole kit
----------------------
  sh part-001-of-003/verify-kit.sh PUBLIC_KEY.pem part-001-of-003 part-002-of-003 ...

checks every part, that they belong to one kit, joins them, checks the joined archive against
the signed digest and every bundle against the signed kit.json.

4. Import
---------
  stella kit import part-* --trust-roots PUBLIC_KEY.pem --trivy-cache-dir DIR

verifies everything again (each bundle too), then imports the mirror bundles and installs the
Trivy databases in the kit's order, each bundle atomically, and reports what it did. By hand:
  cat part-*/<kitId>.tar.* > <kitId>.tar && mkdir kit && tar -xf <kitId>.tar -C kit
  sh kit/verify-kit.sh PUBLIC_KEY.pem kit

The scripts are covered by checksums.txt only (not by a signature): read them before running
them, or use "stella kit verify", which trusts nothing inside the kit.
""".encode("ascii")
