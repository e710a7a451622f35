#!/usr/bin/env bash
# The CLI on bad input: a one-line error naming the problem, a non-zero exit,
# never a crash. Usage: errors.sh SLUICE ASSETS TMPDIR
set -u
S=$1
T=$3/cli-errors-$$
mkdir -p "$T"
trap 'rm -rf "$T"' EXIT
fails=0 passes=0

# expect CODE PATTERN -- command...: exit code and a stderr line matching
expect() {
    local want=$1 pat=$2
    shift 3
    local out rc
    out=$("$@" 2>&1 >/dev/null)
    rc=$?
    if [ "$rc" -ne "$want" ] || ! grep -qE -- "$pat" <<<"$out"; then
        echo "FAIL: $* -> exit $rc (want $want), stderr: $out (want /$pat/)"
        fails=$((fails + 1))
    elif [ "$rc" -ge 128 ]; then
        echo "FAIL: $* crashed (exit $rc)"
        fails=$((fails + 1))
    else
        passes=$((passes + 1))
    fi
}

"$S" synth --preset tiny --type Q4_0 -o "$T/tiny.gguf" 2>/dev/null || { echo "FAIL: synth"; exit 1; }
size=$(stat -c %s "$T/tiny.gguf")

expect 2 "unknown command" -- "$S" frobnicate
expect 2 "unknown option" -- "$S" run --frob
expect 2 "-m MODEL" -- "$S" run -p hi
expect 2 "not an integer" -- "$S" run -m "$T/tiny.gguf" -p hi -n abc
expect 2 "not a number" -- "$S" run -m "$T/tiny.gguf" -p hi --temp -1
expect 1 "cannot open" -- "$S" info "$T/missing.gguf"
printf 'not a gguf file at all' > "$T/text.gguf"
expect 1 "bad magic" -- "$S" info "$T/text.gguf"
: > "$T/empty.gguf"
expect 1 "empty file" -- "$S" info "$T/empty.gguf"
for cut in 3 10 30 200 2000 $((size / 2)) $((size - 1)); do
    head -c "$cut" "$T/tiny.gguf" > "$T/cut.gguf"
    expect 1 "truncated|past the end|cannot fit|bad magic" -- "$S" info "$T/cut.gguf"
done
expect 1 "out of range" -- "$S" logits -m "$T/tiny.gguf" --tokens 1,999999 --out "$T/l.f32"
expect 2 "comma-separated" -- "$S" logits -m "$T/tiny.gguf" --tokens 1,x --out "$T/l.f32"
expect 2 "unknown template" -- "$S" run -m "$T/tiny.gguf" -p hi --chat-template nosuch
expect 2 "-d: bad list" -- "$S" bench -m "$T/tiny.gguf" -d 1,x
expect 2 "-c 8 is shorter" -- "$S" bench -m "$T/tiny.gguf" -p 0 -n 4 -d 16 -c 8
expect 1 "chat template" -- "$S" run -m "$T/tiny.gguf" -p hi --chat
expect 1 "implausible header|too short" -- "$S" convert --llama2c "$T/text.gguf" --tokenizer "$T/text.gguf" -o "$T/o.gguf"

# and the good paths work
"$S" run -m "$T/tiny.gguf" -p "hello" -n 4 --temp 0 >/dev/null 2>&1 || { echo "FAIL: run"; fails=$((fails + 1)); }
"$S" logits -m "$T/tiny.gguf" --tokens 1,5,6 --out "$T/l.f32" || { echo "FAIL: logits"; fails=$((fails + 1)); }
[ "$(stat -c %s "$T/l.f32")" -eq $((3 * 512 * 4)) ] || { echo "FAIL: logits size"; fails=$((fails + 1)); }
"$S" logits -m "$T/tiny.gguf" --tokens 1,5,6 --out "$T/s.f32" --sequential
cmp -s "$T/l.f32" "$T/s.f32" || echo "note: batch and sequential logits differ in bits (allowed)"
ids=$("$S" tokenize -m "$T/tiny.gguf" --ids "hi")
[ -n "$ids" ] || { echo "FAIL: tokenize"; fails=$((fails + 1)); }

echo "$passes passed, $fails failed"
[ "$fails" -eq 0 ]
