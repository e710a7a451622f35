// serve.test.mjs - `sluice serve` driven by the official openai client and
// by raw sockets: the API surface, its errors, and hostile clients.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import net from 'node:net';
import OpenAI from 'openai';
import {
  workdir, tinyModel, startServer, sha256, rawRequest, statusOf, bodyOf,
} from './helpers.mjs';

const KEY = 'sk-test-key', KEY2 = 'sk-only-other';
let srv, client, dir;

before(async () => {
  dir = workdir();
  const model = tinyModel(dir);
  const cfg = join(dir, 'sluice.yaml');
  writeFileSync(cfg, `
server:
  host: 127.0.0.1
  port: 0
  max_body_bytes: 1048576
  max_header_bytes: 8192
  idle_timeout_s: 5
  max_connections: 300
limits:
  max_completion_tokens: 4000
models:
  tiny:
    path: ${model}
    ctx: 4096
    slots: 4
    queue: 8
    threads: 1
  other:
    path: ${model}
    ctx: 1024
    slots: 1
    queue: 0
    threads: 1
    cache_cells: 0
api_keys:
  - name: ci
    sha256: ${sha256(KEY)}
  - name: limited
    sha256: ${sha256(KEY2)}
    models: [other]
`);
  srv = await startServer([cfg]);
  client = new OpenAI({ apiKey: KEY, baseURL: `${srv.url}/v1`, maxRetries: 0, timeout: 30000 });
});

after(async () => {
  const r = await srv.stop();
  assert.equal(r.code, 0, `server exit: ${JSON.stringify(r)}\n${srv.stderr()}`);
});

const chatReq = (extra = {}) => ({
  model: 'tiny', messages: [{ role: 'user', content: 'Say hello.' }], max_tokens: 8, temperature: 0, ...extra,
});

async function health() {
  const r = await fetch(`${srv.url}/health`);
  assert.equal(r.status, 200);
}

test('models list names every served model', async () => {
  const page = await client.models.list();
  const ids = page.data.map((m) => m.id).sort();
  assert.deepEqual(ids, ['other', 'tiny']);
  const m = await client.models.retrieve('tiny');
  assert.equal(m.id, 'tiny');
});

test('chat completion returns text, finish reason and usage', async () => {
  const r = await client.chat.completions.create(chatReq());
  assert.equal(r.object, 'chat.completion');
  assert.equal(r.choices.length, 1);
  assert.equal(typeof r.choices[0].message.content, 'string');
  assert.equal(r.choices[0].message.role, 'assistant');
  assert.ok(['stop', 'length'].includes(r.choices[0].finish_reason));
  assert.ok(r.usage.prompt_tokens > 0);
  assert.ok(r.usage.completion_tokens >= 1 && r.usage.completion_tokens <= 8);
  assert.equal(r.usage.total_tokens, r.usage.prompt_tokens + r.usage.completion_tokens);
});

test('streaming gives the same text as a whole response, then usage', async () => {
  const whole = await client.chat.completions.create(chatReq({ max_tokens: 16 }));
  const stream = await client.chat.completions.create(chatReq({
    max_tokens: 16, stream: true, stream_options: { include_usage: true },
  }));
  let text = '', finish = null, usage = null, chunks = 0;
  for await (const c of stream) {
    chunks++;
    if (c.usage) usage = c.usage;
    for (const ch of c.choices) {
      text += ch.delta?.content ?? '';
      if (ch.finish_reason) finish = ch.finish_reason;
    }
  }
  assert.ok(chunks >= 3);
  assert.equal(text, whole.choices[0].message.content);
  assert.equal(finish, whole.choices[0].finish_reason);
  assert.equal(usage.completion_tokens, whole.usage.completion_tokens);
});

test('n choices with a seed are reproducible', async () => {
  const req = chatReq({ n: 3, temperature: 1, seed: 7, max_tokens: 6 });
  const a = await client.chat.completions.create(req);
  const b = await client.chat.completions.create(req);
  assert.equal(a.choices.length, 3);
  assert.deepEqual(a.choices.map((c) => c.message.content), b.choices.map((c) => c.message.content));
  assert.deepEqual(a.choices.map((c) => c.index), [0, 1, 2]);
});

test('chat logprobs list every token with its top alternatives', async () => {
  const r = await client.chat.completions.create(chatReq({ logprobs: true, top_logprobs: 3 }));
  const lp = r.choices[0].logprobs.content;
  assert.equal(lp.length, r.usage.completion_tokens);
  for (const t of lp) {
    assert.ok(t.logprob <= 0);
    assert.equal(t.top_logprobs.length, 3);
    assert.ok(t.top_logprobs[0].logprob >= t.top_logprobs[2].logprob);
    assert.ok(Array.isArray(t.bytes));
    // greedy: the chosen token is the most likely one
    assert.ok(Math.abs(t.logprob - t.top_logprobs[0].logprob) < 1e-4);
  }
});

test('completions echo with logprobs scores the prompt tokens', async () => {
  const prompt = 'The quick brown fox';
  const r = await client.completions.create({
    model: 'tiny', prompt, max_tokens: 0, echo: true, logprobs: 2,
  });
  const c = r.choices[0];
  assert.equal(c.text, prompt);
  const lp = c.logprobs;
  assert.equal(lp.tokens.length, r.usage.prompt_tokens);
  assert.equal(lp.token_logprobs[0], null);
  assert.equal(lp.top_logprobs[0], null);
  for (let i = 1; i < lp.tokens.length; i++) {
    assert.ok(lp.token_logprobs[i] < 0, `token ${i}`);
    assert.ok(Object.keys(lp.top_logprobs[i]).length >= 1);
  }
  assert.equal(lp.text_offset.length, lp.tokens.length);
  // with generation: echo text + completion, prompt and generated logprobs
  const g = await client.completions.create({
    model: 'tiny', prompt, max_tokens: 4, echo: true, logprobs: 1, temperature: 0,
  });
  assert.ok(g.choices[0].text.startsWith(prompt));
  assert.equal(g.choices[0].logprobs.tokens.length, g.usage.prompt_tokens + g.usage.completion_tokens);
});

test('completions accept token ids and several prompts', async () => {
  const r = await client.completions.create({ model: 'tiny', prompt: ['a b', 'c d'], max_tokens: 3, temperature: 0 });
  assert.equal(r.choices.length, 2);
  const ids = await client.completions.create({ model: 'tiny', prompt: [1, 70, 71, 72], max_tokens: 2 });
  assert.equal(ids.usage.prompt_tokens, 4);
});

test('completions stream text chunks', async () => {
  const stream = await client.completions.create({
    model: 'tiny', prompt: 'Once', max_tokens: 10, temperature: 0, stream: true,
  });
  let text = '', finish = null;
  for await (const c of stream) {
    text += c.choices[0]?.text ?? '';
    finish = c.choices[0]?.finish_reason ?? finish;
  }
  const whole = await client.completions.create({ model: 'tiny', prompt: 'Once', max_tokens: 10, temperature: 0 });
  assert.equal(text, whole.choices[0].text);
  assert.equal(finish, whole.choices[0].finish_reason);
});

test('embeddings are unit vectors, as floats and as base64', async () => {
  const r = await client.embeddings.create({ model: 'tiny', input: ['hello', 'world'] });
  assert.equal(r.data.length, 2);
  for (const d of r.data) {
    const norm = Math.sqrt(d.embedding.reduce((s, x) => s + x * x, 0));
    assert.ok(Math.abs(norm - 1) < 1e-3, `norm ${norm}`);
  }
  const f = await client.embeddings.create({ model: 'tiny', input: 'hello', encoding_format: 'float' });
  assert.equal(f.data[0].embedding.length, r.data[0].embedding.length);
  for (let i = 0; i < 8; i++) assert.ok(Math.abs(f.data[0].embedding[i] - r.data[0].embedding[i]) < 1e-6);
  assert.ok(r.usage.prompt_tokens > 0);
});

test('a repeated prompt reuses the cached prefix', async () => {
  const long = 'You are a classifier. Answer with one word: positive or negative. '.repeat(4);
  const req = {
    model: 'tiny', temperature: 0, max_tokens: 1,
    messages: [{ role: 'system', content: long }, { role: 'user', content: 'I loved it.' }],
  };
  const a = await client.chat.completions.create(req);
  const b = await client.chat.completions.create({
    ...req, messages: [req.messages[0], { role: 'user', content: 'I hated it.' }],
  });
  assert.ok(b.usage.prompt_tokens_details.cached_tokens > long.length / 2,
    `cached ${b.usage.prompt_tokens_details.cached_tokens} of ${b.usage.prompt_tokens}`);
  assert.ok(a.usage.prompt_tokens > 0);
});

test('a bad key is an AuthenticationError', async () => {
  const bad = new OpenAI({ apiKey: 'sk-wrong', baseURL: `${srv.url}/v1`, maxRetries: 0 });
  await assert.rejects(bad.chat.completions.create(chatReq()), (e) => {
    assert.ok(e instanceof OpenAI.AuthenticationError, e.constructor.name);
    assert.equal(e.status, 401);
    assert.equal(e.code, 'invalid_api_key');
    return true;
  });
  const none = await fetch(`${srv.url}/v1/models`);
  assert.equal(none.status, 401);
  assert.ok((await none.json()).error.message.includes('API key'));
});

test('a key limited to other models is refused', async () => {
  const lim = new OpenAI({ apiKey: KEY2, baseURL: `${srv.url}/v1`, maxRetries: 0 });
  await assert.rejects(lim.chat.completions.create(chatReq()), OpenAI.PermissionDeniedError);
  const list = await lim.models.list();
  assert.deepEqual(list.data.map((m) => m.id), ['other']);
});

test('a bad parameter is a BadRequestError naming it', async () => {
  await assert.rejects(client.chat.completions.create(chatReq({ temperature: 5 })), (e) => {
    assert.ok(e instanceof OpenAI.BadRequestError);
    assert.equal(e.param, 'temperature');
    return true;
  });
  await assert.rejects(client.chat.completions.create(chatReq({ n: 100 })), OpenAI.BadRequestError);
  await assert.rejects(client.chat.completions.create({ model: 'tiny', messages: 'hi' }), OpenAI.BadRequestError);
});

test('an unknown model is a NotFoundError', async () => {
  await assert.rejects(client.chat.completions.create(chatReq({ model: 'gpt-99' })), (e) => {
    assert.ok(e instanceof OpenAI.NotFoundError);
    assert.equal(e.code, 'model_not_found');
    return true;
  });
});

test('too many tokens is a 400 with context_length_exceeded', async () => {
  await assert.rejects(client.completions.create({ model: 'other', prompt: 'x'.repeat(3000), max_tokens: 1 }),
    (e) => e instanceof OpenAI.BadRequestError && e.code === 'context_length_exceeded');
  await assert.rejects(client.completions.create({ model: 'other', prompt: 'x', max_tokens: 2000 }),
    (e) => e instanceof OpenAI.BadRequestError && e.code === 'context_length_exceeded');
});

test('overload is a RateLimitError with Retry-After, and the server recovers', async () => {
  // "other" has one slot and no queue: hold the slot with a long stream
  const ctl = new AbortController();
  const hold = await client.completions.create(
    { model: 'other', prompt: 'a', max_tokens: 1000, stream: true, ignore_eos: true }, { signal: ctl.signal });
  const it = hold[Symbol.asyncIterator]();
  await it.next();
  await assert.rejects(client.completions.create({ model: 'other', prompt: 'b', max_tokens: 1 }), (e) => {
    assert.ok(e instanceof OpenAI.RateLimitError, e.constructor.name);
    assert.equal(e.status, 429);
    assert.equal(e.headers.get('retry-after'), '1');
    return true;
  });
  ctl.abort();
  // the abandoned stream is cancelled and the slot frees up
  let ok = false;
  for (let i = 0; i < 50 && !ok; i++) {
    try {
      await client.completions.create({ model: 'other', prompt: 'b', max_tokens: 1 });
      ok = true;
    } catch (e) {
      if (!(e instanceof OpenAI.RateLimitError)) throw e;
      await new Promise((r) => setTimeout(r, 100));
    }
  }
  assert.ok(ok, 'slot never freed after the client went away');
});

test('malformed JSON and wrong types get JSON errors and the server keeps serving', async () => {
  const post = (body) => fetch(`${srv.url}/v1/chat/completions`, {
    method: 'POST', headers: { Authorization: `Bearer ${KEY}`, 'Content-Type': 'application/json' }, body,
  });
  for (const body of ['{', '[]', '"x"', '{"model":1}', '{"model":"tiny","messages":[{"role":"user","content":{}}]}',
    '{"model":"tiny","messages":[{"role":"user","content":"x"}],"max_tokens":"9"}', '\u0000\u0001']) {
    const r = await post(body);
    assert.equal(r.status, 400, body);
    const j = await r.json();
    assert.equal(typeof j.error.message, 'string');
    assert.equal(j.error.type, 'invalid_request_error');
  }
  const nf = await fetch(`${srv.url}/v2/nothing`);
  assert.equal(nf.status, 404);
  assert.ok((await nf.json()).error);
  const get = await fetch(`${srv.url}/v1/chat/completions`, { headers: { Authorization: `Bearer ${KEY}` } });
  assert.equal(get.status, 405);
  await health();
});

test('a huge body is 413 and huge headers are 431', async () => {
  // a Content-Length over the cap is answered from the headers alone, before
  // any body byte is read (sending the body too would race the close: RST)
  const reply = await rawRequest(srv.port, `POST /v1/completions HTTP/1.1\r\nHost: x\r\nConnection: close\r\n`
    + `Content-Type: application/json\r\nContent-Length: ${2 * 1024 * 1024}\r\n\r\n`);
  assert.equal(statusOf(reply), 413);
  assert.ok(JSON.parse(bodyOf(reply)).error.message.includes('too large'));
  // without Content-Length: a chunked upload just past the cap (1 MiB here)
  const chunk = 'y'.repeat(512 * 1024 + 16);
  const chunked = `POST /v1/completions HTTP/1.1\r\nHost: x\r\nConnection: close\r\nTransfer-Encoding: chunked\r\n\r\n`
    + `${chunk.length.toString(16)}\r\n${chunk}\r\n${chunk.length.toString(16)}\r\n${chunk}\r\n0\r\n\r\n`;
  assert.equal(statusOf(await rawRequest(srv.port, chunked)), 413);
  const hdr = await rawRequest(srv.port, `GET /health HTTP/1.1\r\nHost: x\r\nConnection: close\r\nX-Big: ${'h'.repeat(10000)}\r\n\r\n`);
  assert.equal(statusOf(hdr), 431);
  await health();
});

test('a slow client does not hold up others and is timed out', async () => {
  const s = net.connect(srv.port, '127.0.0.1');
  await new Promise((r) => s.on('connect', r));
  let closed = false;
  s.on('close', () => { closed = true; });
  s.on('error', () => {});
  const req = 'POST /v1/completions HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n{"model":';
  let i = 0;
  const trickle = setInterval(() => { if (i < req.length && !closed) s.write(req[i++]); }, 50);
  const t0 = Date.now();
  const r = await client.chat.completions.create(chatReq({ max_tokens: 2 }));
  assert.ok(r.choices.length === 1 && Date.now() - t0 < 5000);
  clearInterval(trickle);
  // now silent: closed after idle_timeout_s (5 s)
  for (let k = 0; k < 100 && !closed; k++) await new Promise((res) => setTimeout(res, 100));
  assert.ok(closed, 'idle connection was not closed');
  s.destroy();
});

test('many open connections do not stop the server', async () => {
  const socks = [];
  for (let i = 0; i < 150; i++) {
    const s = net.connect(srv.port, '127.0.0.1');
    s.on('error', () => {});
    socks.push(s);
  }
  await Promise.all(socks.map((s) => new Promise((r) => { s.on('connect', r); s.on('error', r); })));
  const rs = await Promise.all(Array.from({ length: 12 }, (_, i) => client.chat.completions.create(
    chatReq({ max_tokens: 3, messages: [{ role: 'user', content: `request ${i}` }] }))));
  assert.equal(rs.length, 12);
  for (const s of socks) s.destroy();
  await health();
});

test('metrics report requests, tokens, queue and batches', async () => {
  const r = await fetch(`${srv.url}/metrics`);
  assert.equal(r.status, 200);
  const t = await r.text();
  assert.match(t, /sluice_http_requests_total\{route="\/v1\/chat\/completions",status="200"\} \d+/);
  assert.match(t, /sluice_http_requests_total\{route="\/v1\/completions",status="429"\} [1-9]/);
  assert.match(t, /sluice_generated_tokens_total\{model="tiny"\} [1-9]/);
  assert.match(t, /sluice_prefix_cache_hit_tokens_total\{model="tiny"\} [1-9]/);
  assert.match(t, /sluice_queue_depth\{model="tiny"\} 0/);
  assert.match(t, /sluice_batch_size_bucket\{model="tiny",le="\+Inf"\} [1-9]/);
  assert.match(t, /sluice_http_request_duration_seconds_bucket\{route="\/v1\/chat\/completions",le="\+Inf"\}/);
});
