#!/usr/bin/env bash
# `sluice serve` on bad configs and flags: a one-line error naming the file
# line and key, exit 1 (bad config) or 2 (bad flag), never a crash; the
# config reference in docs/server.md matches the option table.
# Usage: serve.sh SLUICE ASSETS TMPDIR
set -u
S=$1
T=$3/cli-serve-$$
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
mkdir -p "$T"
trap 'rm -rf "$T"' EXIT
fails=0 passes=0

# expect CODE PATTERN -- command...: exit code and a stderr line matching
expect() {
    local want=$1 pat=$2
    shift 3
    local out rc
    out=$(timeout 20 "$@" 2>&1 >/dev/null)
    rc=$?
    if [ "$rc" -ne "$want" ] || ! grep -qE -- "$pat" <<<"$out"; then
        echo "FAIL: $* -> exit $rc (want $want), stderr: $out (want /$pat/)"
        fails=$((fails + 1))
    else
        passes=$((passes + 1))
    fi
}

"$S" synth --preset tiny -o "$T/tiny.gguf" 2>/dev/null || { echo "FAIL: synth"; exit 1; }
printf 'server:\n  prot: 1\n' > "$T/typo.yaml"
printf 'models:\n  m:\n    path: %s\n    slots: 99\n' "$T/tiny.gguf" > "$T/range.yaml"
printf 'models:\n  m: %s/missing.gguf\n' "$T" > "$T/missing.yaml"
printf 'models:\n  m: %s\n  m2:\n    path: %s\n    chat_template: nosuch\n' "$T/tiny.gguf" "$T/tiny.gguf" > "$T/tmpl.yaml"
printf 'server: [\n' > "$T/broken.yaml"

expect 2 "give a CONFIG.yaml or -m" -- "$S" serve
expect 2 "unknown option" -- "$S" serve -m "$T/tiny.gguf" --bogus
expect 2 "not an integer" -- "$S" serve -m "$T/tiny.gguf" --port 99999
expect 1 "cannot open config" -- "$S" serve "$T/none.yaml"
expect 1 "line 2: unknown key 'prot'.*known: host, port" -- "$S" serve "$T/typo.yaml"
expect 1 "slots: '99' is not an integer in \[1, 32\]" -- "$S" serve "$T/range.yaml"
expect 1 "not valid YAML" -- "$S" serve "$T/broken.yaml"
expect 1 "missing.gguf" -- "$S" serve "$T/missing.yaml"
expect 1 "unknown template 'nosuch'" -- "$S" serve "$T/tmpl.yaml"
expect 1 "is not an IPv4 address" -- "$S" serve -m "$T/tiny.gguf" --host nohost

h=$("$S" serve --hash-key abc)
[ "$h" = "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad" ] || {
    echo "FAIL: --hash-key gave $h"; fails=$((fails + 1)); }

# docs/server.md carries the reference the option table prints
"$S" serve --config-help > "$T/ref.md"
awk '/<!-- config-reference:begin -->/{f=1; next} /<!-- config-reference:end -->/{f=0} f' \
    "$ROOT/docs/server.md" > "$T/doc.md"
if diff -u "$T/ref.md" "$T/doc.md" >/dev/null; then
    passes=$((passes + 1))
else
    echo "FAIL: docs/server.md config reference differs from 'sluice serve --config-help':"
    diff -u "$T/ref.md" "$T/doc.md" | head -20
    fails=$((fails + 1))
fi

echo "$passes passed, $fails failed"
[ "$fails" -eq 0 ]
