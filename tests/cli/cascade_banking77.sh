#!/usr/bin/env bash
# The cascade story (scripts/cascade-story.sh) on Banking77, 77 intents:
# a small tier (an ensemble of 5 MLP heads on stories260K) and a large one
# (stories260K trained further on the questions, + 5 heads) behind a second
# `sluice serve`; the
# threshold calibrated on a calibration split; small-only, large-only and the
# hybrid measured on Banking77's test split (3,080 questions). Asserts the
# goals of issue 8: the hybrid within 1 point of the large tier's accuracy at
# no more than 30% of its cost, the small tier at least 20x cheaper; and
# that the report, the calibrated config and the live router answer exist.
# Trained models are kept in TMPDIR/cascade-banking77 (a second run skips
# training). Under a sanitizer build it runs a smoke-sized version (400
# training questions, 20 LM steps) that checks the pipeline, not the goals.
# Usage: cascade_banking77.sh SLUICE ASSETS TMPDIR
set -u
S=$1 A=$2
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
B77=$A/datasets/banking77
if [ ! -f "$B77/train.csv" ] || [ ! -f "$A/models/stories260K/stories260K.bin" ]; then
    echo "skip: needs ../shared/assets (datasets/banking77 and models/stories260K)"
    exit 77
fi
command -v node >/dev/null || { echo "skip: needs node (scripts/install-deps.sh)"; exit 77; }
SMOKE=0
grep -qa __asan_init "$S" && SMOKE=1
W=$3/cascade-banking77
[ $SMOKE = 1 ] && W=$3/cascade-banking77-smoke
mkdir -p "$W/data"

# train.csv -> train (8,003) + calibration (2,000, chosen by the SHA-256 of
# the row's id: the same on every machine); test.csv -> test (3,080).
N_CAL=2000 N_TRAIN=0 N_TEST=0
[ $SMOKE = 1 ] && N_CAL=200 N_TRAIN=400 N_TEST=200
node - "$B77" "$W/data" $N_CAL $N_TRAIN $N_TEST <<'JS' || { echo "FAIL: making the splits"; exit 1; }
'use strict';
const fs = require('fs'), path = require('path'), crypto = require('crypto');
const [src, out, nCal, nTrain, nTest] = process.argv.slice(2).map((v, i) => (i < 2 ? v : +v));
function csv(text) {   /* RFC 4180: quoted fields, "" inside quotes */
  const rows = [];
  let row = [], f = '', q = false;
  for (let i = 0; i < text.length; i++) {
    const c = text[i];
    if (q) {
      if (c !== '"') f += c;
      else if (text[i + 1] === '"') { f += '"'; i++; } else q = false;
    } else if (c === '"') q = true;
    else if (c === ',') { row.push(f); f = ''; }
    else if (c === '\n' || c === '\r') {
      if (c === '\r' && text[i + 1] === '\n') i++;
      row.push(f); rows.push(row); row = []; f = '';
    } else f += c;
  }
  if (f !== '' || row.length) { row.push(f); rows.push(row); }
  return rows;
}
function load(file, prefix) {
  const rows = csv(fs.readFileSync(file, 'utf8')), head = rows.shift();
  const ti = head.indexOf('text'), li = head.indexOf('category');
  if (ti < 0 || li < 0) throw new Error(`${file}: no text,category header`);
  return rows.filter(r => r.length === head.length)
             .map((r, i) => ({id: `${prefix}-${i + 1}`, input: r[ti], label: r[li]}));
}
const sha = s => crypto.createHash('sha256').update(s).digest('hex');
const all = load(path.join(src, 'train.csv'), 'train');
const byHash = [...all].sort((a, b) => (sha(a.id) < sha(b.id) ? -1 : 1));
const calIds = new Set(byHash.slice(0, nCal).map(r => r.id));
let train = all.filter(r => !calIds.has(r.id)), cal = all.filter(r => calIds.has(r.id));
let test = load(path.join(src, 'test.csv'), 'test');
const every = (rs, n) => (n && n < rs.length ? rs.filter((_, i) => i % Math.ceil(rs.length / n) === 0) : rs);
train = every(train, nTrain); test = every(test, nTest);
const seen = new Set(train.map(r => r.label));
cal = cal.filter(r => seen.has(r.label)); test = test.filter(r => seen.has(r.label));
const put = (name, rs) => fs.writeFileSync(path.join(out, name), rs.map(r => JSON.stringify(r)).join('\n') + '\n');
put('train.jsonl', train); put('calibration.jsonl', cal); put('test.jsonl', test);
console.log(`banking77: train ${train.length}, calibration ${cal.length}, test ${test.length}, ${seen.size} intents`);
JS

# Both tiers' heads are ensembles of 5 (sluice train head --ensemble 5):
# one head's accuracy depends on its seed by 2-4 points here, and the
# ensemble's mean probability is a better-ranked confidence, so the
# cascade keeps more requests local at the same quality (docs/quickstart.md,
# "Banking77"; with single heads the hybrid cost 35% of large's). The
# calibration target stays 12 points: the guarantee bounds the share of
# kept requests that small gets wrong and large right, which is ~10% at
# 80% coverage, while the measured gap on test is under 1 point.
OPTS=(--lm-seq 64 --lm-steps 150 --large-hidden 256 --ensemble 5 --target-gap 12)
[ $SMOKE = 1 ] && OPTS=(--lm-seq 64 --lm-steps 20 --large-hidden 64 --head-epochs 5 --ensemble 2 --target-gap 30)
t0=$(date +%s)
bash "$ROOT/scripts/cascade-story.sh" --data "$W/data" --task intent --sluice "$S" \
    --base "$A/models/stories260K" --work "$W/run" "${OPTS[@]}" > "$W/story.log" 2>&1
rc=$?
echo "cascade-story: exit $rc in $(($(date +%s) - t0)) s (log: $W/story.log)"
sed -n '/^test split/,/^  .*cheaper/p' "$W/story.log"
fails=0 passes=0
fail() { echo "FAIL: $*"; fails=$((fails + 1)); }
pass() { passes=$((passes + 1)); }

if [ $SMOKE = 1 ]; then
    # smoke: every step ran; the goals are not meaningful at this size
    [ $rc -eq 0 ] || [ $rc -eq 3 ] && pass || { tail -20 "$W/story.log"; fail "pipeline exit $rc"; }
else
    [ $rc -eq 0 ] && pass || { tail -30 "$W/story.log"; fail "pipeline exit $rc (3 = a goal missed)"; }
    node -e '
const s = JSON.parse(require("fs").readFileSync(process.argv[1], "utf8"));
const bad = s.goals.filter(g => !g.met).map(g => g.goal + ": " + g.measured);
if (s.n < 3000) bad.push("only " + s.n + " test examples");
if (bad.length) { console.log(bad.join("\n")); process.exit(1); }' "$W/run/summary.json" && pass ||
        fail "goals in $W/run/summary.json"
fi
R=$W/run
# (77 labels: the report leaves the confusion chart out)
for id in chart-frontier chart-reliability chart-latency targets; do
    grep -q "id=\"$id\"" "$R/report.html" 2>/dev/null && pass || fail "report.html has no #$id"
done
grep -qE '^    threshold: 0\.[0-9]+' "$R/cascade.yaml" && grep -q 'written by sluice calibrate' "$R/cascade.yaml" &&
    pass || fail "cascade.yaml has no calibrated threshold"
# the live router answered with its `sluice` field, one request kept local at least
grep -q '"decision": "local"' "$W/story.log" && pass || fail "no live answer kept on the small tier"
grep -q '"backend": "small"' "$W/story.log" && pass || fail "no live answer from the small tier"
# servers stopped on the way out
pgrep -f "serve $R/" >/dev/null && fail "a sluice serve of the story is still running" || pass
# a second run trains nothing
if [ $SMOKE = 1 ]; then
    bash "$ROOT/scripts/cascade-story.sh" --data "$W/data" --task intent --sluice "$S" \
        --base "$A/models/stories260K" --work "$W/run" "${OPTS[@]}" --no-live > "$W/story2.log" 2>&1
    [ "$(grep -c '^up to date' "$W/story2.log")" = 4 ] && pass || fail "second run retrained: $(grep -E '^(up to date|wrote)' "$W/story2.log")"
fi
echo "$passes passed, $fails failed"
[ "$fails" -eq 0 ]
