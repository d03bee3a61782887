// Browser tests of examples/saga over gRPC-Web: the page follows a saga
// through the server-streaming fanout.v1.SubscribeService/Subscribe with
// @connectrpc/connect-web, served by the example's own HTTP port (no Envoy).
// It gets the saga's state first, then every step in order; after a network
// cut or a server restart it resumes from its last position with nothing
// lost or repeated; the server ends the stream at the saga's end; refused
// requests show their gRPC status.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';

import {
  buildExample,
  checkSagaLog,
  freePort,
  launchBrowser,
  newPage,
  postJSON,
  redisAddr,
  sagaCard,
  sagaFinalSteps,
  sagaSteps,
  screenshot,
  startProxy,
  startServer,
  tokenURLs,
  watchURLs,
} from '../lib.js';

const WAIT = { timeout: 30000 };
const SUBSCRIBE = '/fanout.v1.SubscribeService/Subscribe';

let binary;
let browser;

before(async () => {
  binary = await buildExample('saga');
  browser = await launchBrowser();
});

after(async () => {
  await browser?.close();
});

// saga starts the example on port (a free one by default) with extra args.
async function saga(t, logName, { port, latency = '250ms', args = [] } = {}) {
  port ??= await freePort();
  const grpcPort = await freePort();
  const srv = await startServer(
    binary,
    ['-addr', `127.0.0.1:${port}`, '-grpc-addr', `127.0.0.1:${grpcPort}`, '-latency', latency, '-drain', '5s', ...args],
    { logName },
  );
  t.after(() => srv.stop('SIGKILL'));
  srv.port = port;
  srv.url = `http://127.0.0.1:${port}`;
  return srv;
}

// watchSubscribes records the page's gRPC-Web Subscribe calls: each has
// the response's content type and grpc-status header (set on a refusal,
// which has no body), and an ended promise that resolves with 'finished'
// when the server ended the response, 'failed' when it broke.
function watchSubscribes(page) {
  const calls = [];
  const byRequest = new Map();
  page.on('request', (r) => {
    if (new URL(r.url()).pathname !== SUBSCRIBE) return;
    const c = { request: r };
    c.ended = new Promise((resolve) => {
      c.end = resolve;
    });
    calls.push(c);
    byRequest.set(r, c);
  });
  page.on('response', async (res) => {
    const c = byRequest.get(res.request());
    if (!c) return;
    const h = await res.allHeaders().catch(() => ({}));
    c.contentType = h['content-type'];
    c.grpcStatus = h['grpc-status'];
    c.grpcMessage = h['grpc-message'];
  });
  page.on('requestfinished', (r) => byRequest.get(r)?.end('finished'));
  page.on('requestfailed', (r) => byRequest.get(r)?.end('failed'));
  return calls;
}

async function ended(call) {
  let timer;
  const timeout = new Promise((_, reject) => {
    timer = setTimeout(() => reject(new Error('the Subscribe call is still open')), WAIT.timeout);
  });
  try {
    return await Promise.race([call.ended, timeout]);
  } finally {
    clearTimeout(timer);
  }
}

// book starts a booking from the page's form, over gRPC-Web, and returns
// its card's tx.
async function book(page, fail) {
  const before = await page.$$eval('.booking', (els) => els.map((e) => e.dataset.tx));
  await page.selectOption('select[name=fail]', fail);
  await page.selectOption('select[name=transport]', 'grpc-web');
  await page.click('button[type=submit]');
  const handle = await page.waitForFunction(
    (before) => [...document.querySelectorAll('.booking')].map((e) => e.dataset.tx).find((tx) => !before.includes(tx)),
    before,
    WAIT,
  );
  return handle.jsonValue();
}

// waitForEnd waits until the card says its stream closed after the saga's
// end.
async function waitForEnd(page, tx) {
  try {
    await page.waitForSelector(`.booking[data-tx="${tx}"][data-stream="ended"]`, WAIT);
  } catch (err) {
    assert.fail(`booking ${tx} did not end: ${err.message}\n${JSON.stringify(await sagaCard(page, tx), null, 1)}`);
  }
  return sagaCard(page, tx);
}

// waitForLive waits until the card shows n live updates.
async function waitForLive(page, tx, n) {
  await page.waitForFunction(
    ({ tx, n }) => document.querySelectorAll(`.booking[data-tx="${tx}"] .log li[data-how="live"]`).length >= n,
    { tx, n },
    WAIT,
  );
}

// follows waits until another page, on url, has followed booking tx over
// SSE to its end: the saga has ended on the servers.
async function followToEnd(t, url, tx, token) {
  const page = await newPage(browser, t);
  await page.goto(`${url}/?tx=${tx}${token ? `#token=${encodeURIComponent(token)}` : ''}`);
  return waitForEnd(page, tx);
}

function assertNoPageErrors(page, allowed = []) {
  const problems = page.problems.filter((p) => !allowed.some((re) => re.test(p)));
  assert.deepEqual(problems, [], 'page errors');
}

// The browser logs a failed fetch (a cut, a refused connection) as a
// console error; those are expected while the server is away.
const networkErrors = [/Failed to load resource/, /ERR_CONNECTION|ERR_EMPTY_RESPONSE|ERR_INCOMPLETE_CHUNKED|net::/];

test('gRPC-Web: the page follows a completed and a compensated booking to their end', async (t) => {
  const srv = await saga(t, 'saga-grpcweb');
  const page = await newPage(browser, t);
  const calls = watchSubscribes(page);
  await page.goto(srv.url + '/');

  const ok = await book(page, '');
  const okCard = await waitForEnd(page, ok);
  assert.equal(okCard.state, 'completed');
  assert.deepEqual(okCard.steps, sagaFinalSteps(''));
  assert.deepEqual(okCard.stepOrder, sagaSteps);
  assert.ok(checkSagaLog(assert, okCard, '').live >= 3, 'the saga ran live');

  const failed = await book(page, 'hotel');
  const c = await waitForEnd(page, failed);
  assert.equal(c.state, 'compensated');
  assert.equal(c.outcome, 'compensated');
  assert.deepEqual(c.steps, { flight: 'compensated', hotel: 'failed', car: 'skipped' });
  checkSagaLog(assert, c, 'hotel');
  const texts = c.log.map((l) => l.text);
  const at = (s) => texts.findIndex((x) => x.includes(` ${s}`));
  assert.ok(at('hotel failed') < at('flight compensating') && at('flight compensating') < at('flight compensated'),
    `compensation after the failure, in order: ${texts.join(' | ')}`);
  for (const card of [okCard, c]) {
    assert.equal(card.closedBy, 'server', 'the server ended the stream');
    assert.match(card.conn, /the server closed the stream/);
  }

  // One Subscribe call per booking, over gRPC-Web, each ended by the
  // server after the final update (the page neither cancelled nor
  // reconnected it).
  assert.equal(calls.length, 2, 'Subscribe calls');
  for (const call of calls) {
    assert.equal(await ended(call), 'finished');
    assert.match(call.contentType, /^application\/grpc-web\+proto/);
    assert.equal(call.request.headers()['x-grpc-web'], '1');
  }
  await screenshot(page, 'saga-grpcweb');
  assertNoPageErrors(page);
});

test('gRPC-Web: a page opened after the end gets the final state, and the server ends the stream', async (t) => {
  const srv = await saga(t, 'saga-grpcweb-late', { latency: '0s' });
  const res = await postJSON(`${srv.url}/bookings`, { fail: 'flight' });
  assert.equal(res.status, 202, JSON.stringify(res.body));
  const { tx } = res.body;
  await followToEnd(t, srv.url, tx);

  const page = await newPage(browser, t);
  const calls = watchSubscribes(page);
  await page.goto(`${srv.url}/?tx=${tx}&transport=grpc-web`);
  const c = await waitForEnd(page, tx);
  assert.equal(c.state, 'compensated');
  assert.deepEqual(c.steps, sagaFinalSteps('flight'));
  assert.deepEqual(c.stepOrder, sagaSteps);
  const { live } = checkSagaLog(assert, c, 'flight');
  assert.equal(live, 0, 'everything came in the snapshot');
  assert.equal(c.closedBy, 'server');
  assert.equal(calls.length, 1);
  assert.equal(await ended(calls[0]), 'finished', 'the server ended the stream right after the snapshot');
  await screenshot(page, 'saga-grpcweb-late');
  assertNoPageErrors(page);
});

test('gRPC-Web: a network cut mid-saga is resumed without loss or repeat', async (t) => {
  const srv = await saga(t, 'saga-grpcweb-cut', { latency: '400ms' });
  const proxy = await startProxy(srv.port);
  t.after(() => proxy.close());
  const page = await newPage(browser, t);
  const calls = watchSubscribes(page);
  await page.goto(`http://127.0.0.1:${proxy.port}/`);
  const tx = await book(page, 'car');
  await waitForLive(page, tx, 2);

  proxy.cut();
  await page.waitForSelector(`.booking[data-tx="${tx}"][data-stream="reconnecting"]`, WAIT);
  // While the page is cut off, the saga runs to its end.
  await followToEnd(t, srv.url, tx);
  await screenshot(page, 'saga-grpcweb-cut-down');
  proxy.restore();

  const c = await waitForEnd(page, tx);
  assert.equal(c.state, 'compensated');
  assert.deepEqual(c.steps, sagaFinalSteps('car'));
  const { live } = checkSagaLog(assert, c, 'car'); // one snapshot, then every update once, in order
  assert.ok(live >= 8, `saw ${live} updates after the snapshot`);
  assert.equal(c.closedBy, 'server');
  assert.ok(calls.length >= 2, `the page subscribed again (${calls.length} calls)`);
  // The last call resumed after the cut and was ended by the server.
  assert.equal(await ended(calls.at(-1)), 'finished');
  await screenshot(page, 'saga-grpcweb-cut');
  assertNoPageErrors(page, networkErrors);
});

test('gRPC-Web: a server restart mid-saga is resumed without loss or repeat', async (t) => {
  // Two replicas on one Redis: the saga runs on B; the page follows it
  // through A, which restarts in the middle.
  const args = ['-redis', redisAddr];
  const a = await saga(t, 'saga-grpcweb-restart-a1', { latency: '3s', args });
  const b = await saga(t, 'saga-grpcweb-restart-b', { latency: '3s', args });
  const res = await postJSON(`${b.url}/bookings`, { fail: 'hotel' });
  assert.equal(res.status, 202, JSON.stringify(res.body));
  const { tx } = res.body;

  const page = await newPage(browser, t);
  const calls = watchSubscribes(page);
  await page.goto(`${a.url}/?tx=${tx}&transport=grpc-web`);
  await waitForLive(page, tx, 1);

  const { code } = await a.stop('SIGTERM'); // drains: the page is told to reconnect
  assert.equal(code, 0, `A exited with ${code}:\n${a.log}`);
  try {
    await page.waitForSelector(`.booking[data-tx="${tx}"][data-stream="reconnecting"]`, WAIT);
  } catch (err) {
    assert.fail(`${err.message}\n${JSON.stringify(await sagaCard(page, tx), null, 1)}\n${page.problems.join('\n')}`);
  }
  await followToEnd(t, b.url, tx); // the saga ends on B while A is down
  await screenshot(page, 'saga-grpcweb-restart-down');
  await saga(t, 'saga-grpcweb-restart-a2', { port: a.port, latency: '3s', args });

  const c = await waitForEnd(page, tx);
  assert.equal(c.state, 'compensated');
  assert.deepEqual(c.steps, sagaFinalSteps('hotel'));
  checkSagaLog(assert, c, 'hotel');
  assert.equal(c.closedBy, 'server');
  assert.ok(calls.length >= 2, `the page subscribed again (${calls.length} calls)`);
  await screenshot(page, 'saga-grpcweb-restart');
  assertNoPageErrors(page, networkErrors);
});

test('gRPC-Web: unauthenticated and forbidden requests are refused with their gRPC status', async (t) => {
  const srv = await saga(t, 'saga-grpcweb-auth', { latency: '0s', args: ['-secret', 'e2e-secret'] });
  const mine = await postJSON(`${srv.url}/bookings`, {});
  const other = await postJSON(`${srv.url}/bookings`, {});
  assert.equal(mine.status, 202);
  assert.ok(mine.body.token && other.body.token, 'bookings come with tokens');
  const { tx, token } = mine.body;

  for (const c of [
    { name: 'no token', query: '', status: '16', code: 'unauthenticated' },
    { name: 'a forged token', query: `#token=${tx}.forged`, status: '16', code: 'unauthenticated' },
    { name: "another booking's token", query: `#token=${encodeURIComponent(other.body.token)}`, status: '7', code: 'permission_denied' },
  ]) {
    const page = await newPage(browser, t);
    const calls = watchSubscribes(page);
    await page.goto(`${srv.url}/?tx=${tx}&transport=grpc-web${c.query}`);
    await page.waitForSelector(`.booking[data-tx="${tx}"][data-stream="refused"]`, WAIT);
    const card = await sagaCard(page, tx);
    assert.equal(card.error, c.code, `${c.name}: ${card.conn}`);
    assert.match(card.conn, new RegExp(`^error: ${c.code} `));
    assert.equal(card.log.length, 0, `${c.name}: nothing shown`);
    assert.equal(calls.length, 1, `${c.name}: one call, not retried`);
    await ended(calls[0]);
    assert.equal(calls[0].grpcStatus, c.status, `${c.name}: grpc-status`);
    await screenshot(page, `saga-grpcweb-refused-${c.code}`);
    assertNoPageErrors(page);
  }

  // The booking's own token, in the link's fragment (which the browser
  // never sends), follows it (the Authorization header of the gRPC-Web
  // request), to the end; no URL the page requests carries it.
  const page = await newPage(browser, t);
  const calls = watchSubscribes(page);
  const urls = watchURLs(page);
  urls.tokens.push(token);
  await page.goto(`${srv.url}/?tx=${tx}&transport=grpc-web#token=${encodeURIComponent(token)}`);
  const card = await waitForEnd(page, tx);
  assert.equal(card.state, 'completed');
  assert.equal(calls[0].request.headers().authorization, `Bearer ${token}`);
  assert.deepEqual(tokenURLs(urls), [], 'no URL carries a token');
  assertNoPageErrors(page);
});
