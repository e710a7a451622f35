#!/usr/bin/env bash
# cascade-story.sh - the whole sluice story on one labelled data set:
# train a small and a large task model, serve the large one behind a second
# `sluice serve`, put both in a cascade route, evaluate small-only,
# large-only and the hybrid, calibrate the threshold with a guarantee, check
# the goals, and answer a few requests through the live router.
#
#   bash scripts/cascade-story.sh --data DIR [options]
#
# DIR holds train.jsonl, calibration.jsonl and test.jsonl (one JSON object a
# line with the fields input and label), and train.txt (the training texts,
# blank-line separated; made from train.jsonl when absent). scripts/demo.sh
# runs it on SpamAssassin (scripts/spam-data.sh), tests/cli/cascade_banking77.sh
# on Banking77. docs/quickstart.md walks through what it does and prints.
#
# The models (docs/training.md): both tiers start from stories260K (a
# 260K-parameter llama, converted from its llama2.c files).
#   small  an MLP head on stories260K's embeddings (sluice train head)
#   large  stories260K trained further on train.txt (sluice train lm), and
#          an MLP head on that model's embeddings; served by a second sluice
#          on 127.0.0.1 and called as an OpenAI-compatible backend
#          (task_api: sluice), priced as a hosted model per token.
# Trained files are kept in WORK/models with a stamp of their inputs: a second
# run with the same data, base model and options trains nothing.
#
# Exit status: 0 every goal met; 3 a goal was missed (the lines under
# "goals" say which); 1 a step failed; 2 bad usage; 77 stories260K not
# found (../shared).
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)

usage() {
    cat <<'EOF'
usage: bash scripts/cascade-story.sh --data DIR [options]
  --data DIR          train.jsonl, calibration.jsonl, test.jsonl (input, label) [+ train.txt]
  --task NAME         the classify task's name (default: DIR's base name)
  --work DIR          models, configs, results, report (default build/cascade/NAME)
  --sluice BIN        the sluice binary (default build/sluice)
  --base DIR          stories260K's llama2.c files (default ../shared/assets/models/stories260K)
  --ctx N             tokens embedded per text (default 256)
  --small-hidden N    MLP width of the small head (default 256)
  --large-hidden N    MLP width of the large head (default 64)
  --lm-steps N        steps of continued training of the large model (default 300)
  --lm-seq N          tokens per training row (default 128)
  --lm-batch N        rows per step (default 16)
  --head-epochs N     at most, for both heads (default 100; early stopping after 10)
  --ensemble K        each tier's head is an ensemble of K heads (sluice train head
                      --ensemble; default 1)
  --target-gap X      sluice calibrate: certify the hybrid within X points of large
                      (default 3; the guarantee's bound, wider than the measured gap)
  --max-cost-share F  sluice calibrate instead: the best quality whose cost stays under
                      F x large's cost per 1,000 on the calibration split (certified)
  --delta D           the guarantee's failure probability (default 0.1)
  --goal-gap X        goal: hybrid accuracy within X points of large on test (default 1)
  --goal-cost F       goal: hybrid cost at most F of large's (default 0.30)
  --goal-cheaper R    goal: small at least R times cheaper per request (default 20)
  --threads N         engine threads of each process (default 2)
  --concurrency N     requests in flight during evaluation (default 2)
  --test-limit N      evaluate only the first N test examples (default all)
  --no-live           skip the live requests through `sluice serve`
EOF
}

DATA="" TASK="" WORK="" S="$ROOT/build/sluice" BASE="$ROOT/../shared/assets/models/stories260K"
CTX=256 SMALL_HIDDEN=256 LARGE_HIDDEN=64 LM_STEPS=300 LM_SEQ=128 LM_BATCH=16 HEAD_EPOCHS=100 ENSEMBLE=1
TARGET_GAP=3 COST_SHARE="" DELTA=0.1 GOAL_GAP=1 GOAL_COST=0.30 GOAL_CHEAPER=20 THREADS=2 CONC=2 TEST_LIMIT=""
LIVE=1
while [ $# -gt 0 ]; do
    case $1 in
    --data) DATA=$2; shift ;;
    --task) TASK=$2; shift ;;
    --work) WORK=$2; shift ;;
    --sluice) S=$2; shift ;;
    --base) BASE=$2; shift ;;
    --ctx) CTX=$2; shift ;;
    --small-hidden) SMALL_HIDDEN=$2; shift ;;
    --large-hidden) LARGE_HIDDEN=$2; shift ;;
    --lm-steps) LM_STEPS=$2; shift ;;
    --lm-seq) LM_SEQ=$2; shift ;;
    --lm-batch) LM_BATCH=$2; shift ;;
    --head-epochs) HEAD_EPOCHS=$2; shift ;;
    --ensemble) ENSEMBLE=$2; shift ;;
    --target-gap) TARGET_GAP=$2; shift ;;
    --max-cost-share) COST_SHARE=$2; shift ;;
    --delta) DELTA=$2; shift ;;
    --goal-gap) GOAL_GAP=$2; shift ;;
    --goal-cost) GOAL_COST=$2; shift ;;
    --goal-cheaper) GOAL_CHEAPER=$2; shift ;;
    --threads) THREADS=$2; shift ;;
    --concurrency) CONC=$2; shift ;;
    --test-limit) TEST_LIMIT=$2; shift ;;
    --no-live) LIVE=0 ;;
    -h | --help) usage; exit 0 ;;
    *) echo "cascade-story: unknown option '$1'" >&2; usage >&2; exit 2 ;;
    esac
    [ $# -gt 0 ] && shift
done
[ -n "$DATA" ] || { echo "cascade-story: --data DIR is required" >&2; usage >&2; exit 2; }
for f in train.jsonl calibration.jsonl test.jsonl; do
    [ -s "$DATA/$f" ] || { echo "cascade-story: $DATA/$f is missing or empty" >&2; exit 1; }
done
[ -x "$S" ] || { echo "cascade-story: no sluice binary at $S (build it, or --sluice BIN)" >&2; exit 1; }
if [ ! -f "$BASE/stories260K.bin" ] || [ ! -f "$BASE/tok512.bin" ]; then
    echo "cascade-story: stories260K not found in $BASE (it comes with ../shared/assets); skipping" >&2
    exit 77
fi
for tool in node curl sha256sum; do
    command -v $tool >/dev/null || { echo "cascade-story: needs $tool (scripts/install-deps.sh)" >&2; exit 1; }
done
DATA=$(cd "$DATA" && pwd)
S=$(cd "$(dirname "$S")" && pwd)/$(basename "$S")
TASK=${TASK:-$(basename "$DATA")}
case $TASK in *[!A-Za-z0-9_-]* | "") echo "cascade-story: --task '$TASK': use letters, digits, _ and -" >&2; exit 2 ;; esac
WORK=${WORK:-$ROOT/build/cascade/$TASK}
mkdir -p "$WORK/models" "$WORK/cache"
WORK=$(cd "$WORK" && pwd)
M=$WORK/models
T_START=$(date +%s)

step() { printf '\n== %s\n' "$*"; }
die() { echo "cascade-story: $*" >&2; exit 1; }
secs() { echo $(($(date +%s) - $1)); }

# ---- servers: started here, stopped on every way out ---------------------
PIDS=()
cleanup() {
    local p
    for p in "${PIDS[@]}"; do
        kill "$p" 2>/dev/null || true
    done
    for p in "${PIDS[@]}"; do
        wait "$p" 2>/dev/null || true
    done
    PIDS=()
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# start_server NAME CONFIG: runs `sluice serve CONFIG` (port 0: a free one),
# waits until /health answers, sets PORT. Its output goes to WORK/NAME.log.
start_server() {
    local name=$1 cfg=$2 log=$WORK/$1.log i
    : > "$log"
    "$S" serve "$cfg" > "$log" 2>&1 &
    PIDS+=($!)
    local pid=$!
    PORT=""
    for i in $(seq 1 600); do
        kill -0 "$pid" 2>/dev/null || { cat "$log" >&2; die "the $name server exited"; }
        if [ -z "$PORT" ]; then
            PORT=$(sed -n 's|.*listening on http://127\.0\.0\.1:\([0-9][0-9]*\).*|\1|p' "$log" | head -1)
        fi
        if [ -n "$PORT" ] && curl -sf "http://127.0.0.1:$PORT/health" >/dev/null 2>&1; then
            return 0
        fi
        sleep 0.1
    done
    cat "$log" >&2
    die "the $name server did not answer /health within 60 s"
}

# ---- training, cached by a stamp of the inputs ----------------------------
# fresh OUT FILE... -- WORD...: true when OUT exists and its stamp says it
# was made from files with the same contents and the same other inputs
# (options); stamp OUT FILE... -- WORD... writes that stamp.
key_of() {
    while [ $# -gt 0 ] && [ "$1" != -- ]; do
        sha256sum < "$1" | cut -c1-64
        shift
    done
    printf '%s\n' "$@"
}
fresh() {
    local out=$1
    shift
    [ -s "$out" ] && [ -f "$out.stamp" ] && [ "$(cat "$out.stamp")" = "$(key_of "$@" | sha256sum)" ]
}
stamp() {
    local out=$1
    shift
    key_of "$@" | sha256sum > "$out.stamp"
}

# the texts alone for `sluice train lm`, when the data set has no train.txt
TXT=$DATA/train.txt
if [ ! -s "$TXT" ]; then
    TXT=$WORK/train.txt
    node -e '
const fs = require("fs");
const rows = fs.readFileSync(process.argv[1], "utf8").split("\n").filter(l => l.trim());
fs.writeFileSync(process.argv[2], rows.map(l => JSON.parse(l).input + "\n\n").join(""));
' "$DATA/train.jsonl" "$TXT"
fi

# the task's labels: the sorted distinct labels of train.jsonl, as YAML
LABELS=$(node -e '
const fs = require("fs");
const read = f => fs.readFileSync(f, "utf8").split("\n").filter(l => l.trim()).map(l => JSON.parse(l));
const train = read(process.argv[1]), seen = new Set(train.map(r => String(r.label)));
for (const f of process.argv.slice(2))
  for (const r of read(f))
    if (!seen.has(String(r.label))) { console.error(`${f}: label "${r.label}" is not in train.jsonl`); process.exit(1); }
console.log("[" + [...seen].sort().map(l => JSON.stringify(l)).join(", ") + "]");
' "$DATA/train.jsonl" "$DATA/calibration.jsonl" "$DATA/test.jsonl") || die "bad labels in $DATA"
N_LABELS=$(node -e 'console.log(JSON.parse(process.argv[1]).length)' "$LABELS")
count() { grep -c . "$1"; }
echo "cascade-story: task '$TASK', $N_LABELS labels; train $(count "$DATA/train.jsonl"), calibration $(count "$DATA/calibration.jsonl"), test $(count "$DATA/test.jsonl") examples; work dir $WORK"

step "stories260K (llama2.c) -> GGUF"
if fresh "$M/base.gguf" "$BASE/stories260K.bin" "$BASE/tok512.bin" --; then
    echo "up to date: $M/base.gguf"
else
    "$S" convert --llama2c "$BASE/stories260K.bin" --tokenizer "$BASE/tok512.bin" -o "$M/base.gguf"
    stamp "$M/base.gguf" "$BASE/stories260K.bin" "$BASE/tok512.bin" --
fi

HEAD_OPTS=(--epochs "$HEAD_EPOCHS" --patience 10 --ensemble "$ENSEMBLE" -c "$CTX" -t "$THREADS" --cache-dir "$WORK/cache")

ENS_TXT=""
[ "$ENSEMBLE" -gt 1 ] && ENS_TXT=" (an ensemble of $ENSEMBLE)"
step "small tier: an MLP head ($SMALL_HIDDEN)$ENS_TXT on stories260K's embeddings"
t=$(date +%s)
if fresh "$M/small-head.gguf" "$M/base.gguf" "$DATA/train.jsonl" -- "${HEAD_OPTS[@]}" --hidden "$SMALL_HIDDEN"; then
    echo "up to date: $M/small-head.gguf"
else
    "$S" train head -m "$M/base.gguf" --data "$DATA/train.jsonl" -o "$M/small-head.gguf" \
        --hidden "$SMALL_HIDDEN" "${HEAD_OPTS[@]}"
    stamp "$M/small-head.gguf" "$M/base.gguf" "$DATA/train.jsonl" -- "${HEAD_OPTS[@]}" --hidden "$SMALL_HIDDEN"
    echo "small tier trained in $(secs $t) s"
fi

step "large tier: stories260K trained further on the training texts ($LM_STEPS steps of $LM_BATCH x $LM_SEQ tokens)"
t=$(date +%s)
LM_OPTS=(--seq "$LM_SEQ" --batch "$LM_BATCH" --steps "$LM_STEPS" --lr 3e-3 --warmup 20 --eval-every 100)
if fresh "$M/large-lm.gguf" "$M/base.gguf" "$TXT" -- "${LM_OPTS[@]}"; then
    echo "up to date: $M/large-lm.gguf"
else
    "$S" train lm -m "$M/base.gguf" --data "$TXT" -o "$M/large-lm.gguf" "${LM_OPTS[@]}" -t "$THREADS"
    stamp "$M/large-lm.gguf" "$M/base.gguf" "$TXT" -- "${LM_OPTS[@]}"
    echo "language model trained in $(secs $t) s"
fi
step "large tier: an MLP head ($LARGE_HIDDEN)$ENS_TXT on that model's embeddings"
t=$(date +%s)
if fresh "$M/large-head.gguf" "$M/large-lm.gguf" "$DATA/train.jsonl" -- "${HEAD_OPTS[@]}" --hidden "$LARGE_HIDDEN"; then
    echo "up to date: $M/large-head.gguf"
else
    "$S" train head -m "$M/large-lm.gguf" --data "$DATA/train.jsonl" -o "$M/large-head.gguf" \
        --hidden "$LARGE_HIDDEN" "${HEAD_OPTS[@]}"
    stamp "$M/large-head.gguf" "$M/large-lm.gguf" "$DATA/train.jsonl" -- "${HEAD_OPTS[@]}" --hidden "$LARGE_HIDDEN"
    echo "large head trained in $(secs $t) s"
fi
T_TRAINED=$(date +%s)

step "the large model behind its own sluice server (stands for a hosted model)"
cat > "$WORK/large.yaml" <<EOF
# The "large" model: a second sluice server on this machine. The cascade
# calls it as an OpenAI-compatible backend (POST /v1/classify).
server: {host: 127.0.0.1, port: 0}
models:
  large: {path: $M/large-lm.gguf, threads: $THREADS, slots: 4, chat_template: chatml}
tasks:
  $TASK: {kind: classify, model: large, labels: $LABELS, head: $M/large-head.gguf}
EOF
start_server large "$WORK/large.yaml"
LARGE_PORT=$PORT
echo "large: http://127.0.0.1:$LARGE_PORT/v1 (log: $WORK/large.log)"

CFG=$WORK/cascade.yaml
rm -f "$WORK/requests.db" "$WORK/requests.db-wal" "$WORK/requests.db-shm"
cat > "$CFG" <<EOF
# sluice router config written by scripts/cascade-story.sh: route 'cascade'
# asks the small local model first and escalates to the large one when the
# small one's confidence is under the threshold (set by sluice calibrate).
server: {host: 127.0.0.1, port: 0}
models:
  small: {path: $M/base.gguf, threads: $THREADS, slots: 4, chat_template: chatml}
tasks:
  $TASK: {kind: classify, model: small, labels: $LABELS, head: $M/small-head.gguf}
backends:
  small:
    kind: local
    model: small
    infra_per_hour: 0.40          # this machine, per hour of engine time
  large:
    kind: openai
    base_url: http://127.0.0.1:$LARGE_PORT/v1
    model: large
    task_api: sluice              # POST /v1/classify on the other sluice
    remote: false                 # on this machine (a hosted API would be remote)
    input_per_mtok: 2.5           # priced as a hosted model, per million tokens
    output_per_mtok: 10
    timeout_ms: 30000
routes:
  cascade:
    policy: cascade
    tiers: [small, large]
    task: $TASK
    threshold: 1.0
log:
  db: $WORK/requests.db
  inputs: hash
costs:
  currency: USD
  large_input_per_mtok: 2.5
  large_output_per_mtok: 10
EOF
echo "router config: $CFG"

LIMIT=()
[ -n "$TEST_LIMIT" ] && LIMIT=(--limit "$TEST_LIMIT")
EVAL_OPTS=(--route cascade --concurrency "$CONC" --failures 0)

step "evaluate on the calibration split: each tier alone (the evidence for the threshold)"
t=$(date +%s)
"$S" eval "$CFG" "${EVAL_OPTS[@]}" --data "$DATA/calibration.jsonl" --out "$WORK/eval-calibration" \
    --json "$WORK/calibration.json" > "$WORK/calibration.txt" ||
    { cat "$WORK/calibration.txt"; die "sluice eval on the calibration split failed"; }
sed -n '/^ *small *large *route/,/^mean tokens out/p' "$WORK/calibration.txt"
echo "($(secs $t) s)"

if [ -n "$COST_SHARE" ]; then
    MAX_COST=$(node -e '
const j = JSON.parse(require("fs").readFileSync(process.argv[1], "utf8"));
const l = j.targets.find(t => t.name === "large");
console.log((+process.argv[2] * l.metrics.cost_per_1k).toPrecision(4));' "$WORK/calibration.json" "$COST_SHARE")
    CAL_TARGET=(--max-cost "$MAX_COST")
    step "calibrate: the best quality under $MAX_COST per 1,000 ($COST_SHARE x large's cost), with probability >= 1-$DELTA"
else
    CAL_TARGET=(--target-gap "$TARGET_GAP")
    step "calibrate: the lowest threshold that keeps the hybrid within $TARGET_GAP points of large (probability >= 1-$DELTA)"
fi
if ! "$S" calibrate "$CFG" --route cascade --results "$WORK/eval-calibration/results.jsonl" \
    "${CAL_TARGET[@]}" --delta "$DELTA" --calib-frac 0.95 --json "$WORK/calibrate.json" \
    --write > "$WORK/calibrate.txt" 2>&1; then
    cat "$WORK/calibrate.txt"
    die "sluice calibrate could not certify a threshold (${CAL_TARGET[*]}) on $(count "$DATA/calibration.jsonl") calibration examples"
fi
grep -E '^(split|target|candidates|chosen)' "$WORK/calibrate.txt" || cat "$WORK/calibrate.txt"
THRESHOLD=$(sed -n 's/^    threshold: \([0-9.e+-]*\).*/\1/p' "$CFG" | head -1)
[ -n "$THRESHOLD" ] || die "no threshold in $CFG after sluice calibrate --write"
echo "written to $CFG: routes.cascade.threshold $THRESHOLD (and the evidence under calibration:)"

step "evaluate on the test split: small only, large only, hybrid"
t=$(date +%s)
"$S" eval "$CFG" "${EVAL_OPTS[@]}" --data "$DATA/test.jsonl" --out "$WORK/eval-test" "${LIMIT[@]}" \
    --json "$WORK/report.json" --html "$WORK/report.html" > "$WORK/test.txt" ||
    { cat "$WORK/test.txt"; die "sluice eval on the test split failed"; }
echo "($(secs $t) s; sluice's full report: $WORK/test.txt)"
T_EVALUATED=$(date +%s)

# The table and the goals, from the report's JSON.
set +e
node - "$WORK/report.json" "$WORK/summary.json" "$THRESHOLD" "$GOAL_GAP" "$GOAL_COST" "$GOAL_CHEAPER" <<'EOF'
'use strict';
const fs = require('fs');
const [file, out, threshold, goalGap, goalCost, goalCheaper] = process.argv.slice(2);
const j = JSON.parse(fs.readFileSync(file, 'utf8'));
const t = Object.fromEntries(j.targets.map(x => [x.name, x.metrics]));
const small = t.small, large = t.large, hybrid = t.route;
if (!small || !large || !hybrid) { console.error('report has no small/large/route targets'); process.exit(1); }
const rows = [['small only', small], ['large only', large], [`hybrid @ ${(+threshold).toFixed(3)}`, hybrid]];
const pad = (s, n) => String(s).padStart(n);
console.log(`\n${'test split, ' + hybrid.n + ' examples'}`.padEnd(26) + pad('accuracy', 10) + pad('$ per 1,000', 13) +
            pad('vs large', 10) + pad('p50 ms', 9) + pad('escalated', 11));
for (const [name, m] of rows)
  console.log(name.padEnd(26) + pad(m.accuracy.toFixed(4), 10) + pad(m.cost_per_1k.toFixed(4), 13) +
              pad((100 * m.cost_per_1k / large.cost_per_1k).toFixed(1) + '%', 10) +
              pad(m.p50_ms.toFixed(1), 9) + pad((100 * m.escalation_rate).toFixed(1) + '%', 11));
const gap = 100 * (large.accuracy - hybrid.accuracy);
const costShare = hybrid.cost_per_1k / large.cost_per_1k;
const cheaper = large.cost_per_1k / small.cost_per_1k;
const goals = [
  [`hybrid within ${goalGap} point(s) of large's accuracy`, gap <= +goalGap + 1e-9,
   `${gap.toFixed(2)} points below (${hybrid.accuracy.toFixed(4)} vs ${large.accuracy.toFixed(4)})`],
  [`hybrid at most ${(100 * goalCost).toFixed(0)}% of large's cost`, costShare <= +goalCost,
   `${(100 * costShare).toFixed(1)}% (${hybrid.cost_per_1k.toFixed(4)} vs ${large.cost_per_1k.toFixed(4)} per 1,000)`],
  [`small at least ${goalCheaper}x cheaper per request than large`, cheaper >= +goalCheaper,
   `${cheaper.toFixed(0)}x`],
];
console.log('\ngoals');
for (const [what, ok, got] of goals) console.log(`  ${ok ? 'met   ' : 'MISSED'}  ${what}: ${got}`);
fs.writeFileSync(out, JSON.stringify({
  n: hybrid.n, threshold: +threshold,
  small: {accuracy: small.accuracy, cost_per_1k: small.cost_per_1k, p50_ms: small.p50_ms},
  large: {accuracy: large.accuracy, cost_per_1k: large.cost_per_1k, p50_ms: large.p50_ms},
  hybrid: {accuracy: hybrid.accuracy, cost_per_1k: hybrid.cost_per_1k, p50_ms: hybrid.p50_ms,
           escalation_rate: hybrid.escalation_rate},
  gap_points: gap, cost_share: costShare, small_cheaper: cheaper,
  goals: goals.map(([what, ok, got]) => ({goal: what, met: ok, measured: got})),
}, null, 1) + '\n');
process.exit(goals.every(g => g[1]) ? 0 : 3);
EOF
GOALS_RC=$?
set -e
[ $GOALS_RC -eq 0 ] || [ $GOALS_RC -eq 3 ] || die "could not read $WORK/report.json"
echo
echo "HTML report (frontier, reliability, confusion, latency): $WORK/report.html"

if [ "$LIVE" = 1 ]; then
    step "the route live: sluice serve $CFG"
    start_server router "$CFG"
    ROUTER_PORT=$PORT
    echo "router: http://127.0.0.1:$ROUTER_PORT/v1, model \"cascade\""
    # two test inputs: one the small tier kept, one it escalated in the evaluation
    TASK=$TASK node - "$WORK/eval-test/results.jsonl" "$DATA/test.jsonl" "$WORK/live" <<'EOF' || die "cannot pick live examples"
'use strict';
const fs = require('fs');
const [res, data, out] = process.argv.slice(2);
const lines = f => fs.readFileSync(f, 'utf8').split('\n').filter(l => l.trim()).map(l => JSON.parse(l));
const route = lines(res).filter(r => r.target === 'route' && r.status === 200);
const rows = lines(data), byId = new Map(rows.map((r, i) => [String(r.id ?? i + 1), r]));
const pick = [route.find(r => r.decision === 'local' && r.correct), route.find(r => r.decision === 'escalated')];
let n = 0;
for (const p of pick.filter(Boolean)) {
  const ex = byId.get(p.id);
  if (!ex) continue;
  fs.writeFileSync(`${out}-${n}.json`, JSON.stringify({model: 'cascade', task: process.env.TASK, input: ex.input}));
  fs.writeFileSync(`${out}-${n}.label`, String(ex.label));
  n++;
}
EOF
    for f in "$WORK"/live-*.json; do
        [ -f "$f" ] || continue
        printf '\n$ curl -s http://127.0.0.1:%s/v1/classify -d %s\n' "$ROUTER_PORT" \
            "'$(node -e 'const j=JSON.parse(require("fs").readFileSync(process.argv[1],"utf8")); const s=j.input.replace(/\s+/g," "); j.input=s.length>70?s.slice(0,70)+"...":s; console.log(JSON.stringify(j))' "$f")'"
        curl -s --max-time 60 "http://127.0.0.1:$ROUTER_PORT/v1/classify" \
            -H 'Content-Type: application/json' --data-binary "@$f" > "$WORK/live.out" ||
            die "the router did not answer"
        node - "$WORK/live.out" "$(cat "${f%.json}.label")" <<'EOF' || die "unexpected answer from the router: $(head -c 400 "$WORK/live.out")"
'use strict';
const j = JSON.parse(require('fs').readFileSync(process.argv[2], 'utf8'));
const d = j.data && j.data[0];
if (!d || !j.sluice) throw new Error('no data[0] or sluice field');
const s = j.sluice;
console.log(`label ${JSON.stringify(d.label)} (true: ${JSON.stringify(process.argv[3])}), confidence ${d.confidence.toFixed(3)}`);
console.log('"sluice": ' + JSON.stringify({decision: s.decision, reason: s.reason, backend: s.backend,
  escalated: s.escalated, cost: s.cost, latency_ms: +s.latency_ms.toFixed(1),
  stages: (s.stages || []).map(st => ({backend: st.backend, accepted: st.accepted,
    confidence: st.confidence == null ? null : +st.confidence.toFixed(3), cost: st.cost,
    latency_ms: st.latency_ms == null ? null : +st.latency_ms.toFixed(1)}))}, null, 1));
EOF
    done
    echo
    echo "\$ sluice costs --db $WORK/requests.db --config $CFG --by route"
    "$S" costs --db "$WORK/requests.db" --config "$CFG" --by route | sed -n '1,4p' || true
    cleanup
fi

T_END=$(date +%s)
printf '\ntime: %d s training (0 when cached), %d s evaluating, %d s in all\n' \
    $((T_TRAINED - T_START)) $((T_EVALUATED - T_TRAINED)) $((T_END - T_START))
if [ $GOALS_RC -ne 0 ]; then
    echo "cascade-story: goals missed (see 'goals' above; numbers in $WORK/summary.json)" >&2
    exit 3
fi
echo "cascade-story: every goal met (numbers in $WORK/summary.json)"
