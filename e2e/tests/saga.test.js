// Browser tests of examples/saga: the page in headless Chromium against the
// real example binary on loopback ports. The page starts bookings and
// follows each saga (snapshot, then every update in order) until its final
// update; the server then ends the SSE stream. A booking followed over
// WebSocket reaches the user's pages through a server-side subscription
// (the page never names its topic), and no URL the page requests carries
// its token.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';

import {
  buildExample, checkSagaLog, freePort, launchBrowser, newPage, postJSON,
  sagaCard as card, sagaFinalSteps as finalSteps, sagaSteps as STEPS, sagaTranscript as transcript,
  screenshot, startServer, tokenURLs, watchURLs,
} from '../lib.js';

const WAIT = { timeout: 20000 };

let binary;
let browser;

before(async () => {
  binary = await buildExample('saga');
  browser = await launchBrowser();
});

after(async () => {
  await browser?.close();
});

// saga starts the example with a short step latency, so that a page sees
// its sagas run live.
async function saga(t, logName, latency = '250ms') {
  const port = await freePort();
  const grpcPort = await freePort();
  const srv = await startServer(
    binary,
    ['-addr', `127.0.0.1:${port}`, '-grpc-addr', `127.0.0.1:${grpcPort}`, '-latency', latency],
    { logName },
  );
  t.after(() => srv.stop('SIGKILL'));
  srv.url = `http://127.0.0.1:${port}`;
  return srv;
}

// watchStreams records the page's /events and /ws connections; each has
// an ended promise that resolves with how the connection ended: 'finished'
// when the server ended an SSE response, 'failed' when the page closed its
// EventSource first, 'closed' for a WebSocket.
function watchStreams(page) {
  const streams = [];
  const track = (url) => {
    const s = { url };
    s.ended = new Promise((resolve) => {
      s.end = resolve;
    });
    streams.push(s);
    return s;
  };
  const requests = new Map();
  page.on('request', (r) => {
    if (new URL(r.url()).pathname === '/events') requests.set(r, track(r.url()));
  });
  page.on('requestfailed', (r) => requests.get(r)?.end('failed'));
  page.on('requestfinished', (r) => requests.get(r)?.end('finished'));
  page.on('websocket', (ws) => {
    const s = track(ws.url());
    ws.on('close', () => s.end('closed'));
  });
  return streams;
}

// ended waits for a stream to end and returns how it ended.
async function ended(stream) {
  let timer;
  const timeout = new Promise((_, reject) => {
    timer = setTimeout(() => reject(new Error(`${stream.url} is still open`)), WAIT.timeout);
  });
  try {
    return await Promise.race([stream.ended, timeout]);
  } finally {
    clearTimeout(timer);
  }
}

// book starts a booking from the page's form and returns its card's tx.
async function book(page, fail, transport = 'sse') {
  const before = await page.$$eval('.booking', (els) => els.map((e) => e.dataset.tx));
  await page.selectOption('select[name=fail]', fail);
  await page.selectOption('select[name=transport]', transport);
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
    assert.fail(`booking ${tx} did not end: ${err.message}\n${JSON.stringify(await card(page, tx), null, 1)}`);
  }
  return card(page, tx);
}

// checkLog checks a card's update log against the saga's transcript.
const checkLog = (c, fail) => checkSagaLog(assert, c, fail);

function assertNoPageErrors(page) {
  assert.deepEqual(page.problems, [], 'page errors');
}

test('the page follows a booking and a compensated booking to their end over SSE', async (t) => {
  const srv = await saga(t, 'saga-sse');
  const page = await newPage(browser, t);
  const streams = watchStreams(page);
  const urls = watchURLs(page);
  await page.goto(srv.url + '/');

  const ok = await book(page, '');
  const okCard = await waitForEnd(page, ok);
  assert.equal(okCard.state, 'completed');
  assert.equal(okCard.outcome, 'completed');
  assert.deepEqual(okCard.steps, finalSteps(''));
  assert.deepEqual(okCard.stepOrder, STEPS);
  const okLog = checkLog(okCard, '');
  assert.ok(okLog.live >= 3, `saw ${okLog.live} live updates, want the saga to run live`);

  const failed = await book(page, 'hotel');
  const failedCard = await waitForEnd(page, failed);
  assert.equal(failedCard.state, 'compensated');
  assert.deepEqual(failedCard.steps, { flight: 'compensated', hotel: 'failed', car: 'skipped' });
  checkLog(failedCard, 'hotel');
  const texts = failedCard.log.map((l) => l.text);
  const at = (s) => texts.findIndex((x) => x.includes(` ${s} `) || x.endsWith(` ${s}`));
  assert.ok(at('hotel failed') < at('flight compensating') && at('flight compensating') < at('flight compensated'),
    `compensation after the failure, in order: ${texts.join(' | ')}`);
  assert.match(failedCard.conn, /the server closed the stream/);
  for (const c of [okCard, failedCard]) assert.equal(c.closedBy, 'server');

  // Each booking had its own SSE stream, and the server ended both after
  // the final update (the page never closed them, nor reconnected).
  const sse = streams.filter((s) => s.url.includes('/events?'));
  assert.equal(sse.length, 2, `SSE streams: ${sse.map((s) => s.url).join(', ')}`);
  for (const tx of [ok, failed]) {
    const s = sse.find((s) => s.url.includes(`saga.${tx}`));
    assert.ok(s, `a stream for ${tx}`);
    assert.equal(await ended(s), 'finished', `the server ended the stream of ${tx}`);
  }
  assert.ok(urls.tokens.length > 0, 'the page got its user token');
  assert.deepEqual(tokenURLs(urls), [], 'no URL carries the token');
  await screenshot(page, 'saga');
  assertNoPageErrors(page);
});

test('a WebSocket booking reaches the page through a server-side subscription', async (t) => {
  const srv = await saga(t, 'saga-websocket');
  const page = await newPage(browser, t);
  const streams = watchStreams(page);
  const urls = watchURLs(page);
  await page.goto(srv.url + '/');
  const tx = await book(page, 'car', 'websocket');
  const c = await waitForEnd(page, tx);
  assert.equal(c.delivery, 'server', 'the server subscribed the page, which never named the topic');
  assert.equal(c.state, 'compensated');
  assert.deepEqual(c.steps, finalSteps('car'));
  const { live } = checkLog(c, 'car');
  assert.ok(live >= 3, `saw ${live} live updates, want the saga to run live`);
  assert.equal(c.closedBy, 'page', 'the client unsubscribed at the end');
  assert.match(c.conn, /unsubscribed/);
  // The page's one WebSocket carried it, and stays open for the next one.
  const ws = streams.filter((s) => s.url.includes('/ws'));
  assert.equal(ws.length, 1, 'one WebSocket');
  assert.equal(await Promise.race([ws[0].ended, new Promise((r) => setTimeout(() => r('open'), 300))]), 'open');
  const second = await book(page, '', 'websocket');
  assert.equal((await waitForEnd(page, second)).state, 'completed');
  assert.equal(streams.filter((s) => s.url.includes('/ws')).length, 1, 'still one WebSocket');
  assert.ok(urls.tokens.length > 0, 'the page got its user token');
  assert.deepEqual(tokenURLs(urls), [], 'no URL carries the token');
  await screenshot(page, 'saga-websocket');
  assertNoPageErrors(page);
});

test('the server-side subscription reaches every page of the user who booked, and no one else', async (t) => {
  const srv = await saga(t, 'saga-user');
  // Two tabs of one browser (one user, its cookie), and another browser.
  const context = await browser.newContext({ viewport: { width: 1100, height: 720 } });
  t.after(() => context.close());
  const tabs = [await context.newPage(), await context.newPage()];
  const other = await newPage(browser, t);
  for (const p of [...tabs, other]) {
    await p.goto(srv.url + '/');
    await p.waitForFunction(() => document.body.dataset.ws === 'connected', null, WAIT);
  }
  const tx = await book(tabs[0], 'hotel', 'websocket');
  for (const p of tabs) {
    const c = await waitForEnd(p, tx);
    assert.equal(c.delivery, 'server');
    assert.equal(c.state, 'compensated');
    checkLog(c, 'hotel');
  }
  // The other user's page was not subscribed: no card.
  assert.equal(await other.$$eval('.booking', (els) => els.length), 0, "another user's page shows nothing");
});

test('a booking shows how many follow it: "2 viewers" from two browsers', async (t) => {
  // Slow steps: the saga runs while the second browser comes and goes.
  const srv = await saga(t, 'saga-viewers', '4s');
  const page = await newPage(browser, t);
  await page.goto(srv.url + '/');
  const tx = await book(page, '', 'websocket');
  const viewers = (p, n) => p.waitForSelector(`.booking[data-tx="${tx}"][data-viewers="${n}"]`, WAIT);
  await viewers(page, 1);
  assert.equal((await card(page, tx)).viewers, '1 viewer');

  // Another browser follows the booking's link, over SSE.
  const other = await newPage(browser, t);
  await other.goto(`${srv.url}/?tx=${tx}&transport=sse`);
  await viewers(other, 2);
  await viewers(page, 2);
  assert.equal((await card(page, tx)).viewers, '2 viewers');
  assert.equal((await card(other, tx)).viewers, '2 viewers');
  await screenshot(page, 'saga-viewers');

  // It leaves: one again, while the saga still runs.
  await other.close();
  await viewers(page, 1);
  assert.equal((await card(page, tx)).state, 'running', 'counted while the saga runs');
  assertNoPageErrors(page);
});

test('a page opened after the end shows the final state at once', async (t) => {
  const srv = await saga(t, 'saga-late', '0s');
  const res = await postJSON(`${srv.url}/bookings`, { fail: 'flight' });
  assert.equal(res.status, 202, JSON.stringify(res.body));
  const { tx } = res.body;
  // A first page follows the booking to its end.
  const first = await newPage(browser, t);
  await first.goto(`${srv.url}/?tx=${tx}`);
  await waitForEnd(first, tx);

  const page = await newPage(browser, t);
  const streams = watchStreams(page);
  await page.goto(`${srv.url}/?tx=${tx}`);
  const c = await waitForEnd(page, tx);
  assert.equal(c.closedBy, 'server', 'the server ends the stream right after the snapshot');
  const sse = streams.filter((s) => s.url.includes('/events'));
  assert.equal(sse.length, 1, `streams: ${streams.map((s) => s.url).join(', ')}`);
  assert.equal(await ended(sse[0]), 'finished');
  assert.equal(c.state, 'compensated');
  assert.deepEqual(c.steps, finalSteps('flight'));
  assert.deepEqual(c.stepOrder, STEPS, 'steps laid out in the saga\'s order');
  const { pos, live } = checkLog(c, 'flight');
  assert.equal(pos, transcript('flight').length, 'the snapshot is at the final update');
  assert.equal(live, 0, 'no live update after the end');
  await screenshot(page, 'saga-late');
  assertNoPageErrors(page);
});

test('the page rejects a link with a bad transaction id', async (t) => {
  const srv = await saga(t, 'saga-refused');
  const page = await newPage(browser, t);
  await page.goto(`${srv.url}/?tx=not-hex`);
  await page.waitForFunction(() => document.getElementById('error').textContent !== '', null, WAIT);
  assert.match(await page.textContent('#error'), /Not a transaction id/);
  assert.equal(await page.$$eval('.booking', (els) => els.length), 0);
  assertNoPageErrors(page);
});
