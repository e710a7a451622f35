// lifecycle.test.mjs - `sluice serve -m MODEL.gguf` without a config,
// graceful shutdown on SIGTERM, and real text from stories260K when
// ../shared/assets is there.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import OpenAI from 'openai';
import { workdir, tinyModel, storiesModel, startServer } from './helpers.mjs';

test('serve -m names the model after its file and takes --api-key', async () => {
  const dir = workdir();
  const srv = await startServer(['-m', tinyModel(dir), '--port', '0', '--api-key', 'k1', '-t', '1']);
  try {
    const c = new OpenAI({ apiKey: 'k1', baseURL: `${srv.url}/v1`, maxRetries: 0 });
    const list = await c.models.list();
    assert.deepEqual(list.data.map((m) => m.id), ['tiny']);
    assert.match(srv.stderr(), /no chat template; using 'chatml'/);
    const r = await c.chat.completions.create({ model: 'tiny', messages: [{ role: 'user', content: 'x' }], max_tokens: 2 });
    assert.equal(r.choices.length, 1);
  } finally {
    const e = await srv.stop();
    assert.equal(e.code, 0);
  }
});

test('SIGTERM lets a request in flight finish, then exits 0', async () => {
  const dir = workdir();
  const srv = await startServer(['-m', tinyModel(dir), '--port', '0', '-t', '1']);
  const c = new OpenAI({ apiKey: 'none', baseURL: `${srv.url}/v1`, maxRetries: 0 });
  const stream = await c.completions.create({ model: 'tiny', prompt: 'a', max_tokens: 1500, stream: true,
    temperature: 1, seed: 1, ignore_eos: true });
  const it = stream[Symbol.asyncIterator]();
  await it.next();
  srv.proc.kill('SIGTERM');
  let finish = null, n = 0;
  for (;;) {
    const { value, done } = await it.next();
    if (done) break;
    n++;
    finish = value.choices[0]?.finish_reason ?? finish;
  }
  assert.equal(finish, 'length', `finish ${finish} after ${n} chunks`);
  const e = await srv.exited;
  assert.equal(e.code, 0, srv.stderr());
  // new connections are refused now
  await assert.rejects(fetch(`${srv.url}/health`));
});

test('a stream waiting longer than idle_timeout_s is kept alive', async () => {
  const dir = workdir();
  const cfg = join(dir, 'idle.yaml');
  writeFileSync(cfg, `server:\n  port: 0\n  idle_timeout_s: 1\nmodels:\n  tiny:\n    path: ${tinyModel(dir)}\n`
    + '    slots: 1\n    queue: 4\n    threads: 1\n');
  const srv = await startServer([cfg]);
  try {
    const c = new OpenAI({ apiKey: 'none', baseURL: `${srv.url}/v1`, maxRetries: 0 });
    // the first holds the only slot for a few seconds; the second waits in the queue
    const t0 = Date.now();
    // (two choices of 2000 tokens: one sequence may not pass the model's 2048 positions)
    const first = c.completions.create({ model: 'tiny', prompt: 'a', max_tokens: 2000, n: 2, ignore_eos: true });
    await new Promise((r) => setTimeout(r, 50));
    const stream = await c.completions.create({ model: 'tiny', prompt: 'b', max_tokens: 4, stream: true });
    let finish = null;
    for await (const chunk of stream) finish = chunk.choices[0]?.finish_reason ?? finish;
    assert.ok(finish === 'length' || finish === 'stop', `finish ${finish}`);
    const r = await first;
    assert.equal(r.usage.completion_tokens, 4000);
    console.log(`# queued stream finished after ${Date.now() - t0} ms`);
  } finally {
    await srv.stop();
  }
});

test('stories260K answers with real text', async (t) => {
  const dir = workdir();
  const path = storiesModel(dir);
  if (!path) {
    t.skip('../shared/assets absent');
    return;
  }
  const srv = await startServer(['-m', path, '--port', '0', '-t', '1']);
  try {
    const c = new OpenAI({ apiKey: 'none', baseURL: `${srv.url}/v1`, maxRetries: 0 });
    const r = await c.completions.create({ model: 'stories260K', prompt: 'Once upon a time', max_tokens: 40,
      temperature: 0 });
    const text = r.choices[0].text;
    assert.match(text, /^[ -~\n]+$/);
    assert.ok(text.split(' ').length > 5, text);
    // echo scores: the story's own words are likelier than noise
    const good = await c.completions.create({ model: 'stories260K', prompt: 'Once upon a time, there was a little girl',
      max_tokens: 0, echo: true, logprobs: 0 });
    const bad = await c.completions.create({ model: 'stories260K', prompt: 'Once upon a time, there was a little zqxj',
      max_tokens: 0, echo: true, logprobs: 0 });
    const sum = (r2) => r2.choices[0].logprobs.token_logprobs.slice(1).reduce((a, b) => a + b, 0);
    assert.ok(sum(good) > sum(bad), `${sum(good)} vs ${sum(bad)}`);
  } finally {
    await srv.stop();
  }
});
