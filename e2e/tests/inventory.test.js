// Browser tests of examples/inventory: the page in headless Chromium against
// the real example binary on a loopback port.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';

import {
  buildExample,
  freePort,
  launchBrowser,
  newPage,
  postJSON,
  screenshot,
  startProxy,
  startServer,
  tokenURLs,
  watchURLs,
} from '../lib.js';

const SKUS = ['SKU-1', 'SKU-2', 'SKU-3', 'SKU-4', 'SKU-5'];
const WAIT = { timeout: 20000 };

let binary;
let browser;

before(async () => {
  binary = await buildExample('inventory');
  browser = await launchBrowser();
});

after(async () => {
  await browser?.close();
});

// stockFlag turns {SKU-1: 3, ...} into the -stock flag's value.
const stockFlag = (stock) => Object.entries(stock).map(([k, v]) => `${k}=${v}`).join(',');

// inventory starts the example on port with the given initial stock and no
// simulation, so that only the test changes stock.
async function inventory(t, port, stock, logName) {
  const srv = await startServer(binary, ['-addr', `127.0.0.1:${port}`, '-insecure', '-simulate=false', '-stock', stockFlag(stock)], { logName });
  t.after(() => srv.stop('SIGKILL'));
  return srv;
}

// shown reads what the page shows: SKU -> {stock, seq} (null before data).
function shown(page) {
  return page.$$eval('#rows tr[data-sku]', (trs) =>
    Object.fromEntries(
      trs.map((tr) => [
        tr.dataset.sku,
        {
          stock: tr.dataset.stock === undefined ? null : Number(tr.dataset.stock),
          text: tr.querySelector('td.stock').textContent,
          seq: tr.dataset.seq === undefined ? null : Number(tr.dataset.seq),
        },
      ]),
    ),
  );
}

// waitForStock waits until the page shows exactly want (SKU -> quantity).
async function waitForStock(page, want) {
  try {
    await page.waitForFunction(
      (want) => {
        const trs = [...document.querySelectorAll('#rows tr[data-sku]')];
        if (trs.length !== Object.keys(want).length) return false;
        return trs.every((tr) => tr.dataset.stock === String(want[tr.dataset.sku]) &&
          tr.querySelector('td.stock').textContent === String(want[tr.dataset.sku]));
      },
      want,
      WAIT,
    );
  } catch (err) {
    const got = Object.fromEntries(Object.entries(await shown(page)).map(([k, v]) => [k, v.stock]));
    assert.deepEqual(got, want, `page stock: ${err.message}`);
  }
}

function waitForStatus(page, state) {
  return page.waitForSelector(`#status[data-state="${state}"]`, WAIT);
}

const logText = (page) => page.$$eval('#log li', (lis) => lis.map((li) => li.textContent));

// waitForNote waits until the activity log's lines containing text name
// every product.
function waitForNote(page, text) {
  return page.waitForFunction(
    ({ text, skus }) => {
      const lines = [...document.querySelectorAll('#log li')].map((li) => li.textContent).filter((l) => l.includes(text));
      return skus.every((sku) => lines.some((l) => l.includes(sku)));
    },
    { text, skus: SKUS },
    WAIT,
  );
}

// assertNoPageErrors fails on script errors and console errors. Tests that
// take the server away allow what Chromium reports about the connections
// that broke or were refused meanwhile.
function assertNoPageErrors(page, { outage = false } = {}) {
  const expected = /WebSocket connection to .* failed|Failed to load resource: net::ERR_(CONNECTION_REFUSED|CONNECTION_RESET|INCOMPLETE_CHUNKED_ENCODING|EMPTY_RESPONSE)/;
  const problems = page.problems.filter((p) => !(outage && expected.test(p)));
  assert.deepEqual(problems, [], 'page errors');
}

for (const transport of ['websocket', 'sse']) {
  test(`${transport}: the page shows every product's stock at once`, async (t) => {
    const port = await freePort();
    const stock = { 'SKU-1': 17, 'SKU-2': 3, 'SKU-3': 0, 'SKU-4': 250, 'SKU-5': 9 };
    await inventory(t, port, stock, `inventory-initial-${transport}`);
    const page = await newPage(browser, t);
    await page.goto(`http://127.0.0.1:${port}/?transport=${transport}`);
    await waitForStatus(page, 'connected');
    await waitForStock(page, stock);
    const rows = await page.$$eval('#rows tr[data-sku]', (trs) =>
      trs.map((tr) => [tr.dataset.sku, tr.querySelector('td.availability').textContent]));
    assert.deepEqual(rows, [
      ['SKU-1', 'In stock'],
      ['SKU-2', 'Low stock'],
      ['SKU-3', 'Out of stock'],
      ['SKU-4', 'In stock'],
      ['SKU-5', 'In stock'],
    ]);
    assert.equal(await page.textContent('#status-text'), 'Live');
    await screenshot(page, `inventory-initial-${transport}`);
    assertNoPageErrors(page);
  });

  test(`${transport}: an event changes its product and no other`, async (t) => {
    const port = await freePort();
    const stock = { 'SKU-1': 10, 'SKU-2': 20, 'SKU-3': 30, 'SKU-4': 40, 'SKU-5': 50 };
    await inventory(t, port, stock, `inventory-event-${transport}`);
    const page = await newPage(browser, t);
    await page.goto(`http://127.0.0.1:${port}/?transport=${transport}`);
    await waitForStock(page, stock);
    const before = await shown(page);

    const res = await postJSON(`http://127.0.0.1:${port}/events`, { ProductId: 'SKU-2', NewQuantity: 4, Timestamp: Date.now() });
    assert.equal(res.status, 200, JSON.stringify(res.body));
    assert.equal(res.body.topic, 'inventory.SKU-2');
    const bad = await postJSON(`http://127.0.0.1:${port}/events`, { ProductId: 'SKU-3', NewQuantity: -1, Timestamp: Date.now() });
    assert.equal(bad.status, 400, JSON.stringify(bad.body));

    await waitForStock(page, { ...stock, 'SKU-2': 4 });
    const afterEvent = await shown(page);
    for (const sku of SKUS) {
      if (sku === 'SKU-2') {
        assert.equal(afterEvent[sku].seq, before[sku].seq + 1, `${sku} seq`);
        assert.equal(await page.textContent(`tr[data-sku="${sku}"] td.availability`), 'Low stock');
      } else {
        assert.deepEqual(afterEvent[sku], before[sku], `${sku} must not change`);
      }
    }
    await screenshot(page, `inventory-event-${transport}`);
    assertNoPageErrors(page);
  });

  test(`${transport}: the page resumes from its last position after a network cut`, async (t) => {
    const port = await freePort();
    const stock = { 'SKU-1': 5, 'SKU-2': 6, 'SKU-3': 7, 'SKU-4': 8, 'SKU-5': 9 };
    await inventory(t, port, stock, `inventory-resume-${transport}`);
    const proxy = await startProxy(port);
    t.after(() => proxy.close());
    const page = await newPage(browser, t);
    await page.goto(`http://127.0.0.1:${proxy.port}/?transport=${transport}`);
    await waitForStatus(page, 'connected');
    await waitForStock(page, stock);
    const before = await shown(page);

    proxy.cut();
    await waitForStatus(page, 'disconnected');
    // Published while the page is away: the page must get all of it from
    // history when it comes back, not a snapshot.
    const now = Date.now();
    const events = [
      { ProductId: 'SKU-1', NewQuantity: 4, Timestamp: now },
      { ProductId: 'SKU-1', NewQuantity: 3, Timestamp: now + 1 },
      { ProductId: 'SKU-1', NewQuantity: 2, Timestamp: now + 2 },
      { ProductId: 'SKU-4', NewQuantity: 0, Timestamp: now + 3 },
    ];
    for (const ev of events) {
      const res = await postJSON(`http://127.0.0.1:${port}/events`, ev);
      assert.equal(res.status, 200, JSON.stringify(res.body));
    }
    proxy.restore();

    const want = { ...stock, 'SKU-1': 2, 'SKU-4': 0 };
    await waitForStatus(page, 'connected');
    await waitForStock(page, want);
    const afterResume = await shown(page);
    assert.equal(afterResume['SKU-1'].seq, before['SKU-1'].seq + 3, 'SKU-1 seq');
    assert.equal(afterResume['SKU-4'].seq, before['SKU-4'].seq + 1, 'SKU-4 seq');
    await waitForNote(page, 'nothing lost');
    const log = await logText(page);
    assert.ok(!log.some((l) => l.includes('lost its history')), `no reset expected, log:\n${log.join('\n')}`);
    assert.ok(log.some((l) => /Disconnected \(1006/.test(l)), `a 1006 disconnect in the log:\n${log.join('\n')}`);
    await screenshot(page, `inventory-resume-${transport}`);
    assertNoPageErrors(page, { outage: true });
  });

  test(`${transport}: the page survives server restarts and shows the new stock`, async (t) => {
    const port = await freePort();
    const first = { 'SKU-1': 1, 'SKU-2': 2, 'SKU-3': 3, 'SKU-4': 4, 'SKU-5': 5 };
    let srv = await inventory(t, port, first, `inventory-restart-1-${transport}`);
    const page = await newPage(browser, t);
    await page.goto(`http://127.0.0.1:${port}/?transport=${transport}`);
    await waitForStock(page, first);
    const res = await postJSON(`http://127.0.0.1:${port}/events`, { ProductId: 'SKU-5', NewQuantity: 55, Timestamp: Date.now() });
    assert.equal(res.status, 200, JSON.stringify(res.body));
    await waitForStock(page, { ...first, 'SKU-5': 55 });

    // Graceful: SIGTERM drains, and the page learns why (4000).
    const exit = await srv.stop('SIGTERM');
    assert.equal(exit.code, 0, `exit after SIGTERM: ${JSON.stringify(exit)}\n${srv.log}`);
    await waitForStatus(page, 'disconnected');
    await page.waitForFunction(() => document.getElementById('log').textContent.includes('4000'), null, WAIT);
    await screenshot(page, `inventory-restart-down-${transport}`);

    // The new process has other stock and a new history (memory backplane):
    // the page must drop what it had and show the snapshot.
    const second = { 'SKU-1': 11, 'SKU-2': 0, 'SKU-3': 33, 'SKU-4': 44, 'SKU-5': 5 };
    srv = await inventory(t, port, second, `inventory-restart-2-${transport}`);
    await waitForStatus(page, 'connected');
    await waitForStock(page, second);
    await waitForNote(page, 'lost its history');
    await screenshot(page, `inventory-restart-up-${transport}`);

    // Abrupt: SIGKILL, no close frame.
    await srv.stop('SIGKILL');
    await waitForStatus(page, 'disconnected');
    const third = { 'SKU-1': 7, 'SKU-2': 7, 'SKU-3': 7, 'SKU-4': 7, 'SKU-5': 70 };
    srv = await inventory(t, port, third, `inventory-restart-3-${transport}`);
    await waitForStatus(page, 'connected');
    await waitForStock(page, third);
    assert.equal(await page.textContent('#status-text'), 'Live');
    await screenshot(page, `inventory-restart-again-${transport}`);
    assertNoPageErrors(page, { outage: true });
  });
}

// viewers reads the page's viewer counts: SKU -> number (null before one).
function viewers(page) {
  return page.$$eval('#rows tr[data-sku]', (trs) =>
    Object.fromEntries(trs.map((tr) => [tr.dataset.sku, tr.dataset.viewers === undefined ? null : Number(tr.dataset.viewers)])));
}

// waitForViewers waits until the page shows the counts of want (SKU ->
// number; products not in want are not checked).
async function waitForViewers(page, want) {
  try {
    await page.waitForFunction(
      (want) => Object.entries(want).every(([sku, n]) =>
        document.querySelector(`#rows tr[data-sku="${sku}"]`)?.dataset.viewers === String(n)),
      want,
      WAIT,
    );
  } catch (err) {
    assert.deepEqual(await viewers(page), want, `viewers: ${err.message}`);
  }
}

for (const transport of ['websocket', 'sse']) {
  test(`the viewer count of each product follows the pages that open and close (${transport})`, async (t) => {
    const port = await freePort();
    const stock = { 'SKU-1': 4, 'SKU-2': 8, 'SKU-3': 1, 'SKU-4': 0, 'SKU-5': 12 };
    const all = (n2) => Object.fromEntries(SKUS.map((sku) => [sku, sku === 'SKU-2' ? n2 : 1]));
    await inventory(t, port, stock, `inventory-viewers-${transport}`);
    const base = `http://127.0.0.1:${port}/${transport === 'sse' ? '?transport=sse' : ''}`;
    const board = await newPage(browser, t);
    const urls = watchURLs(board);
    await board.goto(base);
    await waitForStock(board, stock);
    await waitForViewers(board, all(1));

    // A second browser opens SKU-2's page: only SKU-2 has two viewers.
    const other = await newPage(browser, t);
    const sep = base.includes('?') ? '&' : '?';
    await other.goto(`${base}${sep}sku=SKU-2`);
    await waitForStock(other, { 'SKU-2': 8 });
    await waitForViewers(other, { 'SKU-2': 2 });
    await waitForViewers(board, all(2));
    await screenshot(board, `inventory-viewers-${transport}`);

    // It closes: back to one.
    await other.close();
    await waitForViewers(board, all(1));
    assert.deepEqual(tokenURLs(urls), [], 'no URL carries a token');
    assert.ok(!urls.some((u) => /[?&](token|access_token)=/.test(u)), `a URL with a token parameter: ${urls.join(' ')}`);
  });
}
