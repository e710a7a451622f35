// helpers.mjs - start the real `sluice serve` on 127.0.0.1 for the e2e tests.
//
// SLUICE_BIN names the binary (default: ../../build/sluice from this file).
// Each server gets a free port (--port 0 / port: 0) and is killed when the
// test file ends; a test that wants it gone sooner sends SIGTERM itself.
import { spawn, execFileSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { mkdtempSync, writeFileSync, existsSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, dirname, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import net from 'node:net';

const here = dirname(fileURLToPath(import.meta.url));
export const BIN = process.env.SLUICE_BIN || resolve(here, '../../build/sluice');
export const ASSETS = process.env.SLUICE_ASSETS || resolve(here, '../../../shared/assets');

export const sha256 = (s) => createHash('sha256').update(s).digest('hex');

export function workdir() {
  return mkdtempSync(join(tmpdir(), 'sluice-e2e-'));
}

// A tiny random-weight model made by `sluice synth`.
export function tinyModel(dir) {
  const path = join(dir, 'tiny.gguf');
  execFileSync(BIN, ['synth', '--preset', 'tiny', '-o', path], { stdio: 'ignore' });
  return path;
}

// stories260K converted from its llama2.c files, or null without ../shared/assets.
export function storiesModel(dir) {
  const a = join(ASSETS, 'models/stories260K');
  if (!existsSync(join(a, 'stories260K.bin'))) return null;
  const path = join(dir, 'stories260K.gguf');
  execFileSync(BIN, ['convert', '--llama2c', join(a, 'stories260K.bin'), '--tokenizer', join(a, 'tok512.bin'),
    '-o', path], { stdio: 'ignore' });
  return path;
}

// Start `sluice serve ARGS...`; resolves to {proc, port, url, stderr(), stop()}.
export function startServer(args, { timeoutMs = 20000 } = {}) {
  return new Promise((resolvePromise, reject) => {
    const proc = spawn(BIN, ['serve', ...args], { stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '', err = '', done = false;
    const timer = setTimeout(() => fail(new Error(`server did not start: ${err}`)), timeoutMs);
    function fail(e) {
      if (done) return;
      done = true;
      clearTimeout(timer);
      proc.kill('SIGKILL');
      reject(e);
    }
    proc.stderr.on('data', (d) => { err += d; });
    proc.stdout.on('data', (d) => {
      out += d;
      const m = out.match(/listening on http:\/\/([0-9.]+):(\d+)/);
      if (m && !done) {
        done = true;
        clearTimeout(timer);
        const port = Number(m[2]);
        const exited = new Promise((r) => proc.on('exit', (code, sig) => r({ code, sig })));
        resolvePromise({
          proc, port, url: `http://127.0.0.1:${port}`, exited,
          stderr: () => err,
          async stop() {
            if (proc.exitCode === null && proc.signalCode === null) proc.kill('SIGTERM');
            return exited;
          },
        });
      }
    });
    proc.on('exit', (code) => fail(new Error(`server exited with ${code}: ${err}`)));
  });
}

// Raw HTTP over a socket: write `data`, resolve with the whole reply text.
export function rawRequest(port, data, { timeoutMs = 10000 } = {}) {
  return new Promise((resolvePromise, reject) => {
    const s = net.connect(port, '127.0.0.1');
    let reply = '';
    const t = setTimeout(() => { s.destroy(); reject(new Error(`no reply: ${reply.slice(0, 200)}`)); }, timeoutMs);
    s.on('connect', () => s.write(data));
    s.on('data', (d) => { reply += d; });
    s.on('error', () => {}); // the server may close early (413)
    s.on('close', () => { clearTimeout(t); resolvePromise(reply); });
  });
}

export function statusOf(reply) {
  const m = reply.match(/^HTTP\/1\.[01] (\d+)/);
  return m ? Number(m[1]) : 0;
}

export function bodyOf(reply) {
  const i = reply.indexOf('\r\n\r\n');
  return i < 0 ? '' : reply.slice(i + 4);
}

// A random-weight `sluice synth` model with its own seed (a second, different
// model for the router tests' "large" server).
export function synthModel(dir, name, seed) {
  const path = join(dir, `${name}.gguf`);
  execFileSync(BIN, ['synth', '--preset', 'tiny', '--seed', String(seed), '-o', path], { stdio: 'ignore' });
  return path;
}

// The scripted upstream program (tests/support/fake_upstream_main.c), built
// next to the tests: SLUICE_FAKE_UPSTREAM, else BUILD/tests/ beside BIN.
export const FAKE_UPSTREAM = process.env.SLUICE_FAKE_UPSTREAM || join(dirname(BIN), 'tests', 'sluice-fake-upstream');

// Start the fake upstream on a case file; resolves to {port, url, stop()}.
// Every request it receives is appended to `record` as a JSON line.
export function startFakeUpstream(caseFile, record) {
  return new Promise((resolvePromise, reject) => {
    const args = [caseFile, '--max-seconds', '600'];
    if (record) args.push('--record', record);
    const proc = spawn(FAKE_UPSTREAM, args, { stdio: ['pipe', 'pipe', 'pipe'] });
    let out = '', err = '', done = false;
    const timer = setTimeout(() => { if (!done) { done = true; proc.kill('SIGKILL'); reject(new Error(`fake upstream did not start: ${err}`)); } }, 10000);
    proc.stderr.on('data', (d) => { err += d; });
    proc.on('error', (e) => { if (!done) { done = true; clearTimeout(timer); reject(e); } });
    proc.stdout.on('data', (d) => {
      out += d;
      const m = out.match(/port (\d+)/);
      if (m && !done) {
        done = true;
        clearTimeout(timer);
        const exited = new Promise((r) => proc.on('exit', (code, sig) => r({ code, sig })));
        resolvePromise({
          proc, port: Number(m[1]), url: `http://127.0.0.1:${m[1]}/v1`,
          async stop() { proc.stdin.end(); if (proc.exitCode === null) proc.kill('SIGTERM'); return exited; },
        });
      }
    });
  });
}

// A TCP port nothing listens on (bound, then closed).
export function closedPort() {
  return new Promise((resolvePromise) => {
    const s = net.createServer();
    s.listen(0, '127.0.0.1', () => { const { port } = s.address(); s.close(() => resolvePromise(port)); });
  });
}

// Rows of a SQLite query, through the sqlite3 command-line shell.
export function sqlite(db, sql) {
  const out = execFileSync('sqlite3', ['-json', db, sql], { encoding: 'utf8' });
  return out.trim() ? JSON.parse(out) : [];
}
