// `sluice eval` on real labelled mail, its HTML report rendered in Debian's
// Chromium (headless, driven by playwright-core): a cascade of two local
// backends (small = stories260K converted from its llama2.c files, large = a
// `sluice synth` model) classifying 40 SpamAssassin messages as ham/spam.
// Every chart must be drawn at size, the failure-modes section must be
// there with its tables, nothing may be fetched from outside the file and
// no console error may appear. Screenshots go to $SLUICE_REPORT_OUT
// (eval_spam.png, the page; eval_spam_failures.png, the failure modes) for a
// human to look at.
//
// Environment (set by tests/CMakeLists.txt): SLUICE_BIN, SLUICE_ASSETS,
// SLUICE_REPORT_OUT, SLUICE_CHROMIUM (default /usr/bin/chromium). Skips when
// ../shared/assets (the data set or the model) is absent.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { chromium } from 'playwright-core';

const out = process.env.SLUICE_REPORT_OUT || mkdtempSync(join(tmpdir(), 'sluice-report-'));
const bin = process.env.SLUICE_BIN;
const assets = process.env.SLUICE_ASSETS || '';
const mail = join(assets, 'datasets/spamassassin/spamassassin.jsonl');
const stories = join(assets, 'models/stories260K');
const N_EXAMPLES = 40;
const MAX_CHARS = 400;

let browser;
let profile;

before(async () => {
  profile = mkdtempSync(join(tmpdir(), 'sluice-chromium-'));
  browser = await chromium.launchPersistentContext(profile, {
    executablePath: process.env.SLUICE_CHROMIUM || '/usr/bin/chromium',
    headless: true,
    args: ['--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
           '--disable-background-networking', '--disable-component-update', '--disable-sync'],
    viewport: { width: 1280, height: 900 },
  });
});

after(async () => {
  await browser?.close();
  if (profile) rmSync(profile, { recursive: true, force: true });
});

// N messages spread evenly over the file (it is sorted by group, so this
// takes easy ham, hard ham and spam alike): input = subject + body, cut to
// MAX_CHARS characters; the group is metadata (a failure slice).
function spamExamples(path, n) {
  const rows = readFileSync(path, 'utf8').split('\n').filter((l) => l.trim()).map((l) => JSON.parse(l));
  const picked = [];
  for (let j = 0; j < n; j++) {
    const r = rows[Math.floor((j * rows.length) / n)];
    const input = Array.from(`${r.subject}\n\n${r.body}`).slice(0, MAX_CHARS).join('');
    picked.push(JSON.stringify({ id: r.id, input, label: r.label, group: r.group }));
  }
  return `${picked.join('\n')}\n`;
}

test('sluice eval of a two-tier cascade on SpamAssassin renders every chart and the failure modes',
  async (t) => {
    if (!existsSync(mail) || !existsSync(join(stories, 'stories260K.bin'))) {
      t.skip('../shared/assets absent (datasets/spamassassin, models/stories260K): eval report not checked');
      return;
    }
    assert.ok(bin && existsSync(bin), 'SLUICE_BIN must point at the sluice binary');
    const dir = join(out, 'eval_spam');
    rmSync(dir, { recursive: true, force: true });
    mkdirSync(dir, { recursive: true });
    execFileSync(bin, ['convert', '--llama2c', join(stories, 'stories260K.bin'),
      '--tokenizer', join(stories, 'tok512.bin'), '-o', join(dir, 'small.gguf')], { stdio: 'pipe' });
    execFileSync(bin, ['synth', '--preset', 'tiny', '--seed', '7', '-o', join(dir, 'large.gguf')],
      { stdio: 'pipe' });
    const data = spamExamples(mail, N_EXAMPLES);
    const labels = data.trim().split('\n').map((l) => JSON.parse(l).label);
    assert.ok(labels.includes('spam') && labels.includes('ham'), 'both classes in the sample');
    writeFileSync(join(dir, 'mail.jsonl'), data);
    writeFileSync(join(dir, 'sluice.yaml'), [
      'models:',
      `  stories: {path: ${join(dir, 'small.gguf')}, slots: 2}`,
      `  synth: {path: ${join(dir, 'large.gguf')}, slots: 2}`,
      'tasks:',
      '  spam:',
      '    kind: classify',
      '    model: stories',
      '    labels: [ham, spam]',
      '    instruction: "Decide whether this email is spam or ham (a normal email)."',
      'backends:',
      '  small: {kind: local, model: stories, infra_per_hour: 0.40}',
      '  large: {kind: local, model: synth, infra_per_hour: 4.0}',
      'routes:',
      '  triage: {policy: cascade, tiers: [small, large], threshold: 0.6, task: spam}',
      '',
    ].join('\n'));
    const html = join(dir, 'eval.html');
    const json = join(dir, 'eval.json');
    const table = execFileSync(bin, ['eval', join(dir, 'sluice.yaml'), '--route', 'triage',
      '--data', join(dir, 'mail.jsonl'), '--out', join(dir, 'run'), '--concurrency', '2',
      '--html', html, '--json', json, '--failures', '8'], { stdio: ['ignore', 'pipe', 'pipe'] }).toString();
    assert.match(table, /Failure modes of 'small': 40 examples/);
    assert.match(table, /\(120 called, 0 resumed\)/);

    // the JSON says the same as the page
    const rep = JSON.parse(readFileSync(json, 'utf8'));
    assert.deepEqual(rep.targets.map((x) => x.name), ['small', 'large', 'route']);
    assert.equal(rep.failures.tier, 'small');
    assert.equal(rep.failures.n, N_EXAMPLES);
    const nTop = Math.min(8, rep.failures.n_wrong);
    assert.equal(rep.failures.top.length, nTop);
    assert.ok(rep.failures.slices.some((s) => s.field === 'group'), 'the group metadata is a slice');

    const page = await browser.newPage();
    const errors = [];
    const outside = [];
    const url = pathToFileURL(html).href;
    page.on('console', (m) => { if (m.type() === 'error') errors.push(m.text()); });
    page.on('pageerror', (e) => errors.push(String(e)));
    page.on('request', (r) => { if (r.url() !== url) outside.push(r.url()); });
    await page.goto(url, { waitUntil: 'load' });

    const charts = await page.$$eval('svg.chart', (svgs) => svgs.map((s) => {
      const r = s.getBoundingClientRect();
      return {
        id: s.id, w: r.width, h: r.height, texts: s.querySelectorAll('text').length,
        marks: s.querySelectorAll('polyline, rect.bar, rect.cell, circle').length,
        // every drawn mark has a box of non-zero size
        empty: [...s.querySelectorAll('polyline, rect.cell')].filter((e) => {
          const b = e.getBBox(); return !(b.width > 0 || b.height > 0);
        }).length,
      };
    }));
    assert.deepEqual(charts.map((c) => c.id).sort(), ['chart-confusion', 'chart-confusion-1',
      'chart-confusion-2', 'chart-frontier', 'chart-latency', 'chart-reliability']);
    for (const c of charts) {
      assert.ok(c.w >= 300 && c.h >= 180, `${c.id} rendered at ${c.w}x${c.h}`);
      assert.ok(c.marks > 0 && c.empty === 0, `${c.id}: ${c.marks} marks, ${c.empty} empty`);
      assert.ok(c.texts >= 3, `${c.id} has labels`);
    }
    assert.equal(await page.locator('#chart-frontier polyline').count(), 1); // the Pareto line
    assert.ok(await page.locator('#chart-frontier circle').count() >= 2, 'threshold points');
    assert.equal(await page.locator('#chart-confusion rect.cell').count(),
      rep.classification.labels.length ** 2);
    assert.equal(await page.locator('#chart-latency rect.bar').count(), 30);
    assert.ok(await page.locator('#chart-reliability rect.bar').count() >= 1, 'reliability bars');
    const heads = await page.locator('#targets th').allTextContents();
    assert.deepEqual(heads, ['metric', 'small', 'large', 'route']);

    // the failure modes: the section, its two tables and the error bars, drawn
    const sec = await page.locator('section#failures').boundingBox();
    assert.ok(sec && sec.width >= 300 && sec.height >= 100, `failures section at ${JSON.stringify(sec)}`);
    assert.equal(await page.locator('#failures-top tr').count(), nTop + 1);
    const slices = await page.locator('#failures-slices tr').count();
    assert.equal(slices, rep.failures.slices.length + 1);
    const bars = await page.locator('#failures-slices .bar').evaluateAll((els) =>
      els.map((e) => e.getBoundingClientRect().width));
    assert.equal(bars.length, rep.failures.slices.length);
    const worst = rep.failures.slices[0];
    assert.ok(worst.error === 0 || bars[0] > 0, 'the worst slice has a visible bar');
    assert.match(await page.locator('section#failures h2').textContent(), /Failure modes of small/);

    assert.deepEqual(errors, []);
    assert.deepEqual(outside, []);
    await page.screenshot({ path: join(out, 'eval_spam.png'), fullPage: true });
    await page.locator('section#failures').screenshot({ path: join(out, 'eval_spam_failures.png') });
    await page.close();
  });
