// reference-table.mjs - the markdown table of bench/reference.sh: sluice's
// `sluice bench --json` results beside llama.cpp's reference figures.
//   node bench/reference-table.mjs llamacpp-reference.md RESULT.json...
import { readFileSync } from 'node:fs';
import { basename } from 'node:path';

const [refPath, ...files] = process.argv.slice(2);
const shapes = { smollm2: 'smollm2-135m', qwen: 'qwen2.5-0.5b', tinyllama: 'tinyllama-1.1b' };
const ref = new Map(); // "shape type thr" -> {pp64, pp512, tg128}
for (const line of readFileSync(refPath, 'utf8').split('\n')) {
  const c = line.split('|').map((s) => s.trim());
  if (c.length < 9 || !Object.values(shapes).includes(c[1])) continue;
  const num = (s) => Number((/\*\*([\d.]+)\*\*/.exec(s) || [])[1]);
  ref.set(`${c[1]} ${c[2]} ${c[4]}`, { pp64: num(c[5]), pp512: num(c[6]), tg128: num(c[7]) });
}
const fmt = (x, d = 1) => (Number.isFinite(x) ? x.toFixed(d) : '–');
console.log('| shape | type | thr | pp64 | ×llama | pp512 | ×llama | tg128 | ×llama | of bandwidth | GB/s | peak RSS − file − KV (MiB) |');
console.log('|---|---|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|');
for (const f of files) {
  const [shapeKey, ...t] = basename(f, '.json').split('-');
  const type = t.join('-'), shape = shapes[shapeKey];
  const j = JSON.parse(readFileSync(f, 'utf8'));
  const other = (j.peak_rss_bytes - j.file_bytes - j.kv_touched_bytes) / 2 ** 20;
  for (const thr of [1, 2]) {
    const r = (test) => j.results.find((x) => x.test === test && x.threads === thr) || {};
    const R = ref.get(`${shape} ${type} ${thr}`) || {};
    const pp64 = r('pp64'), pp512 = r('pp512'), tg = r('tg128');
    console.log(`| ${shape} | ${type} | ${thr} | ${fmt(pp64.tokens_per_s)} | ${fmt(pp64.tokens_per_s / R.pp64, 2)}× | ` +
      `${fmt(pp512.tokens_per_s)} | ${fmt(pp512.tokens_per_s / R.pp512, 2)}× | ${fmt(tg.tokens_per_s)} | ` +
      `${fmt(tg.tokens_per_s / R.tg128, 2)}× | ${fmt(100 * tg.fraction_of_bandwidth, 0)}% | ${fmt(tg.bandwidth_gbs)} | ${fmt(other)} |`);
  }
}
