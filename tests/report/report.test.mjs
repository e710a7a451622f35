// Renders sluice's self-contained HTML evaluation reports in Debian's
// Chromium (headless, driven by playwright-core) and checks that every SVG
// chart is drawn, nothing is fetched from outside the file, and no console
// error appears. Screenshots go to $SLUICE_REPORT_OUT for a human to look at.
//
// Environment (set by tests/CMakeLists.txt):
//   SLUICE_BIN          the sluice binary
//   SLUICE_TEST_REPORT  the test_report binary (writes a report with every chart)
//   SLUICE_ASSETS       ../shared/assets (the RouteLLM replay is skipped without it)
//   SLUICE_REPORT_OUT   directory for the HTML files and screenshots
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { chromium } from 'playwright-core';

const out = process.env.SLUICE_REPORT_OUT || mkdtempSync(join(tmpdir(), 'sluice-report-'));
const chromiumPath = process.env.SLUICE_CHROMIUM || '/usr/bin/chromium';
mkdirSync(out, { recursive: true });

let browser;
let profile;

before(async () => {
  profile = mkdtempSync(join(tmpdir(), 'sluice-chromium-'));
  // launchPersistentContext takes the fresh --user-data-dir itself.
  browser = await chromium.launchPersistentContext(profile, {
    executablePath: chromiumPath,
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

// Opens file in a new page; returns { page, errors, outside } where outside
// lists every request that was not the file itself.
async function open(file) {
  const page = await browser.newPage();
  const errors = [];
  const outside = [];
  page.on('console', (m) => { if (m.type() === 'error') errors.push(m.text()); });
  page.on('pageerror', (e) => errors.push(String(e)));
  const url = pathToFileURL(file).href;
  page.on('request', (r) => { if (r.url() !== url) outside.push(r.url()); });
  await page.goto(url, { waitUntil: 'load' });
  return { page, errors, outside };
}

// Each chart: present, drawn at a real size, and with its marks.
async function chartStats(page) {
  return page.$$eval('svg.chart', (svgs) => svgs.map((s) => {
    const r = s.getBoundingClientRect();
    return {
      id: s.id, w: r.width, h: r.height,
      polylines: s.querySelectorAll('polyline').length,
      rects: s.querySelectorAll('rect').length,
      circles: s.querySelectorAll('circle').length,
      texts: s.querySelectorAll('text').length,
      // a drawn polyline has a non-empty bounding box
      drawn: [...s.querySelectorAll('polyline')].every((p) => {
        const b = p.getBBox(); return b.width > 0 || b.height > 0;
      }),
    };
  }));
}

test('the full report draws all five charts offline without errors', async () => {
  const bin = process.env.SLUICE_TEST_REPORT;
  assert.ok(bin && existsSync(bin), 'SLUICE_TEST_REPORT must point at the test_report binary');
  execFileSync(bin, [out], { stdio: 'pipe' });
  const file = join(out, 'report_full.html');
  const { page, errors, outside } = await open(file);
  const charts = await chartStats(page);
  const byId = Object.fromEntries(charts.map((c) => [c.id, c]));
  assert.deepEqual(Object.keys(byId).sort(),
    ['chart-confusion', 'chart-frontier', 'chart-latency', 'chart-reliability', 'chart-router']);
  for (const c of charts) {
    assert.ok(c.w >= 300 && c.h >= 180, `${c.id} rendered at ${c.w}x${c.h}`);
    assert.ok(c.drawn, `${c.id} has an empty polyline`);
    assert.ok(c.texts >= 3, `${c.id} has axis labels`);
  }
  assert.equal(byId['chart-router'].polylines, 2); // lr + random
  assert.equal(byId['chart-frontier'].polylines, 1); // the Pareto frontier
  assert.ok(byId['chart-frontier'].circles > 50, 'threshold points drawn');
  assert.equal(await page.locator('#chart-confusion rect.cell').count(), 9);
  assert.ok(byId['chart-reliability'].rects >= 5, 'reliability bars');
  assert.equal(await page.locator('#chart-latency rect.bar').count(), 30);
  assert.equal(await page.locator('#routers tr').count(), 3);
  assert.match(await page.title(), /synthetic <evaluation> & report/);
  assert.deepEqual(errors, []);
  assert.deepEqual(outside, []);
  await page.screenshot({ path: join(out, 'report_full.png'), fullPage: true });
  await page.close();
});

test('sluice replay on RouteLLM MMLU renders its report', async (t) => {
  const assets = process.env.SLUICE_ASSETS;
  const data = assets && join(assets, 'datasets/routellm/mmlu_responses');
  if (!data || !existsSync(data)) {
    t.skip('../shared/assets/datasets/routellm absent');
    return;
  }
  const file = join(out, 'replay_mmlu.html');
  execFileSync(process.env.SLUICE_BIN, ['replay', '--data', data, '--html', file], { stdio: 'pipe' });
  const { page, errors, outside } = await open(file);
  const charts = await chartStats(page);
  assert.deepEqual(charts.map((c) => c.id).sort(),
    ['chart-confusion', 'chart-frontier', 'chart-reliability', 'chart-router']);
  for (const c of charts) assert.ok(c.w >= 300 && c.h >= 180 && c.drawn, `${c.id} drawn`);
  assert.equal(await page.locator('#chart-router polyline').count(), 3); // lr, random, oracle
  assert.equal(await page.locator('#chart-confusion rect.cell').count(), 4);
  const rows = await page.locator('#routers td:first-child').allTextContents();
  assert.deepEqual(rows, ['lr', 'random', 'oracle']);
  assert.deepEqual(errors, []);
  assert.deepEqual(outside, []);
  await page.screenshot({ path: join(out, 'replay_mmlu.png'), fullPage: true });
  await page.close();
});
