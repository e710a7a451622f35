// tasks.test.mjs - /v1/classify, /v1/extract and response_format on chat
// completions, against the real `sluice serve` (issue 5): ad-hoc tasks on a
// synth model, configured tasks from the config's tasks: section, and
// (with ../shared/assets) a classification stories260K gets right.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import OpenAI from 'openai';
import { workdir, tinyModel, storiesModel, startServer } from './helpers.mjs';

let srv, client, dir, stories = null;

const PERSON = {
  type: 'object',
  properties: {
    name: { type: 'string', maxLength: 12 },
    age: { type: 'integer' },
    mood: { enum: ['happy', 'sad'] },
    tags: { type: 'array', items: { type: 'string', maxLength: 6 }, maxItems: 3 },
  },
  required: ['name', 'age', 'mood'],
};

before(async () => {
  dir = workdir();
  const model = tinyModel(dir);
  const cfg = join(dir, 'sluice.yaml');
  writeFileSync(cfg, `
server:
  port: 0
models:
  tiny:
    path: ${model}
    ctx: 2048
    slots: 2
    threads: 1
tasks:
  ticket-triage:
    kind: classify
    model: tiny
    instruction: Route the support ticket.
    temperature: 1.5
    labels:
      - name: billing
        description: payments, invoices, refunds
      - name: bug
        description: something is broken
      - shipping
    examples:
      - input: I was charged twice
        label: billing
  person:
    kind: extract
    model: tiny
    max_tokens: 200
    schema:
      type: object
      properties:
        name: {type: string, maxLength: 10}
        ok: {type: boolean}
      required: [name, ok]
  greet:
    kind: generate
    model: tiny
    prompt: "Say hello to {input}"
`);
  srv = await startServer([cfg]);
  client = new OpenAI({ apiKey: 'none', baseURL: `${srv.url}/v1`, maxRetries: 0, timeout: 60000 });
  const sp = storiesModel(dir);
  if (sp) stories = await startServer(['-m', sp, '--port', '0']);
});

after(async () => {
  const r = await srv.stop();
  assert.equal(r.code, 0, `server exit: ${JSON.stringify(r)}\n${srv.stderr()}`);
  if (stories) await stories.stop();
});

async function post(url, path, body) {
  const res = await fetch(`${url}${path}`, {
    method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify(body),
  });
  return { status: res.status, body: await res.json() };
}

// The schema subset of src/tasks/schema.h; absent additionalProperties means false.
function validate(schema, v, at = '') {
  const errs = [];
  const t = schema.type;
  const is = {
    object: (x) => x !== null && typeof x === 'object' && !Array.isArray(x),
    array: Array.isArray, string: (x) => typeof x === 'string', boolean: (x) => typeof x === 'boolean',
    integer: Number.isInteger, number: (x) => typeof x === 'number', null: (x) => x === null,
  };
  if (t && !is[t](v)) return [`${at}: not ${t}`];
  if (schema.enum && !schema.enum.some((e) => JSON.stringify(e) === JSON.stringify(v))) errs.push(`${at}: not in enum`);
  if (typeof v === 'string') {
    const n = [...v].length;
    if (schema.maxLength !== undefined && n > schema.maxLength) errs.push(`${at}: too long`);
    if (schema.minLength !== undefined && n < schema.minLength) errs.push(`${at}: too short`);
  }
  if (is.object(v) && schema.properties) {
    for (const r of schema.required || []) if (!(r in v)) errs.push(`${at}/${r}: missing`);
    for (const [k, x] of Object.entries(v)) {
      if (!(k in schema.properties)) errs.push(`${at}/${k}: not allowed`);
      else errs.push(...validate(schema.properties[k], x, `${at}/${k}`));
    }
  }
  if (Array.isArray(v)) {
    if (schema.maxItems !== undefined && v.length > schema.maxItems) errs.push(`${at}: too many items`);
    if (schema.items) v.forEach((x, i) => errs.push(...validate(schema.items, x, `${at}/${i}`)));
  }
  return errs;
}

function checkClassification(d, labels) {
  const ps = labels.map((l) => d.probs[l]);
  for (const p of ps) assert.ok(p >= 0 && p <= 1, `prob ${p}`);
  assert.ok(Math.abs(ps.reduce((a, b) => a + b, 0) - 1) < 1e-4, `probs sum to 1: ${ps}`);
  const best = labels[ps.indexOf(Math.max(...ps))];
  assert.equal(d.label, best, 'the label is the argmax');
  assert.ok(Math.abs(d.confidence - d.probs[d.label]) < 1e-6);
  assert.ok(d.margin >= 0 && d.margin <= 1);
  assert.ok(d.entropy >= 0);
}

test('ad-hoc classify: probs sum to 1, the label is the argmax', async () => {
  const labels = ['yes', 'no', 'maybe'];
  const r = await client.post('/classify', { body: { model: 'tiny', input: 'Is the sky blue?', labels } });
  assert.equal(r.object, 'list');
  assert.equal(r.data.length, 1);
  assert.equal(r.data[0].index, 0);
  checkClassification(r.data[0], labels);
  assert.ok(r.usage.prompt_tokens > 0);
  assert.equal(r.usage.total_tokens, r.usage.prompt_tokens + r.usage.completion_tokens);
});

test('ad-hoc classify: batch input, labels with descriptions, raw prompts', async () => {
  const labels = [{ name: 'cat', description: 'feline' }, { name: 'dog' }];
  const input = ['meow', 'woof', 'purr purr', 'bark'];
  const r = await post(srv.url, '/v1/classify', { model: 'tiny', input, labels, prompt_mode: 'raw' });
  assert.equal(r.status, 200, JSON.stringify(r.body));
  assert.equal(r.body.data.length, 4);
  r.body.data.forEach((d, i) => { assert.equal(d.index, i); checkClassification(d, ['cat', 'dog']); });
  // the same input alone gives the same answer as in the batch
  const one = await post(srv.url, '/v1/classify', { model: 'tiny', input: 'woof', labels, prompt_mode: 'raw' });
  assert.ok(Math.abs(one.body.data[0].probs.cat - r.body.data[1].probs.cat) < 1e-3);
});

test('configured classify task', async () => {
  const r = await post(srv.url, '/v1/classify', { task: 'ticket-triage', input: ['My parcel never arrived', 'The app crashes'] });
  assert.equal(r.status, 200, JSON.stringify(r.body));
  assert.equal(r.body.task, 'ticket-triage');
  assert.equal(r.body.model, 'tiny');
  for (const d of r.body.data) checkClassification(d, ['billing', 'bug', 'shipping']);
});

test('ad-hoc extract: the output parses and validates against the schema', async () => {
  const r = await post(srv.url, '/v1/extract', { model: 'tiny', input: ['Ann is 31 and happy.', 'Bob, 40, sad'], schema: PERSON, max_tokens: 300 });
  assert.equal(r.status, 200, JSON.stringify(r.body));
  assert.equal(r.body.data.length, 2);
  for (const d of r.body.data) {
    assert.deepEqual(JSON.parse(d.output_text), d.output);
    assert.deepEqual(validate(PERSON, d.output), [], d.output_text);
    assert.ok(d.confidence > 0 && d.confidence <= 1);
    assert.ok(d.confidence_mean >= d.confidence - 1e-6);
    assert.ok(d.fields['/name'], `per-field confidence: ${JSON.stringify(d.fields)}`);
    assert.ok(d.fields['/age'].confidence > 0);
  }
  assert.ok(r.body.usage.completion_tokens > 0);
});

test('configured extract task', async () => {
  const r = await post(srv.url, '/v1/extract', { task: 'person', input: 'Zed is fine' });
  assert.equal(r.status, 200, JSON.stringify(r.body));
  const o = r.body.data[0].output;
  assert.equal(typeof o.name, 'string');
  assert.ok([...o.name].length <= 10);
  assert.equal(typeof o.ok, 'boolean');
});

test('chat completions with response_format json_schema returns JSON that validates', async () => {
  for (const seed of [1, 2, 3]) {
    const r = await client.chat.completions.create({
      model: 'tiny', seed, max_tokens: 300, temperature: 1,
      messages: [{ role: 'user', content: 'Describe a person as JSON.' }],
      response_format: { type: 'json_schema', json_schema: { name: 'person', schema: PERSON } },
    });
    const text = r.choices[0].message.content;
    assert.equal(r.choices[0].finish_reason, 'stop', text);
    const v = JSON.parse(text);
    assert.deepEqual(validate(PERSON, v), [], text);
  }
});

test('chat completions with response_format json_object returns an object', async () => {
  const r = await client.chat.completions.create({
    model: 'tiny', seed: 7, max_tokens: 200, temperature: 0,
    messages: [{ role: 'user', content: 'JSON please' }],
    response_format: { type: 'json_object' },
  });
  const text = r.choices[0].message.content;
  assert.ok(text.startsWith('{'), text);
  if (r.choices[0].finish_reason === 'stop') assert.equal(typeof JSON.parse(text), 'object');
});

test('streamed json_schema output validates too', async () => {
  const schema = { type: 'object', properties: { ok: { type: 'boolean' } }, required: ['ok'] };
  const stream = await client.chat.completions.create({
    model: 'tiny', seed: 3, max_tokens: 50, stream: true,
    messages: [{ role: 'user', content: 'ok?' }],
    response_format: { type: 'json_schema', json_schema: { name: 'x', schema } },
  });
  let text = '';
  for await (const c of stream) text += c.choices[0]?.delta?.content || '';
  assert.deepEqual(validate(schema, JSON.parse(text)), [], text);
});

test('a configured generate task on /v1/completions renders its template', async () => {
  const viaTask = await post(srv.url, '/v1/completions', { task: 'greet', prompt: 'Bob', max_tokens: 8, temperature: 0 });
  assert.equal(viaTask.status, 200, JSON.stringify(viaTask.body));
  assert.equal(viaTask.body.model, 'tiny');
  const direct = await client.completions.create({ model: 'tiny', prompt: 'Say hello to Bob', max_tokens: 8, temperature: 0 });
  assert.equal(viaTask.body.choices[0].text, direct.choices[0].text);
  assert.equal(viaTask.body.usage.prompt_tokens, direct.usage.prompt_tokens);
  const r = await post(srv.url, '/v1/completions', { task: 'person', prompt: 'x' });
  assert.equal(r.status, 400);
  assert.equal(r.body.error.param, 'task');
});

test('an unsupported schema keyword is a 400 naming it', async () => {
  const bad = { type: 'object', properties: { code: { type: 'string', pattern: '^[A-Z]+$' } } };
  const r = await post(srv.url, '/v1/extract', { model: 'tiny', input: 'x', schema: bad });
  assert.equal(r.status, 400);
  assert.equal(r.body.error.param, 'schema');
  assert.match(r.body.error.message, /pattern/);
  await assert.rejects(
    client.chat.completions.create({
      model: 'tiny', max_tokens: 5, messages: [{ role: 'user', content: 'x' }],
      response_format: { type: 'json_schema', json_schema: { name: 'x', schema: { oneOf: [] } } },
    }),
    (e) => e.status === 400 && /oneOf/.test(e.message) && e.param === 'response_format.json_schema.schema',
  );
});

test('bad labels are 400 with param labels', async () => {
  for (const labels of [[], ['a', 'a'], [''], [3], 'abc', [{ description: 'no name' }]]) {
    const r = await post(srv.url, '/v1/classify', { model: 'tiny', input: 'x', labels });
    assert.equal(r.status, 400, JSON.stringify(labels));
    assert.equal(r.body.error.param, 'labels');
    assert.equal(r.body.error.type, 'invalid_request_error');
  }
  const r = await post(srv.url, '/v1/classify', { model: 'tiny', input: 'x' });
  assert.equal(r.status, 400);
  assert.equal(r.body.error.param, 'labels');
  const r2 = await post(srv.url, '/v1/classify', { model: 'tiny', labels: ['a'] });
  assert.equal(r2.body.error.param, 'input');
});

test('unknown task or model is a 404; a task of another kind is a 400', async () => {
  let r = await post(srv.url, '/v1/classify', { task: 'nope', input: 'x' });
  assert.equal(r.status, 404);
  assert.equal(r.body.error.code, 'task_not_found');
  assert.equal(r.body.error.param, 'task');
  r = await post(srv.url, '/v1/extract', { model: 'nope', input: 'x', schema: { type: 'string' } });
  assert.equal(r.status, 404);
  assert.equal(r.body.error.param, 'model');
  r = await post(srv.url, '/v1/extract', { task: 'ticket-triage', input: 'x' });
  assert.equal(r.status, 400);
  assert.equal(r.body.error.param, 'task');
  r = await post(srv.url, '/v1/classify', { task: 'ticket-triage', input: 'x', labels: ['a'] });
  assert.equal(r.status, 400);
  assert.equal(r.body.error.param, 'labels');
});

test('tasks and generation share the engine: concurrent requests all succeed', async () => {
  const labels = ['x', 'y'];
  const jobs = [];
  for (let i = 0; i < 4; i++) {
    jobs.push(client.chat.completions.create({ model: 'tiny', seed: i, max_tokens: 16, messages: [{ role: 'user', content: `hi ${i}` }] }));
    jobs.push(post(srv.url, '/v1/classify', { model: 'tiny', input: `input ${i}`, labels }));
  }
  const out = await Promise.all(jobs);
  for (let i = 0; i < out.length; i += 2) {
    assert.ok(out[i].choices[0].message.content !== undefined);
    assert.equal(out[i + 1].status, 200);
    checkClassification(out[i + 1].body.data[0], labels);
  }
  // the same classification again gives the same probabilities
  const a = await post(srv.url, '/v1/classify', { model: 'tiny', input: 'input 0', labels });
  assert.ok(Math.abs(a.body.data[0].probs.x - out[1].body.data[0].probs.x) < 1e-4);
});

test('stories260K classifies a name the way it would continue the story', async (t) => {
  if (!stories) return t.skip('no ../shared/assets (stories260K)');
  const sp = stories.url;
  const models = await (await fetch(`${sp}/v1/models`)).json();
  const model = models.data[0].id;
  const labels = [' Lily', ' Tom', ' dog'];
  const r = await post(sp, '/v1/classify', {
    model, input: 'Once upon a time there was a little girl named', labels, prompt_mode: 'raw',
  });
  assert.equal(r.status, 200, JSON.stringify(r.body));
  checkClassification(r.body.data[0], labels);
  assert.equal(r.body.data[0].label, ' Lily', JSON.stringify(r.body.data[0].probs));
});
