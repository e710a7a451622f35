#!/usr/bin/env node
// bench_router.mjs - what the router adds to a request (not a test: timing
// never decides pass/fail). On 127.0.0.1:
//
//   large   a `sluice serve` with a small random model (the "large backend")
//   router  a `sluice serve` whose route `to-large` is a rules route sending
//           everything to `large` (an openai backend: the first server), with
//           the request log on (SQLite, as deployed)
//
// The same chat request (1 output token, greedy) is sent N times to each,
// sequentially and alternating (direct, routed, direct, ...), so both see
// the same machine load; p50/p95 of the client-side latency per path, and
// the difference. --rounds R repeats the whole measurement R times and
// reports each round and the medians.
//
// usage: node bench/bench_router.mjs [--bin build/sluice] [--requests N]
//          [--rounds R] [--json out.json]
// Prints a markdown table for docs/performance.md ("Router overhead").
import { spawn, execFileSync } from 'node:child_process';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir, cpus, hostname, loadavg } from 'node:os';
import { join, resolve } from 'node:path';

const argv = process.argv.slice(2);
const opt = (name, def) => {
  const i = argv.indexOf(name);
  return i >= 0 ? argv[i + 1] : def;
};
const BIN = resolve(opt('--bin', 'build/sluice'));
const N = Number(opt('--requests', '300'));
const ROUNDS = Number(opt('--rounds', '3'));
const JSON_OUT = opt('--json', null);
const dir = mkdtempSync(join(tmpdir(), 'sluice-bench-router-'));

function start(cfgText, name) {
  const cfg = join(dir, `${name}.yaml`);
  writeFileSync(cfg, cfgText);
  return new Promise((res, rej) => {
    const p = spawn(BIN, ['serve', cfg], { stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '', err = '';
    p.stderr.on('data', (d) => { err += d; });
    p.stdout.on('data', (d) => {
      out += d;
      const m = out.match(/listening on http:\/\/[0-9.]+:(\d+)/);
      if (m) res({ p, url: `http://127.0.0.1:${m[1]}` });
    });
    p.on('exit', (c) => rej(new Error(`${name} exited ${c}: ${err}`)));
  });
}

const model = join(dir, 'm.gguf');
execFileSync(BIN, ['synth', '--preset', 'tiny', '-o', model], { stdio: 'ignore' });
const large = await start(`server:\n  port: 0\nmodels:\n  big:\n    path: ${model}\n    ctx: 1024\n`
  + '    slots: 2\n    threads: 1\n', 'large');
const router = await start(`server:\n  port: 0\nmodels:\n  small:\n    path: ${model}\n    ctx: 512\n`
  + `    slots: 1\n    threads: 1\nbackends:\n  local:\n    kind: local\n    model: small\n`
  + `  large:\n    kind: openai\n    model: big\n    base_url: ${large.url}/v1\n`
  + '    input_per_mtok: 3\n    output_per_mtok: 15\nroutes:\n  to-large:\n    policy: rules\n'
  + '    tiers: [local, large]\n    rules:\n      - match: {}\n        to: large\n'
  + `log:\n  db: ${join(dir, 'log.db')}\n`, 'router');

const body = (model) => JSON.stringify({
  model, messages: [{ role: 'user', content: 'Say yes.' }], max_tokens: 1, temperature: 0,
});
const BODY_DIRECT = body('big'), BODY_ROUTED = body('to-large');

async function once(url, b) {
  const t0 = performance.now();
  const r = await fetch(`${url}/v1/chat/completions`, {
    method: 'POST', headers: { 'content-type': 'application/json' }, body: b,
  });
  const j = await r.json();
  const ms = performance.now() - t0;
  if (r.status !== 200) throw new Error(`HTTP ${r.status}: ${JSON.stringify(j)}`);
  return { ms, j };
}

const q = (xs, p) => {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.min(s.length - 1, Math.floor(p * s.length))];
};
const median = (xs) => q(xs, 0.5);

// warm-up: connections, the prefix cache, the router's pooled handles
for (let i = 0; i < 30; i++) {
  await once(large.url, BODY_DIRECT);
  const { j } = await once(router.url, BODY_ROUTED);
  if (j.sluice.backend !== 'large') throw new Error(`the route chose ${j.sluice.backend}`);
}

const rounds = [];
for (let r = 0; r < ROUNDS; r++) {
  const direct = [], routed = [];
  for (let i = 0; i < N; i++) {
    // alternate which goes first, so neither always follows the other
    if (i % 2 === 0) {
      direct.push((await once(large.url, BODY_DIRECT)).ms);
      routed.push((await once(router.url, BODY_ROUTED)).ms);
    } else {
      routed.push((await once(router.url, BODY_ROUTED)).ms);
      direct.push((await once(large.url, BODY_DIRECT)).ms);
    }
  }
  const row = {
    direct_p50: q(direct, 0.5), direct_p95: q(direct, 0.95),
    routed_p50: q(routed, 0.5), routed_p95: q(routed, 0.95),
  };
  row.overhead_p50 = row.routed_p50 - row.direct_p50;
  row.overhead_p95 = row.routed_p95 - row.direct_p95;
  rounds.push(row);
}

large.p.kill('SIGTERM');
router.p.kill('SIGTERM');

const med = {};
for (const k of Object.keys(rounds[0])) med[k] = median(rounds.map((r) => r[k]));
const f = (x) => x.toFixed(3);
const result = {
  command: `node bench/bench_router.mjs --bin ${BIN} --requests ${N} --rounds ${ROUNDS}`,
  date: new Date().toISOString(),
  machine: `${hostname()}, ${cpus().length} CPUs (${cpus()[0].model})`,
  load_average: loadavg().map((x) => x.toFixed(2)).join(' '),
  requests_per_path_per_round: N,
  rounds,
  median: med,
};
console.log(`${result.command}\n${result.date}  ${result.machine}  load ${result.load_average}\n`);
console.log('| round | direct p50 ms | direct p95 ms | routed p50 ms | routed p95 ms | overhead p50 ms | overhead p95 ms |');
console.log('|---|---|---|---|---|---|---|');
rounds.forEach((r, i) => console.log(`| ${i + 1} | ${f(r.direct_p50)} | ${f(r.direct_p95)} | ${f(r.routed_p50)} | ${f(r.routed_p95)} | ${f(r.overhead_p50)} | ${f(r.overhead_p95)} |`));
console.log(`| median | ${f(med.direct_p50)} | ${f(med.direct_p95)} | ${f(med.routed_p50)} | ${f(med.routed_p95)} | ${f(med.overhead_p50)} | ${f(med.overhead_p95)} |`);
if (JSON_OUT) writeFileSync(JSON_OUT, JSON.stringify(result, null, 2) + '\n');
