#!/usr/bin/env node
// bench_http.mjs - serving benchmark of `sluice serve` (not a test: timing
// never decides pass/fail). Measures, on 127.0.0.1:
//
//   1. a classification-sized request (about 60 prompt tokens, 1 output
//      token) at concurrency 1, 8 and 32: requests/s, p50 and p99 latency,
//      with the shared instruction prefix cached (cache_cells > 0) and
//      without (a second server with cache_cells: 0);
//   2. generation: tokens/s of 8 concurrent 128-token generations vs 1.
//
// usage: node bench/bench_http.mjs [--bin build/sluice] [--model M.gguf]
//          [--requests N] [--json out.json] [--gen-only]
// Without --model it writes a small random-weight model with `sluice synth`
// (4 layers, 256 wide, vocab 4096: about 4.6M parameters, F32).
// Prints a markdown table for docs/performance.md and writes JSON.
import { spawn, execFileSync } from 'node:child_process';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir, cpus, hostname } from 'node:os';
import { join, resolve } from 'node:path';

const argv = process.argv.slice(2);
const opt = (name, def) => {
  const i = argv.indexOf(name);
  return i >= 0 ? argv[i + 1] : def;
};
const BIN = resolve(opt('--bin', 'build/sluice'));
const N = Number(opt('--requests', '96'));
const JSON_OUT = opt('--json', null);
const GEN_ONLY = argv.includes('--gen-only');
const dir = mkdtempSync(join(tmpdir(), 'sluice-bench-'));
let model = opt('--model', null);
if (!model) {
  model = join(dir, 'bench.gguf');
  execFileSync(BIN, ['synth', '--vocab', '4096', '--embd', '256', '--layers', '4', '--heads', '4',
    '--kv-heads', '4', '--ffn', '768', '-o', model], { stdio: 'ignore' });
}

function start(cacheCells) {
  const cfg = join(dir, `c${cacheCells}.yaml`);
  writeFileSync(cfg, `server:\n  port: 0\n  max_connections: 512\nmodels:\n  m:\n    path: ${model}\n`
    + `    ctx: 8192\n    slots: 32\n    queue: 256\n    batch: 512\n    cache_cells: ${cacheCells}\n`);
  return new Promise((res, rej) => {
    const p = spawn(BIN, ['serve', cfg], { stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '', err = '';
    p.stderr.on('data', (d) => { err += d; });
    p.stdout.on('data', (d) => {
      out += d;
      const m = out.match(/listening on http:\/\/[0-9.]+:(\d+)/);
      if (m) res({ p, url: `http://127.0.0.1:${m[1]}` });
    });
    p.on('exit', (c) => rej(new Error(`server exited ${c}: ${err}`)));
  });
}

const PREFIX = 'Classify the sentiment of the review as positive or negative. Review: ';
let seq = 0;
function classifyBody() {
  // a shared instruction + a short unique review: about 60 tokens with the
  // byte-level vocabulary of `sluice synth` (a space is 3 byte tokens)
  const review = ` item ${seq++} was ok`;
  return { model: 'm', prompt: PREFIX.slice(0, 29) + review, max_tokens: 1, temperature: 0 };
}

async function post(url, body) {
  const t0 = performance.now();
  const r = await fetch(`${url}/v1/completions`, {
    method: 'POST', headers: { 'Content-Type': 'application/json' }, body: JSON.stringify(body),
  });
  const j = await r.json();
  if (r.status !== 200) throw new Error(`${r.status} ${JSON.stringify(j)}`);
  return { ms: performance.now() - t0, usage: j.usage };
}

async function level(url, conc, n, make) {
  const lat = [];
  let next = 0, promptTokens = 0, cached = 0, completion = 0;
  const t0 = performance.now();
  await Promise.all(Array.from({ length: conc }, async () => {
    while (next < n) {
      next++;
      const r = await post(url, make());
      lat.push(r.ms);
      promptTokens += r.usage.prompt_tokens;
      completion += r.usage.completion_tokens;
      cached += r.usage.prompt_tokens_details?.cached_tokens ?? 0;
    }
  }));
  const wall = (performance.now() - t0) / 1e3;
  lat.sort((a, b) => a - b);
  const q = (p) => lat[Math.min(lat.length - 1, Math.floor(p * lat.length))];
  return { conc, n, rps: n / wall, p50: q(0.5), p99: q(0.99), prompt_tokens: promptTokens / n,
    cached_tokens: cached / n, completion_tokens: completion, wall_s: wall };
}

const results = { date: new Date().toISOString(), host: hostname(), cpus: cpus().length, cpu: cpus()[0]?.model,
  model, requests_per_level: N, classify: [], generate: [] };
for (const cache of GEN_ONLY ? [2048] : [2048, 0]) {
  const s = await start(cache);
  try {
    await level(s.url, 4, 16, classifyBody); // warm up (and fill the cache)
    for (const conc of GEN_ONLY ? [] : [1, 8, 32]) {
      const r = await level(s.url, conc, N, classifyBody);
      r.cache = cache > 0;
      results.classify.push(r);
      console.error(`classify cache=${r.cache} c=${conc}: ${r.rps.toFixed(1)} req/s p50 ${r.p50.toFixed(1)} ms `
        + `p99 ${r.p99.toFixed(1)} ms (prompt ${r.prompt_tokens.toFixed(0)} tok, cached ${r.cached_tokens.toFixed(0)})`);
    }
    if (cache > 0) {
      for (const conc of [1, 8]) {
        const r = await level(s.url, conc, conc, () => ({
          model: 'm', prompt: `Story ${seq++}:`, max_tokens: 128, temperature: 1, seed: seq, ignore_eos: true,
        }));
        r.tok_s = r.completion_tokens / r.wall_s;
        results.generate.push(r);
        console.error(`generate c=${conc}: ${r.completion_tokens} tokens in ${r.wall_s.toFixed(2)} s = ${r.tok_s.toFixed(1)} tok/s`);
      }
    }
  } finally {
    s.p.kill('SIGTERM');
  }
}

console.log('| request | prefix cache | concurrency | req/s | p50 ms | p99 ms | prompt tok | cached tok |');
console.log('|---|---|---|---|---|---|---|---|');
for (const r of results.classify)
  console.log(`| classify, 1 output token | ${r.cache ? 'on' : 'off'} | ${r.conc} | ${r.rps.toFixed(1)} | `
    + `${r.p50.toFixed(1)} | ${r.p99.toFixed(1)} | ${r.prompt_tokens.toFixed(0)} | ${r.cached_tokens.toFixed(0)} |`);
console.log('\n| generation (128 tokens each) | concurrency | tokens | seconds | tokens/s |');
console.log('|---|---|---|---|---|');
for (const r of results.generate)
  console.log(`| sampled, temperature 1 | ${r.conc} | ${r.completion_tokens} | ${r.wall_s.toFixed(2)} | ${r.tok_s.toFixed(1)} |`);
if (results.generate.length === 2)
  console.log(`\n8 concurrent / 1: ${(results.generate[1].tok_s / results.generate[0].tok_s).toFixed(2)}x tokens/s`);
if (JSON_OUT) writeFileSync(JSON_OUT, JSON.stringify(results, null, 2));
