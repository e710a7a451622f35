#!/usr/bin/env bash
# `sluice eval` and `sluice compare` end to end on two small local models
# (random weights from `sluice synth`): the results file has one line per
# (example, target), reports are written, --resume calls nothing twice and
# survives a half-written last line, --fail-under gates, and bad input is a
# one-line error with exit 1 (runtime) or 2 (usage).
# Usage: eval.sh SLUICE ASSETS TMPDIR
set -u
S=$1
T=$3/cli-eval-$$
mkdir -p "$T"
trap 'rm -rf "$T"' EXIT
cd "$T" || exit 1
fails=0 passes=0

fail() { echo "FAIL: $*"; fails=$((fails + 1)); }
pass() { passes=$((passes + 1)); }

# expect CODE PATTERN -- command...: exit code and a stderr line matching
expect() {
    local want=$1 pat=$2
    shift 3
    local out rc
    out=$(timeout 60 "$@" 2>&1 >/dev/null)
    rc=$?
    if [ "$rc" -ne "$want" ] || ! grep -qE -- "$pat" <<<"$out"; then
        fail "$* -> exit $rc (want $want), stderr: $out (want /$pat/)"
    else
        pass
    fi
}

lines() { wc -l < "$1" | tr -d ' '; }

"$S" synth --preset tiny --seed 1 -o a.gguf >/dev/null 2>&1 || { echo "FAIL: synth"; exit 1; }
"$S" synth --preset tiny --seed 2 -o b.gguf >/dev/null 2>&1 || { echo "FAIL: synth"; exit 1; }
cat > cfg.yaml <<'EOF'
models:
  a: {path: a.gguf, slots: 2}
  b: {path: b.gguf, slots: 2}
tasks:
  spam: {kind: classify, model: a, labels: [ham, spam]}
  gen: {kind: generate, model: a, prompt: "{input}"}
backends:
  small: {kind: local, model: a, infra_per_hour: 0.40}
  large: {kind: local, model: b, infra_per_hour: 4.0}
routes:
  triage: {policy: cascade, tiers: [small, large], threshold: 0.55, task: spam}
  eager: {policy: cascade, tiers: [small, large], threshold: 0.2, task: spam}
  notask: {policy: cascade, tiers: [small, large]}
EOF
for i in 0 1 2 3 4 5 6 7 8 9; do
    if [ $((i % 3)) -eq 0 ]; then l=spam; t="win money now $i"; else l=ham; t="meeting notes $i"; fi
    printf '{"id": "m%d", "input": "%s", "label": "%s", "source": "s%d"}\n' $i "$t" $l $((i % 2))
done > data.jsonl
printf 'id,input,label\nc1,"hello, there",ham\nc2,free money,spam\n' > data.csv

# a full run: 10 examples x (small, large, route)
if "$S" eval cfg.yaml --route triage --data data.jsonl --out out --json r.json --html r.html \
    --concurrency 3 > table.txt 2>err.txt; then
    pass
else
    fail "eval exited $?: $(tail -3 err.txt)"
fi
[ "$(lines out/results.jsonl)" = 30 ] && pass || fail "results.jsonl has $(lines out/results.jsonl) lines, want 30"
for tg in small large route; do
    n=$(grep -c "\"target\":\"$tg\"" out/results.jsonl)
    [ "$n" = 10 ] && pass || fail "target $tg has $n lines, want 10"
done
grep -q '"route":"triage"' out/run.json 2>/dev/null || grep -q '"route": "triage"' out/run.json && pass || fail "run.json"
grep -qE '^accuracy +[0-9.]+ +[0-9.]+ +[0-9.]+$' table.txt && pass || fail "table has no accuracy row: $(cat table.txt)"
grep -q '"targets"' r.json && grep -q '"frontier"' r.json && pass || fail "r.json lacks targets/frontier"
for id in chart-frontier chart-reliability chart-confusion chart-latency targets; do
    grep -q "id=\"$id\"" r.html && pass || fail "r.html has no #$id"
done
grep -q '<script' r.html && fail "r.html has a script" || pass

# resume: nothing left, nothing called
"$S" eval cfg.yaml --route triage --data data.jsonl --out out --resume > t2.txt 2>/dev/null
grep -q '(0 called, 30 resumed)' t2.txt && pass || fail "resume of a finished run: $(tail -1 t2.txt)"
# a kill mid-write: the last line is cut; only that pair runs again
head -c -20 out/results.jsonl > cut.jsonl && mv cut.jsonl out/results.jsonl
"$S" eval cfg.yaml --route triage --data data.jsonl --out out --resume > t3.txt 2>/dev/null
grep -q '(1 called, 29 resumed)' t3.txt && pass || fail "resume after a cut line: $(tail -1 t3.txt)"
[ "$(lines out/results.jsonl)" = 30 ] && pass || fail "after resume: $(lines out/results.jsonl) lines"
# --limit, then the rest
"$S" eval cfg.yaml --route triage --data data.jsonl --out lim --limit 4 --route-only >/dev/null 2>&1
"$S" eval cfg.yaml --route triage --data data.jsonl --out lim --resume --route-only > t4.txt 2>/dev/null
grep -q '(6 called, 4 resumed)' t4.txt && pass || fail "limit then resume: $(tail -1 t4.txt)"
# CSV examples
"$S" eval cfg.yaml --route triage --data data.csv --out csv --route-only >/dev/null 2>&1 &&
    [ "$(lines csv/results.jsonl)" = 2 ] && pass || fail "CSV examples"

# gates
expect 1 "accuracy = .* is under 1.01" -- "$S" eval cfg.yaml --route triage --data data.jsonl --out out --resume --fail-under accuracy=1.01
expect 0 "" -- "$S" eval cfg.yaml --route triage --data data.jsonl --out out --resume --fail-under accuracy=0 --fail-under small.macro_f1=0
expect 2 "no metric 'acuracy'" -- "$S" eval cfg.yaml --route triage --data data.jsonl --fail-under acuracy=0.5
expect 2 "want METRIC=NUMBER" -- "$S" eval cfg.yaml --route triage --data data.jsonl --fail-under accuracy

# bad input
expect 2 "give one CONFIG.yaml" -- "$S" eval --route triage --data data.jsonl
expect 2 "--data is required" -- "$S" eval cfg.yaml --route triage
expect 2 "give one --route" -- "$S" eval cfg.yaml --data data.jsonl
expect 2 "needs --resume" -- "$S" eval cfg.yaml --route triage --data data.jsonl --retry-errors
expect 1 "no route 'nope' \(routes: triage, eager, notask\)" -- "$S" eval cfg.yaml --route nope --data data.jsonl
expect 1 "route 'notask' names no task" -- "$S" eval cfg.yaml --route notask --data data.jsonl
expect 1 "task 'gen' is a generate task" -- "$S" eval cfg.yaml --route triage --task gen --data data.jsonl
expect 1 "cannot open 'none.jsonl'" -- "$S" eval cfg.yaml --route triage --data none.jsonl
printf '{"input": "x", "label": "phishing"}\n' > bad-label.jsonl
expect 1 "label 'phishing' is not one of task 'spam''s labels \(ham, spam\)" -- "$S" eval cfg.yaml --route triage --data bad-label.jsonl --out bl
printf '{"input": "x", "label": "ham"}\nnope\n' > bad-json.jsonl
expect 1 "bad-json.jsonl: line 2: not a JSON object" -- "$S" eval cfg.yaml --route triage --data bad-json.jsonl
expect 1 "holds a run of route 'triage', not 'eager'" -- "$S" eval cfg.yaml --route eager --data data.jsonl --out out --resume
printf 'garbage\n' >> out/results.jsonl
expect 1 "line 31 is not a result of sluice eval" -- "$S" eval cfg.yaml --route triage --data data.jsonl --out out --resume

# compare: two routes of one config, routes only, side by side
if "$S" compare cfg.yaml --route triage --route eager --data data.jsonl --out cmp --json c.json \
    > ctable.txt 2>/dev/null; then
    grep -qE '^accuracy +[0-9.]+ +[0-9.]+ +-?[0-9.]+$' ctable.txt && grep -q 'McNemar' ctable.txt &&
        [ "$(lines cmp/a/results.jsonl)" = 10 ] && [ "$(lines cmp/b/results.jsonl)" = 10 ] &&
        grep -q '"paired.mcnemar_p"' c.json && pass || fail "compare output: $(cat ctable.txt)"
else
    fail "compare exited $?"
fi
expect 2 "give two --route" -- "$S" compare cfg.yaml --route triage --data data.jsonl

echo "$passes passed, $fails failed"
[ "$fails" -eq 0 ]
