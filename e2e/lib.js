// Helpers shared by the browser tests: build and run an example server, a
// headless Chromium, a TCP proxy that can cut connections, screenshots.
import { spawn, execFile } from 'node:child_process';
import fs from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';

import { chromium } from 'playwright-core';

export const repoRoot = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
export const artifactsDir = process.env.FANOUT_E2E_ARTIFACTS || path.join(repoRoot, 'test-artifacts', 'e2e');
fs.mkdirSync(artifactsDir, { recursive: true });

/** The Chromium binary: $CHROMIUM, or Debian's. Never a downloaded one. */
export const chromiumPath = process.env.CHROMIUM || '/usr/bin/chromium';

const chromiumArgs = [
  '--headless',
  '--no-sandbox',
  '--disable-gpu',
  '--disable-quic',
  '--no-first-run',
  '--disable-background-networking',
  '--disable-component-update',
  '--disable-sync',
];

/**
 * launchBrowser starts headless Chromium (Playwright gives it a fresh
 * temporary user-data-dir) and returns it; close it when done.
 */
export async function launchBrowser() {
  return chromium.launch({ executablePath: chromiumPath, headless: true, args: chromiumArgs });
}

/**
 * newPage opens a page in a fresh browser context. Console errors and page
 * errors are collected in page.problems, and logged with the test's name.
 */
export async function newPage(browser, t) {
  const context = await browser.newContext({ viewport: { width: 1100, height: 720 } });
  const page = await context.newPage();
  page.problems = [];
  page.on('pageerror', (err) => page.problems.push(`pageerror: ${err.message}`));
  page.on('console', (msg) => {
    if (msg.type() === 'error') page.problems.push(`console: ${msg.text()}`);
  });
  t.after(() => context.close());
  return page;
}

/**
 * watchURLs records every URL a page requests (HTTP requests and WebSocket
 * handshakes) in the array it returns, and every token that the page's
 * GET /token answers in urls.tokens (the page's user token). More tokens
 * to look for (a booking's) may be pushed there. noTokenIn(urls) returns
 * the URLs that carry one of them.
 */
export function watchURLs(page) {
  const urls = [];
  urls.tokens = [];
  page.on('request', (r) => urls.push(r.url()));
  page.on('websocket', (ws) => urls.push(ws.url()));
  page.on('response', async (res) => {
    if (new URL(res.url()).pathname !== '/token') return;
    const body = await res.json().catch(() => null);
    if (body?.token) urls.tokens.push(body.token);
  });
  return urls;
}

/** tokenURLs returns the URLs of watchURLs that carry a token or its signature. */
export function tokenURLs(urls) {
  const parts = urls.tokens.flatMap((t) => [t, encodeURIComponent(t), t.split('.').pop()]);
  return urls.filter((u) => parts.some((p) => u.includes(p)));
}

/** screenshot saves the page as <artifacts>/<name>.png. */
export async function screenshot(page, name) {
  const file = path.join(artifactsDir, `${name}.png`);
  await page.screenshot({ path: file, fullPage: true });
  return file;
}

const built = new Map();

/** buildExample compiles ./examples/<name> once per run and returns the binary's path. */
export function buildExample(name) {
  if (!built.has(name)) {
    const out = path.join(artifactsDir, 'bin', name);
    built.set(
      name,
      promisify(execFile)('go', ['build', '-o', out, `./examples/${name}`], { cwd: repoRoot }).then(
        () => out,
        (err) => {
          throw new Error(`go build ./examples/${name}: ${err.stderr || err.message}`);
        },
      ),
    );
  }
  return built.get(name);
}

/** freePort returns a loopback TCP port that was free a moment ago. */
export async function freePort() {
  const srv = net.createServer();
  await new Promise((resolve, reject) => {
    srv.once('error', reject);
    srv.listen(0, '127.0.0.1', resolve);
  });
  const { port } = srv.address();
  await new Promise((resolve) => srv.close(resolve));
  return port;
}

/**
 * startServer runs binary with args and waits until it logs that it
 * listens. The returned object has url, stop(signal) (resolves when the
 * process has exited) and log (its output so far, also written to
 * <artifacts>/<logName>.log).
 */
export async function startServer(binary, args, { logName, readyPattern = /msg=listening/, timeoutMs = 20000 } = {}) {
  const child = spawn(binary, args, { stdio: ['ignore', 'pipe', 'pipe'] });
  const logFile = logName ? fs.createWriteStream(path.join(artifactsDir, `${logName}.log`), { flags: 'w' }) : null;
  const server = { child, log: '', exited: null };
  server.exited = new Promise((resolve) => child.once('exit', (code, signal) => resolve({ code, signal })));
  const ready = new Promise((resolve, reject) => {
    const onData = (chunk) => {
      const s = chunk.toString();
      server.log += s;
      if (logFile) logFile.write(s);
      if (readyPattern.test(server.log)) resolve();
    };
    child.stdout.on('data', onData);
    child.stderr.on('data', onData);
    child.once('error', reject);
    server.exited.then(({ code, signal }) =>
      reject(new Error(`${path.basename(binary)} exited (code ${code}, signal ${signal}) before it was ready:\n${server.log}`)),
    );
  });
  server.stop = async (signal = 'SIGTERM') => {
    if (child.exitCode === null && child.signalCode === null) child.kill(signal);
    const res = await server.exited;
    if (logFile) await new Promise((r) => logFile.end(r));
    return res;
  };
  let timer;
  const timeout = new Promise((_, reject) => {
    timer = setTimeout(() => reject(new Error(`${path.basename(binary)} not ready after ${timeoutMs} ms:\n${server.log}`)), timeoutMs);
  });
  try {
    await Promise.race([ready, timeout]);
  } catch (err) {
    await server.stop('SIGKILL');
    throw err;
  } finally {
    clearTimeout(timer);
  }
  return server;
}

/**
 * startProxy forwards loopback TCP connections from a free port to target.
 * cut() destroys every open connection and refuses new ones (accepts and
 * drops them at once) until restore(): a network outage that the server
 * does not see coming.
 */
export async function startProxy(targetPort) {
  const conns = new Set();
  let down = false;
  const srv = net.createServer((client) => {
    if (down) {
      client.destroy();
      return;
    }
    const upstream = net.connect(targetPort, '127.0.0.1');
    const pair = { client, upstream };
    conns.add(pair);
    const drop = () => {
      conns.delete(pair);
      client.destroy();
      upstream.destroy();
    };
    client.on('error', drop).on('close', drop);
    upstream.on('error', drop).on('close', drop);
    client.pipe(upstream);
    upstream.pipe(client);
  });
  await new Promise((resolve, reject) => {
    srv.once('error', reject);
    srv.listen(0, '127.0.0.1', resolve);
  });
  return {
    port: srv.address().port,
    get connections() {
      return conns.size;
    },
    cut() {
      down = true;
      for (const { client, upstream } of conns) {
        client.destroy();
        upstream.destroy();
      }
      conns.clear();
    },
    restore() {
      down = false;
    },
    close() {
      this.cut();
      return new Promise((resolve) => srv.close(resolve));
    },
  };
}

/** postJSON posts body (an object or a string) and returns {status, body}. */
export async function postJSON(url, body, headers = {}) {
  const res = await fetch(url, {
    method: 'POST',
    headers: { 'Content-Type': 'application/json', ...headers },
    body: typeof body === 'string' ? body : JSON.stringify(body),
  });
  const text = await res.text();
  let parsed;
  try {
    parsed = JSON.parse(text);
  } catch {
    parsed = text;
  }
  return { status: res.status, body: parsed };
}

/** tmpDir makes a temporary directory removed after the test. */
export function tmpDir(t) {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'fanout-e2e-'));
  t.after(() => fs.rmSync(dir, { recursive: true, force: true }));
  return dir;
}

// ---- The saga example (examples/saga) ----

/** sagaSteps are the saga example's steps, in order. */
export const sagaSteps = ['flight', 'hotel', 'car'];

/**
 * sagaTranscript is every update a saga that fails at step fail (or '')
 * publishes, in order, as "step status".
 */
export function sagaTranscript(fail) {
  const t = ['flight pending', 'hotel pending', 'car pending', 'saga running'];
  const done = [];
  for (const [i, s] of sagaSteps.entries()) {
    t.push(`${s} booking`);
    if (s === fail) {
      t.push(`${s} failed`);
      for (const later of sagaSteps.slice(i + 1)) t.push(`${later} skipped`);
      for (const d of done.reverse()) t.push(`${d} compensating`, `${d} compensated`);
      t.push('saga compensated');
      return t;
    }
    t.push(`${s} confirmed`);
    done.push(s);
  }
  t.push('saga completed');
  return t;
}

/** sagaFinalSteps is what the saga page's step list shows at the end. */
export function sagaFinalSteps(fail) {
  const want = {};
  const failedAt = sagaSteps.indexOf(fail);
  for (const [i, s] of sagaSteps.entries()) {
    if (failedAt < 0) want[s] = 'confirmed';
    else if (i < failedAt) want[s] = 'compensated';
    else if (i === failedAt) want[s] = 'failed';
    else want[s] = 'skipped';
  }
  return want;
}

/** sagaCard reads what a booking's card on the saga page shows. */
export function sagaCard(page, tx) {
  return page.$eval(`.booking[data-tx="${tx}"]`, (el) => ({
    state: el.dataset.state,
    stream: el.dataset.stream,
    closedBy: el.dataset.closedBy,
    delivery: el.dataset.delivery,
    viewers: el.querySelector('.viewers')?.textContent,
    error: el.dataset.error,
    outcome: el.querySelector('.outcome').textContent,
    conn: el.querySelector('.conn').textContent,
    steps: Object.fromEntries([...el.querySelectorAll('.steps li')].map((li) => [li.dataset.step, li.dataset.status])),
    stepOrder: [...el.querySelectorAll('.steps li')].map((li) => li.dataset.step),
    log: [...el.querySelectorAll('.log li')].map((li) => ({
      seq: Number(li.dataset.seq),
      how: li.dataset.how,
      text: li.textContent,
    })),
  }));
}

/**
 * checkSagaLog checks a card's update log against the saga's transcript
 * (assert is node:assert/strict): the snapshot's entries come first and
 * hold the latest state of each key up to the snapshot's position (its
 * highest seq, as every update has a key), and the live entries are every
 * later update, once each, in order. It returns {pos, live}.
 */
export function checkSagaLog(assert, c, fail) {
  const want = sagaTranscript(fail);
  const snap = c.log.filter((l) => l.how === 'snapshot');
  const live = c.log.filter((l) => l.how === 'live');
  assert.equal(snap.length + live.length, c.log.length, 'every log entry is a snapshot or a live update');
  assert.ok(snap.length > 0, 'the log starts with a snapshot');
  assert.deepEqual(c.log.slice(0, snap.length), snap, 'the snapshot comes first');
  const pos = Math.max(...snap.map((l) => l.seq));
  const latest = {};
  want.slice(0, pos).forEach((w, i) => {
    latest[w.split(' ')[0]] = { seq: i + 1, text: w };
  });
  assert.deepEqual(
    Object.fromEntries(snap.map((l) => [l.text.split(' ')[1], { seq: l.seq, text: l.text.split(' ').slice(1, 3).join(' ') }])),
    latest,
    'snapshot',
  );
  assert.deepEqual(live.map((l) => l.seq), want.slice(pos).map((_, i) => pos + i + 1), 'live seqs');
  assert.deepEqual(live.map((l) => l.text.split(' ').slice(1, 3).join(' ')), want.slice(pos), 'live updates');
  return { pos, live: live.length };
}

/** redisAddr is the Redis the tests share: $FANOUT_REDIS_ADDR or 127.0.0.1:6379. */
export const redisAddr = process.env.FANOUT_REDIS_ADDR || '127.0.0.1:6379';
