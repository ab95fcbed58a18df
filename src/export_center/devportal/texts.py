"""The two fixed texts of every bundle: ``verify-offline.sh`` and ``instructions-portable.txt``.

Both are constants (nothing bundle-specific), so they are byte-identical across bundles and
reviewable here. The script is POSIX sh, tested under dash and busybox sh with GNU, mawk and
busybox tools; see docs/devportal.md for the design.
"""

from __future__ import annotations

__all__ = ["INSTRUCTIONS", "VERIFY_SCRIPT"]

#: verify-offline.sh (mode 0755 in the archive).
VERIFY_SCRIPT = r"""#!/bin/sh
# verify-offline.sh: check this devportal:offline bundle with a POSIX shell alone.
#
# Usage (in the directory the bundle was extracted to, or with the path to this script):
#   sh verify-offline.sh                     checksums only (integrity, NOT authenticity)
#   sh verify-offline.sh PUBLIC_KEY.pem      checksums, then the DSSE signature over
#                                            manifest.json and every file it lists
# Needs: sha256sum (or shasum -a 256), awk, sed, tr, sort, cmp, find, wc; and openssl for
# the signature (Ed25519 or ECDSA P-256 public key in PEM).
# Exit codes: 0 verified, 2 checksum failure, 3 signature failure, 4 usage or missing tool.

set -u
LC_ALL=C
export LC_ALL
umask 077

PAYLOAD_TYPE='application/vnd.stellaops.devportal-manifest+json'
ROOT_FILES='checksums.txt instructions-portable.txt manifest.dsse.json manifest.json'
ROOT_FILES="$ROOT_FILES verify-offline.sh"

say() { printf '%s\n' "$*"; }
ok() { printf 'OK    %s\n' "$*"; }
fail() {
    code=$1
    shift
    printf 'FAIL  %s\n' "$*" >&2
    exit "$code"
}
usage() {
    say "usage: sh verify-offline.sh [PUBLIC_KEY.pem]"
    say "  without a key only the checksums are checked (integrity, not authenticity)"
    say "  exit codes: 0 verified, 2 checksum failure, 3 signature failure, 4 usage"
}

case $# in
    0) key= ;;
    1)
        case $1 in
            -h | --help) usage; exit 0 ;;
            -*) usage >&2; exit 4 ;;
        esac
        key=$1
        ;;
    *) usage >&2; exit 4 ;;
esac

if [ -n "$key" ]; then
    case $key in
        /*) ;;
        *) key=$PWD/$key ;;
    esac
    [ -f "$key" ] && [ -r "$key" ] || fail 4 "cannot read the public key file $key"
fi

case $0 in
    */*) bundle_dir=${0%/*} ;;
    *) bundle_dir=. ;;
esac
cd "$bundle_dir" || fail 4 "cannot enter the bundle directory $bundle_dir"
for f in $ROOT_FILES; do
    [ -f "$f" ] || fail 2 "$f is missing: run this script inside the extracted bundle"
done

if command -v sha256sum >/dev/null 2>&1; then
    sha256() { sha256sum "$@"; }
elif command -v shasum >/dev/null 2>&1; then
    sha256() { shasum -a 256 "$@"; }
else
    fail 4 "neither sha256sum nor shasum is installed"
fi
for tool in awk cat cmp find grep head mkdir rm sed sort tr wc; do
    command -v "$tool" >/dev/null 2>&1 || fail 4 "$tool is not installed"
done

# A private scratch directory (mkdir fails rather than reuse an existing one; umask 077).
n=0
while :; do
    tmp=${TMPDIR:-/tmp}/devportal-verify.$$.$n
    mkdir "$tmp" 2>/dev/null && break
    n=$((n + 1))
    [ "$n" -lt 100 ] || fail 4 "cannot create a temporary directory in ${TMPDIR:-/tmp}"
done
trap 'rm -rf "$tmp"' EXIT
trap 'exit 4' HUP INT TERM

# -- 1. checksums.txt: well-formed, complete, and matching every file ----------------------

# No file name may hold a control character (a newline would split one name into two lines
# of every listing below) or a backslash: refused before anything is listed. Names are shown
# with control characters replaced, never raw (they could drive the terminal).
bad_name=$(find . \( -name '*[[:cntrl:]]*' -o -name '*\\*' \) -print | tr '[:cntrl:]' '?' |
    awk '{ print substr($0, 1, 200); exit }')
if [ -n "$bad_name" ]; then
    bad_name=${bad_name#./}
    fail 2 "a file name holds a control character or a backslash: ${bad_name%?}"
fi

# "<64 lowercase hex>  <relative path>" per line, sorted, no '.', '..', absolute paths,
# backslashes, carriage returns or repeated paths (awk without interval expressions: mawk and
# busybox).
if ! awk '
    {
        h = substr($0, 1, 64); s = substr($0, 65, 2); p = substr($0, 67)
        if (length(h) != 64 || h !~ /^[0-9a-f]+$/ || s != "  " || p == "") bad = 1
        if (p ~ /^\// || p ~ /\\/ || p ~ /\r/ || ("/" p "/") ~ /\/\.\.?\//) bad = 1
        if (p == "checksums.txt" || (NR > 1 && p <= last)) bad = 1
        if (bad) { print "checksums.txt line " NR " is malformed or out of order: " $0; exit 1 }
        last = p
    }' checksums.txt >"$tmp/format.err"; then
    fail 2 "$(cat "$tmp/format.err")"
fi
sed 's/^[0-9a-f]*  //' checksums.txt >"$tmp/listed"

# Every file present must be listed (a file slipped into the portal would be served too).
find . ! -type d ! -type f >"$tmp/odd"
if [ -s "$tmp/odd" ]; then
    fail 2 "not a regular file: $(sed 's|^\./||' "$tmp/odd" | head -n 1)"
fi
{
    find . -type f -print | sed 's|^\./||' | grep -v '^checksums\.txt$'
} | sort >"$tmp/present"
key_rel=
case $key in
    "$PWD"/*) # the key file may sit in the bundle directory
        key_rel=${key#"$PWD"/}
        while :; do
            case $key_rel in
                ./*) key_rel=${key_rel#./} ;;
                *) break ;;
            esac
        done
        ;;
esac
{
    cat "$tmp/listed"
    [ -z "$key_rel" ] || say "$key_rel"
} | sort >"$tmp/expected"
# Lines of file 2 missing from file 1 (comm is not in every busybox build).
missing_from() { awk 'NR == FNR { seen[$0] = 1; next } !($0 in seen)' "$1" "$2"; }
extra=$(missing_from "$tmp/expected" "$tmp/present" | head -n 1)
if [ -n "$extra" ]; then
    fail 2 "unexpected file not listed in checksums.txt: $extra" \
        "(extract the bundle into an empty directory)"
fi

if ! sha256 -c checksums.txt >"$tmp/check.out" 2>&1; then
    grep -v ': OK$' "$tmp/check.out" | head -n 20 >&2
    fail 2 "checksums.txt does not match the files (see above)"
fi
count=$(wc -l <checksums.txt | tr -d ' ')
ok "checksums: $count files match checksums.txt"

if [ -z "$key" ]; then
    say "NOTE  signature NOT checked: no public key given."
    say "      The checksums prove the files are intact, not who made them. To check the"
    say "      signature run: sh verify-offline.sh PUBLIC_KEY.pem"
    exit 0
fi

# -- 2. DSSE signature over manifest.json ------------------------------------------------

command -v openssl >/dev/null 2>&1 || fail 4 "openssl is needed to check the signature"
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

# The envelope is JSON; its strings (base64, the payload type, hex keyids) never contain
# a double quote, so splitting at quotes gives: key, ":", value, ... one per line.
tr '"' '\n' <manifest.dsse.json >"$tmp/env.tokens"
field() { # field NAME: every value of the JSON member NAME, one per line
    awk -v want="$1" '
        p2 == want && p1 ~ /^[ \t\r]*:[ \t\r]*$/ { print }
        { p2 = p1; p1 = $0 }' "$tmp/env.tokens"
}
payload_type=$(field payloadType)
field payload >"$tmp/payload.b64"
field sig >"$tmp/sigs.b64"
[ "$(wc -l <"$tmp/payload.b64" | tr -d ' ')" = 1 ] ||
    fail 3 "manifest.dsse.json must have exactly one payload"
[ "$payload_type" = "$PAYLOAD_TYPE" ] ||
    fail 3 "manifest.dsse.json: payloadType is '$payload_type', expected '$PAYLOAD_TYPE'"
[ -s "$tmp/sigs.b64" ] || fail 3 "manifest.dsse.json has no signature"

b64decode() { # b64decode IN OUT: standard or URL-safe base64, padded or not (DSSE allows all)
    sed 's|\\/|/|g' "$1" | tr '_-' '/+' | awk '
        { s = $0; while (length(s) % 4) s = s "="; print s }' >"$1.std"
    grep -q '^[A-Za-z0-9+/]*=*$' "$1.std" || return 1
    openssl base64 -d -A -in "$1.std" -out "$2" 2>/dev/null
}
b64decode "$tmp/payload.b64" "$tmp/payload" || fail 3 "manifest.dsse.json: payload is not base64"
cmp -s "$tmp/payload" manifest.json ||
    fail 3 "manifest.json is not the payload signed in manifest.dsse.json"

# DSSE v1 Pre-Authentication Encoding: "DSSEv1 <len type> <type> <len payload> <payload>".
payload_len=$(wc -c <"$tmp/payload" | tr -d ' ')
{
    printf 'DSSEv1 %s %s %s ' "${#payload_type}" "$payload_type" "$payload_len"
    cat "$tmp/payload"
} >"$tmp/pae"

verified=
n=0
while IFS= read -r sig; do
    n=$((n + 1))
    printf '%s\n' "$sig" >"$tmp/sig.b64"
    b64decode "$tmp/sig.b64" "$tmp/sig" || continue
    if [ "$key_type" = ed25519 ]; then
        openssl pkeyutl -verify -pubin -inkey "$key" -rawin -in "$tmp/pae" \
            -sigfile "$tmp/sig" >/dev/null 2>&1 && verified=$n
    else
        openssl dgst -sha256 -verify "$key" -signature "$tmp/sig" "$tmp/pae" \
            >/dev/null 2>&1 && verified=$n
    fi
    [ -n "$verified" ] && break
done <"$tmp/sigs.b64"
[ -n "$verified" ] ||
    fail 3 "no signature in manifest.dsse.json verifies with $key_type key $keyid"
ok "signature: manifest.json is signed by $key_type key $keyid"

# -- 3. the signed manifest lists exactly the content files, with these digests ------------

# manifest.json is RFC 8785 JSON: {"bundleId":..,"entries":[{"category":..,"contentType":..,
# "path":..,"sha256":..,"sizeBytes":..},..],"generatedAt":..}. Paths hold no '"' or '\'.
if ! awk '
    {
        s = $0
        entry = "^[{]\"category\":\"[a-z]+\",\"contentType\":\"[^\"]*\","
        entry = entry "\"path\":\"[^\"]*\",\"sha256\":\"[0-9a-f]+\",\"sizeBytes\":[0-9]+[}]"
        if (!match(s, /^[{]"bundleId":"[^"]*","entries":\[/)) exit 1
        s = substr(s, RLENGTH + 1)
        while (match(s, entry)) {
            e = substr(s, 1, RLENGTH)
            s = substr(s, RLENGTH + 1)
            match(e, /"path":"[^"]*"/); p = substr(e, RSTART + 8, RLENGTH - 9)
            match(e, /"sha256":"[0-9a-f]+"/); h = substr(e, RSTART + 10, RLENGTH - 11)
            print h "  " p
            if (substr(s, 1, 1) != ",") break
            s = substr(s, 2)
        }
        if (substr(s, 1, 1) != "]") exit 1
    }' manifest.json >"$tmp/signed"; then
    fail 3 "manifest.json: cannot read its entries"
fi
sort "$tmp/signed" >"$tmp/signed.sorted"
# The root files are left out by their exact path, never by a suffix: a file named
# "portal/x  manifest.json" is content like any other, and must be signed.
is_root='p == "checksums.txt" || p == "instructions-portable.txt" || p == "manifest.dsse.json"'
is_root="$is_root"' || p == "manifest.json" || p == "verify-offline.sh"'
awk "{ p = substr(\$0, 67) } !($is_root) { print }" checksums.txt | sort >"$tmp/content"
if ! cmp -s "$tmp/signed.sorted" "$tmp/content"; then
    unsigned=$(missing_from "$tmp/signed.sorted" "$tmp/content" | head -n 1)
    absent=$(missing_from "$tmp/content" "$tmp/signed.sorted" | head -n 1)
    [ -z "$unsigned" ] || fail 3 "not as signed in manifest.json: ${unsigned#*  }"
    fail 3 "signed in manifest.json but not in checksums.txt: ${absent#*  }"
fi
# And directly: every file present is a root file or a signed entry (the key file aside).
sed 's/^[0-9a-f]*  //' "$tmp/signed.sorted" >"$tmp/signed.paths"
{
    printf '%s\n' checksums.txt instructions-portable.txt manifest.dsse.json manifest.json \
        verify-offline.sh
    [ -z "$key_rel" ] || say "$key_rel"
    cat "$tmp/signed.paths"
} | sort >"$tmp/allowed"
stray=$(missing_from "$tmp/allowed" "$tmp/present" | head -n 1)
[ -z "$stray" ] || fail 3 "not in the signed manifest: $stray"
entries=$(wc -l <"$tmp/signed" | tr -d ' ')
ok "manifest: $entries content files match the signed manifest"
say "VERIFIED  bundle authentic and intact (key $keyid)"
exit 0
""".encode("ascii")

#: instructions-portable.txt
INSTRUCTIONS = """DEVELOPER PORTAL, OFFLINE BUNDLE (devportal-offline/v1)
========================================================

This bundle carries the developer portal (a static web site), the OpenAPI specifications,
the SDKs and the changelog, so that they can be used on a machine without internet access.
Nothing in the portal loads anything from the network: fonts, scripts and styles are all
inside the bundle.

Contents
--------
  portal/                     the portal; open portal/index.html in a web browser
  specs/                      OpenAPI specifications (validated when the bundle was built)
  sdks/<name>/                one directory per SDK
  changelog/                  release notes
  manifest.json               what the bundle holds: every file with its SHA-256 and size
  manifest.dsse.json          the signature over manifest.json (a DSSE envelope)
  checksums.txt               SHA-256 of every file except itself, in sha256sum format
  verify-offline.sh           checks all of the above with a POSIX shell
  instructions-portable.txt   this file

1. Get the public key, out of band
----------------------------------
The signature is only worth something if you get the publisher's public key (a PEM file
starting with "-----BEGIN PUBLIC KEY-----") through a channel you trust, separately from
this bundle: never use a key that travelled with it.

2. Extract into an empty directory
----------------------------------
  mkdir devportal && tar -xzf devportal-offline-bundle.tgz -C devportal && cd devportal

3. Verify
---------
  sh verify-offline.sh /path/to/publisher-public-key.pem

It needs sha256sum (or shasum), the usual POSIX tools (awk, sed, sort, ...) and openssl. It
checks, in this order:
  a. checksums.txt: every file is listed, nothing else is there, every SHA-256 matches;
  b. manifest.dsse.json: manifest.json is exactly the signed payload and the signature
     verifies with the key you gave (Ed25519 or ECDSA P-256);
  c. the files under portal/, specs/, sdks/ and changelog/ are exactly the ones the signed
     manifest lists, with the same SHA-256.
Exit codes: 0 verified, 2 checksum failure (a file is damaged, missing or extra),
3 signature failure (wrong key, or the files are not the ones that were signed),
4 usage error or a missing tool.

Without a key ("sh verify-offline.sh") only step a runs: it tells you the files arrived
intact, not who made them, and says so.

Where the Stella Export Center CLI is available, the same checks run on the archive itself,
without extracting it:
  stella devportal verify devportal-offline-bundle.tgz --trust-roots publisher-keys.pem

4. What the signature does not cover
------------------------------------
verify-offline.sh and this file are covered by checksums.txt, which is not signed: someone
who can change the bundle can change the script too. If that matters to you, read the script
before running it (it is short) or use "stella devportal verify", which does not trust
anything inside the bundle and refuses a bundle whose verify-offline.sh or instructions are
not exactly the ones the product writes.
""".encode("ascii")
