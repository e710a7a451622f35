// router.test.mjs - routes end to end (issue 6): a router `sluice serve`
// whose small tier is a local model and whose large tier is a second, real
// `sluice serve` on 127.0.0.1 with another model; cascade, rules and
// predict routes; fallbacks when the large backend is down, slow, failing
// or talking nonsense (sluice-fake-upstream, tests/cases/router/); privacy
// (what reached the large backend, byte for byte); streaming; feedback;
// and after every scenario, the request log (SQLite) has every request.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { writeFileSync, readFileSync } from 'node:fs';
import { join, dirname, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { execFileSync } from 'node:child_process';
import OpenAI from 'openai';
import {
  BIN, workdir, tinyModel, synthModel, startServer, startFakeUpstream, closedPort, sqlite, sha256,
} from './helpers.mjs';

const here = dirname(fileURLToPath(import.meta.url));
const CASES = resolve(here, '../cases/router');
const KEY = 'sk-app', VIP = 'sk-vip';

let dir, large, router, client, vip, db, predictFile = null;
const fakes = {};
const records = {};

// Examples for `sluice train-router --replay`: the small tier is wrong on
// questions about integrals and right on greetings.
function replayCsv(path) {
  const rows = ['prompt,small,large'];
  for (let i = 0; i < 40; i++) {
    rows.push(`"solve the hard integral number ${i} of x squared",False,True`);
    rows.push(`"say hello to my friend number ${i}",True,True`);
  }
  writeFileSync(path, rows.join('\n') + '\n');
}

before(async () => {
  dir = workdir();
  db = join(dir, 'log.db');
  const small = tinyModel(dir);
  const big = synthModel(dir, 'big', 7);
  // the large model: a second sluice serve, with the task the routes use
  const lcfg = join(dir, 'large.yaml');
  writeFileSync(lcfg, `
server:
  port: 0
models:
  big:
    path: ${big}
    ctx: 1024
    slots: 2
    threads: 1
tasks:
  triage:
    kind: classify
    model: big
    labels: [billing, bug, shipping]
`);
  large = await startServer([lcfg]);
  for (const c of ['slow', 'http500', 'malformed', 'placeholder']) {
    records[c] = join(dir, `${c}.jsonl`);
    writeFileSync(records[c], '');
    fakes[c] = await startFakeUpstream(join(CASES, `${c}.case`), records[c]);
  }
  const down = await closedPort();
  try {
    const csv = join(dir, 'replay.csv');
    replayCsv(csv);
    predictFile = join(dir, 'router.gguf');
    execFileSync(BIN, ['train-router', '--replay', csv, '--out', predictFile, '--hash-dim', '256',
      '--test-frac', '0.25'], { stdio: 'pipe' });
  } catch (e) {
    predictFile = null;
    console.log(`# predict route left out: sluice train-router failed: ${e.stderr || e.message}`);
  }
  const remote = (name, url, extra = '') => `
  ${name}:
    kind: openai
    model: big
    base_url: ${url}
    input_per_mtok: 3
    output_per_mtok: 15
    connect_timeout_ms: 500
    timeout_ms: 300
    max_retries: 0
    backoff_ms: 10${extra}`;
  const cfg = join(dir, 'router.yaml');
  writeFileSync(cfg, `
server:
  port: 0
models:
  tiny:
    path: ${small}
    ctx: 2048
    slots: 2
    threads: 1
api_keys:
  - name: app
    sha256: ${sha256(KEY)}
  - name: vip
    sha256: ${sha256(VIP)}
tasks:
  triage:
    kind: classify
    model: tiny
    labels: [billing, bug, shipping]
backends:
  small:
    kind: local
    model: tiny
    infra_per_hour: 0.5
${remote('large', `${large.url}/v1`, '\n    task_api: sluice\n    timeout_ms: 20000')}
${remote('down', `http://127.0.0.1:${down}/v1`)}
${remote('slow', fakes.slow.url)}
${remote('patient', fakes.slow.url, '\n    timeout_ms: 20000')}
${remote('err500', fakes.http500.url, '\n    max_retries: 1')}
${remote('garbage', fakes.malformed.url)}
${remote('leak', fakes.placeholder.url)}
routes:
  stay:
    tiers: [small, large]
    threshold: 0
    pii: allow
  up:
    tiers: [small, large]
    threshold: 1
    pii: allow
    task: triage
  pick:
    policy: rules
    tiers: [small, large]
    pii: allow
    rules:
      - match: {regex: "(?i)urgent"}
        to: large
      - match: {min_chars: 200}
        to: large
      - match: {metadata: {tier: premium}}
        to: large
      - match: {api_key: vip}
        to: large
    default: small
  fb-down:
    tiers: [small, down]
    threshold: 1
  fb-slow:
    tiers: [small, slow]
    threshold: 1
  gone:
    tiers: [small, patient]
    threshold: 1
    pii: allow
  fb-500:
    tiers: [small, err500]
    threshold: 1
  fb-bad:
    tiers: [small, garbage]
    threshold: 1
  broken:
    tiers: [down, garbage]
  private:
    tiers: [small, leak]
    threshold: 1
    pii: local-only
  masked:
    tiers: [small, leak]
    threshold: 1
    pii: redact
${predictFile ? `  guess:
    policy: predict
    tiers: [small, large]
    pii: allow
    predict:
      model: ${predictFile}
      threshold: 0.5` : ''}
log:
  db: ${db}
  inputs: store
`);
  router = await startServer([cfg]);
  client = new OpenAI({ apiKey: KEY, baseURL: `${router.url}/v1`, maxRetries: 0, timeout: 60000 });
  vip = new OpenAI({ apiKey: VIP, baseURL: `${router.url}/v1`, maxRetries: 0, timeout: 60000 });
});

after(async () => {
  const r = router ? await router.stop() : { code: 0 };
  if (large) await large.stop();
  for (const f of Object.values(fakes)) await f.stop();
  assert.equal(r.code, 0, `router server exit: ${JSON.stringify(r)}\n${router && router.stderr()}`);
});

const ask = (content) => ({ messages: [{ role: 'user', content }], max_tokens: 6, temperature: 0 });

// A chat completion with its headers (the openai client's raw response).
async function chat(c, model, content, extra = {}) {
  const { data, response } = await c.chat.completions.create({ model, ...ask(content), ...extra }).withResponse();
  return { r: data, h: response.headers };
}

async function post(path, body, key = KEY) {
  const res = await fetch(`${router.url}${path}`, {
    method: 'POST',
    headers: { 'content-type': 'application/json', authorization: `Bearer ${key}` },
    body: JSON.stringify(body),
  });
  return { status: res.status, h: res.headers, body: await res.json() };
}

// Requests the large server has answered on /v1/chat/completions and /v1/classify.
async function largeCount() {
  const t = await (await fetch(`${large.url}/metrics`)).text();
  let n = 0;
  for (const m of t.matchAll(/sluice_http_requests_total\{route="\/v1\/(chat\/completions|classify)",status="200"\} (\d+)/g)) n += Number(m[2]);
  return n;
}

// Every id is in the request log with the decision the response gave.
function checkLogged(items) {
  for (const { id, decision, route } of items) {
    const rows = sqlite(db, `select route, decision, status, backend, cost from requests where id = '${id}'`);
    assert.equal(rows.length, 1, `request ${id} is in the log`);
    assert.equal(rows[0].decision, decision, `${id}: logged decision`);
    if (route) assert.equal(rows[0].route, route);
  }
}

function checkSluice(s, { route, decision, backend, escalated }) {
  assert.equal(s.route, route);
  assert.equal(s.decision, decision, `decision (reason: ${s.reason})`);
  if (backend) assert.equal(s.backend, backend);
  if (escalated !== undefined) assert.equal(s.escalated, escalated);
  assert.ok(s.request_id);
  assert.ok(Array.isArray(s.stages) && s.stages.length >= 1);
  for (const st of s.stages) {
    for (const k of ['backend', 'called', 'accepted', 'status', 'confidence', 'threshold', 'latency_ms', 'cost', 'tokens_in', 'tokens_out', 'note'])
      assert.ok(k in st, `stage has ${k}`);
  }
  assert.equal(typeof s.pii.spans, 'number');
  assert.equal(typeof s.cost, 'number');
  assert.equal(typeof s.latency_ms, 'number');
}

test('cascade with threshold 0 keeps the small model\'s answer; the large server is not called', async () => {
  const before = await largeCount();
  const { r, h } = await chat(client, 'stay', 'Once upon a time');
  assert.equal(r.object, 'chat.completion');
  assert.equal(r.choices.length, 1);
  checkSluice(r.sluice, { route: 'stay', decision: 'local', backend: 'small', escalated: false });
  assert.equal(r.sluice.model, 'tiny');
  assert.equal(r.sluice.stages.length, 1);
  assert.ok(r.sluice.confidence > 0 && r.sluice.confidence <= 1, `confidence ${r.sluice.confidence}`);
  assert.ok(r.sluice.cost > 0, 'the local call has an infra cost');
  assert.equal(h.get('x-sluice-request-id'), r.sluice.request_id);
  assert.equal(h.get('x-sluice-route'), 'stay');
  assert.equal(h.get('x-sluice-backend'), 'small');
  assert.equal(h.get('x-sluice-decision'), 'local');
  assert.ok(Math.abs(Number(h.get('x-sluice-confidence')) - r.sluice.confidence) < 1e-3);
  assert.ok(Number(h.get('x-sluice-cost')) > 0);
  assert.ok(Number(h.get('x-sluice-latency-ms')) >= 0);
  assert.equal(await largeCount(), before);
  checkLogged([{ id: r.sluice.request_id, decision: 'local', route: 'stay' }]);
});

test('cascade with threshold 1 escalates to the large server, which answers', async () => {
  const before = await largeCount();
  const { r, h } = await chat(client, 'up', 'Once upon a time');
  checkSluice(r.sluice, { route: 'up', decision: 'escalated', backend: 'large', escalated: true });
  assert.equal(r.sluice.model, 'big');
  assert.equal(r.sluice.stages.length, 2);
  const [s0, s1] = r.sluice.stages;
  assert.equal(s0.backend, 'small');
  assert.equal(s0.accepted, false);
  assert.equal(s0.threshold, 1);
  assert.equal(s1.backend, 'large');
  assert.equal(s1.accepted, true);
  assert.ok(s1.cost > 0, 'API prices apply');
  assert.equal(h.get('x-sluice-backend'), 'large');
  assert.equal(h.get('x-sluice-decision'), 'escalated');
  assert.equal(await largeCount(), before + 1, 'the large server got the call');
  // the log has the request and one ledger entry per call
  checkLogged([{ id: r.sluice.request_id, decision: 'escalated', route: 'up' }]);
  const ledger = sqlite(db, `select backend, kind from ledger where request_id = '${r.sluice.request_id}' order by id`);
  assert.deepEqual(ledger.map((l) => `${l.backend}:${l.kind}`), ['small:infra', 'large:api']);
});

test('classify through a cascade: the large server classifies with the same task', async () => {
  const before = await largeCount();
  // no "task": the route's default task (triage) applies
  const res = await post('/v1/classify', { model: 'up', input: 'I was charged twice' });
  assert.equal(res.status, 200, JSON.stringify(res.body));
  const d = res.body.data[0];
  assert.ok(['billing', 'bug', 'shipping'].includes(d.label));
  assert.ok(d.confidence > 0 && d.confidence <= 1);
  checkSluice(d.sluice, { route: 'up', decision: 'escalated', backend: 'large' });
  assert.deepEqual(res.body.sluice, d.sluice);
  assert.equal(res.h.get('x-sluice-decision'), 'escalated');
  assert.equal(await largeCount(), before + 1);
  // several inputs: one routed request each
  const two = await post('/v1/classify', { model: 'stay', task: 'triage', input: ['parcel lost', 'app crashes'] });
  assert.equal(two.status, 200, JSON.stringify(two.body));
  assert.equal(two.body.data.length, 2);
  const ids = two.body.data.map((x) => x.sluice.request_id);
  assert.notEqual(ids[0], ids[1]);
  for (const x of two.body.data) assert.equal(x.sluice.decision, 'local');
  checkLogged([{ id: d.sluice.request_id, decision: 'escalated' }, ...ids.map((id) => ({ id, decision: 'local' }))]);
});

test('rules pick the tier: regex, length, metadata, API key, default', async () => {
  const cases = [
    [client, 'an ordinary question', {}, 'small'],
    [client, 'URGENT: the site is down', {}, 'large'],
    [client, 'x'.repeat(220), {}, 'large'],
    [client, 'an ordinary question', { metadata: { tier: 'premium' } }, 'large'],
    [client, 'an ordinary question', { metadata: { tier: 'basic' } }, 'small'],
    [vip, 'an ordinary question', {}, 'large'],
  ];
  const logged = [];
  for (const [c, text, extra, want] of cases) {
    const before = await largeCount();
    const { r, h } = await chat(c, 'pick', text, extra);
    assert.equal(r.sluice.backend, want, `${text.slice(0, 30)} ${JSON.stringify(extra)}: ${r.sluice.reason}`);
    assert.equal(r.sluice.decision, 'rules');
    assert.equal(h.get('x-sluice-backend'), want);
    assert.equal(await largeCount(), before + (want === 'large' ? 1 : 0));
    logged.push({ id: r.sluice.request_id, decision: 'rules', route: 'pick' });
  }
  checkLogged(logged);
});

test('predict: the learned router sends what it was trained to find hard to the large tier', async (t) => {
  if (!predictFile) return t.skip('sluice train-router did not produce a router');
  const hard = await chat(client, 'guess', 'solve the hard integral number 99 of x squared');
  const easy = await chat(client, 'guess', 'say hello to my friend number 99');
  assert.equal(hard.r.sluice.decision, 'predict', hard.r.sluice.reason);
  assert.equal(hard.r.sluice.backend, 'large', hard.r.sluice.reason);
  assert.equal(easy.r.sluice.backend, 'small', easy.r.sluice.reason);
  assert.equal(hard.r.sluice.stages.filter((s) => s.called).length, 1, 'decided before any model ran');
  checkLogged([{ id: hard.r.sluice.request_id, decision: hard.r.sluice.decision },
    { id: easy.r.sluice.request_id, decision: easy.r.sluice.decision }]);
});

for (const [route, backend, status] of [
  ['fb-down', 'down', /connection failed|circuit breaker open/],
  ['fb-slow', 'slow', /timeout|circuit breaker open/],
  ['fb-500', 'err500', /http error|circuit breaker open/],
  ['fb-bad', 'garbage', /malformed response|circuit breaker open/],
]) {
  test(`fallback: large backend ${backend} fails (${status.source.split('|')[0]}), the client still gets the local answer`, async () => {
    const logged = [];
    for (let i = 0; i < 3; i++) {
      const { r, h } = await chat(client, route, `Once upon a time ${i}`);
      assert.equal(r.sluice.decision, 'fallback', r.sluice.reason);
      assert.equal(r.sluice.backend, 'small');
      assert.equal(h.get('x-sluice-decision'), 'fallback');
      assert.equal(typeof r.choices[0].message.content, 'string');
      const st = r.sluice.stages.find((s) => s.backend === backend);
      assert.ok(st, 'the failed stage is reported');
      assert.match(st.status, status);
      assert.equal(st.accepted, false);
      logged.push({ id: r.sluice.request_id, decision: 'fallback', route });
    }
    checkLogged(logged);
  });
}

test('every tier failing is a 502 in OpenAI\'s error shape, with the sluice object, and logged', async () => {
  const res = await post('/v1/chat/completions', { model: 'broken', ...ask('hello') });
  assert.equal(res.status, 502, JSON.stringify(res.body));
  assert.equal(res.body.error.type, 'server_error');
  assert.equal(typeof res.body.error.message, 'string');
  const s = res.body.sluice;
  assert.equal(s.decision, 'failed');
  assert.deepEqual(s.stages.map((x) => x.backend).sort(), ['down', 'garbage']);
  for (const x of s.stages) assert.notEqual(x.status, 'ok');
  assert.equal(res.h.get('x-sluice-decision'), 'failed');
  assert.equal(res.h.get('x-sluice-request-id'), s.request_id);
  const rows = sqlite(db, `select decision, status from requests where id = '${s.request_id}'`);
  assert.deepEqual(rows, [{ decision: 'failed', status: 502 }]);
  await assert.rejects(client.chat.completions.create({ model: 'broken', ...ask('hello') }), (e) => e.status === 502);
});

const PII = 'Please email jane.doe@example.com, card 4111 1111 1111 1111, IBAN DE89 3704 0044 0532 0130 00.';
const PII_BYTES = ['jane.doe@example.com', '4111 1111 1111 1111', '4111111111111111', 'DE89 3704 0044 0532 0130 00', 'DE89370400440532013000', 'jane.doe'];

test('privacy local-only: no PII byte reaches the large backend', async () => {
  const n0 = readFileSync(records.placeholder, 'utf8').length;
  const { r, h } = await chat(client, 'private', PII);
  assert.equal(r.sluice.backend, 'small');
  assert.ok(r.sluice.pii.spans >= 3, `spans ${r.sluice.pii.spans}`);
  assert.equal(r.sluice.pii.action, 'kept-local');
  assert.equal(h.get('x-sluice-backend'), 'small');
  const leak = r.sluice.stages.find((s) => s.backend === 'leak');
  if (leak) assert.equal(leak.called, false);
  await new Promise((res) => setTimeout(res, 200)); // the recorder polls every 50 ms
  const got = readFileSync(records.placeholder, 'utf8').slice(n0);
  for (const b of PII_BYTES) assert.ok(!got.includes(b), `'${b}' reached the large backend`);
  assert.equal(got, '', 'nothing was sent at all');
  checkLogged([{ id: r.sluice.request_id, decision: r.sluice.decision, route: 'private' }]);
});

test('privacy redact: only placeholders reach the large backend, and the answer is restored', async () => {
  const n0 = readFileSync(records.placeholder, 'utf8').length;
  const { r } = await chat(client, 'masked', PII);
  assert.equal(r.sluice.backend, 'leak', r.sluice.reason);
  assert.equal(r.sluice.pii.action, 'redacted');
  await new Promise((res) => setTimeout(res, 200));
  const got = readFileSync(records.placeholder, 'utf8').slice(n0);
  assert.ok(got.length > 0, 'the large backend got the request');
  for (const b of PII_BYTES) assert.ok(!got.includes(b), `'${b}' reached the large backend`);
  assert.match(got, /\[EMAIL_1\]/);
  assert.match(got, /\[CARD_1\]/);
  assert.match(got, /\[IBAN_1\]/);
  assert.equal(r.choices[0].message.content, 'I will write to jane.doe@example.com about card 4111 1111 1111 1111.');
  checkLogged([{ id: r.sluice.request_id, decision: r.sluice.decision, route: 'masked' }]);
});

test('streaming through a route: chunks as they come, the sluice object in the last one', async () => {
  for (const [route, backend] of [['up', 'large'], ['stay', 'small']]) {
    const stream = await client.chat.completions.create({ model: route, ...ask('Once upon a time'), stream: true, stream_options: { include_usage: true } });
    let text = '', last = null, usage = null, n = 0;
    for await (const ch of stream) {
      n++;
      if (ch.choices.length && ch.choices[0].delta.content) text += ch.choices[0].delta.content;
      if (ch.sluice) last = ch.sluice;
      if (ch.usage) usage = ch.usage;
    }
    assert.ok(n >= 3, `${n} chunks`);
    assert.ok(last, 'a chunk carries the sluice object');
    assert.equal(last.backend, backend);
    assert.ok(usage && usage.completion_tokens > 0);
    assert.equal(typeof text, 'string');
    checkLogged([{ id: last.request_id, decision: last.decision, route }]);
  }
});

test('a client that leaves before the large tier answers: the call is given up, logged 499 "cancelled"', async () => {
  // the large tier (the fake upstream) answers after 3 s; the client leaves
  // after 0.6 s, streamed or not
  for (const stream of [false, true]) {
    const count = () => sqlite(db, "select count(*) as n from requests where route = 'gone'")[0].n;
    const before = count();
    const ac = new AbortController();
    const timer = setTimeout(() => ac.abort(), 600);
    try {
      const res = await fetch(`${router.url}/v1/chat/completions`, {
        method: 'POST',
        headers: { 'content-type': 'application/json', authorization: `Bearer ${KEY}` },
        body: JSON.stringify({ model: 'gone', ...ask('Hello there'), stream }),
        signal: ac.signal,
      });
      await res.text();
      assert.fail(`the request finished before the client left (stream ${stream})`);
    } catch (e) {
      assert.equal(e.name, 'AbortError', String(e));
    } finally {
      clearTimeout(timer);
    }
    let rows = [];
    for (let i = 0; i < 100 && rows.length === 0; i++) { // logged when routing ends
      await new Promise((r) => setTimeout(r, 100));
      if (count() > before)
        rows = sqlite(db, "select status, decision from requests where route = 'gone' order by rowid desc limit 1");
    }
    assert.equal(rows.length, 1, `stream ${stream}: the request was not logged within 10 s`);
    assert.equal(rows[0].status, 499, `stream ${stream}: ${JSON.stringify(rows[0])}`);
    assert.equal(rows[0].decision, 'cancelled');
  }
});

test('feedback: the true answer lands in the log; unknown ids and bad bodies are refused', async () => {
  const { r } = await chat(client, 'stay', 'Once upon a time');
  const id = r.sluice.request_id;
  const ok = await post('/v1/feedback', { request_id: id, answer: 'the right answer' });
  assert.equal(ok.status, 200, JSON.stringify(ok.body));
  assert.equal(ok.body.request_id, id);
  const rows = sqlite(db, `select answer from feedback where request_id = '${id}'`);
  assert.deepEqual(rows, [{ answer: 'the right answer' }]);
  const again = await post('/v1/feedback', { request_id: id, answer: { label: 'bug' } });
  assert.equal(again.status, 200);
  assert.deepEqual(sqlite(db, `select answer from feedback where request_id = '${id}'`), [{ answer: '{"label":"bug"}' }]);
  assert.equal((await post('/v1/feedback', { request_id: 'nope', answer: 'x' })).status, 404);
  assert.equal((await post('/v1/feedback', { answer: 'x' })).status, 400);
  assert.equal((await post('/v1/feedback', { request_id: id })).status, 400);
  assert.equal((await post('/v1/feedback', [1, 2])).status, 400);
  // a server without a log
  const res = await fetch(`${large.url}/v1/feedback`, { method: 'POST', body: JSON.stringify({ request_id: id, answer: 'x' }) });
  assert.equal(res.status, 503);
});

test('requests straight to a model are logged as "direct"', async () => {
  const { data, response } = await client.chat.completions.create({ model: 'tiny', ...ask('hi') }).withResponse();
  const id = response.headers.get('x-sluice-request-id');
  assert.equal(id, data.id);
  const rows = sqlite(db, `select route, decision, model, tokens_out, status from requests where id = '${id}'`);
  assert.deepEqual(rows, [{ route: 'tiny', decision: 'direct', model: 'tiny', tokens_out: data.usage.completion_tokens, status: 200 }]);
  const c = await post('/v1/classify', { task: 'triage', input: 'my card was charged twice' });
  assert.equal(c.status, 200);
  const cid = c.h.get('x-sluice-request-id');
  assert.deepEqual(sqlite(db, `select decision, output from requests where id = '${cid}'`), [{ decision: 'direct', output: c.body.data[0].label }]);
});

test('what a route cannot do is a clear 400; models and metrics list the routes', async () => {
  await assert.rejects(client.chat.completions.create({ model: 'up', ...ask('x'), n: 2 }),
    (e) => e.status === 400 && /one choice/.test(e.message));
  await assert.rejects(client.completions.create({ model: 'up', prompt: 'x', max_tokens: 2 }),
    (e) => e.status === 400 && /route/.test(e.message));
  await assert.rejects(client.chat.completions.create({ model: 'up', ...ask('x'), response_format: { type: 'json_object' } }),
    (e) => e.status === 400 && e.param === 'response_format');
  const bad = await post('/v1/classify', { model: 'up', input: 'x', labels: ['a', 'b'] });
  assert.equal(bad.status, 400);
  const models = await client.models.list();
  const routes = models.data.filter((m) => m.owned_by === 'sluice-route').map((m) => m.id);
  for (const r of ['stay', 'up', 'pick', 'fb-down', 'private', 'masked']) assert.ok(routes.includes(r), r);
  assert.ok(models.data.some((m) => m.id === 'tiny' && m.owned_by === 'sluice'));
  const m = await (await fetch(`${router.url}/metrics`)).text();
  assert.match(m, /sluice_route_requests_total\{route="up"\} [1-9]/);
  assert.match(m, /sluice_route_escalations_total\{route="up"\} [1-9]/);
  assert.match(m, /sluice_route_fallbacks_total\{route="fb-down"\} [1-9]/);
  assert.match(m, /sluice_route_cost_total\{route="up"\} [0-9.e-]+/);
});

test('nothing is lost from the log: every routed and direct request is there', () => {
  const rows = sqlite(db, 'select decision, count(*) as n from requests group by decision');
  const by = Object.fromEntries(rows.map((r) => [r.decision, r.n]));
  assert.ok(by.local >= 3 && by.escalated >= 2 && by.fallback >= 12 && by.rules >= 6 && by.direct >= 2, JSON.stringify(by));
  // every request with a ledger entry exists
  const orphans = sqlite(db, 'select count(*) as n from ledger where request_id not in (select id from requests)');
  assert.equal(orphans[0].n, 0);
  // `sluice costs` reads the same log
  const out = execFileSync(BIN, ['costs', '--db', db, '--by', 'route', '--json'], { encoding: 'utf8' });
  const rep = JSON.parse(out);
  const n = sqlite(db, 'select count(*) as n from requests')[0].n;
  assert.equal(rep.total.requests, n, JSON.stringify(rep.total));
  assert.ok(rep.total.api > 0 && rep.total.infra > 0, JSON.stringify(rep.total));
});
