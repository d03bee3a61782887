// The inventory page: one row per product, one subscription per product.
import { connect } from './fanout.js';

const rows = document.getElementById('rows');
const statusBox = document.getElementById('status');
const statusText = document.getElementById('status-text');
const logList = document.getElementById('log');

const LOW_STOCK = 5;
const LOG_LINES = 20;

// One format for every time the page shows: date and time, in the
// browser's locale.
const timeFormat = new Intl.DateTimeFormat(undefined, { dateStyle: 'short', timeStyle: 'medium' });

// What a close code (docs/PROTOCOL.md) means to someone watching the page.
const CLOSE_MEANING = {
  1000: 'closed',
  1001: 'the server went away',
  1006: 'connection lost',
  1009: 'message too large',
  1011: 'server error',
  4000: 'the server is restarting',
  4001: 'this page fell behind',
  4002: 'not authorized',
  4003: 'bad request',
  4004: 'too many requests',
  4005: 'the server lost track of updates',
  4006: 'the connection stopped answering',
};


// log adds a line to the activity list, newest first.
function log(text, kind = 'info') {
  const li = document.createElement('li');
  li.className = kind;
  const time = document.createElement('time');
  time.textContent = timeFormat.format(new Date());
  li.append(time, ' ', text);
  logList.prepend(li);
  while (logList.children.length > LOG_LINES) logList.lastChild.remove();
}

// noteLater gathers per-product notes of one reconnect into one line.
const notes = new Map(); // text -> SKUs
function noteLater(text, sku, kind) {
  if (!notes.has(text)) {
    notes.set(text, []);
    setTimeout(() => {
      const skus = notes.get(text);
      notes.delete(text);
      log(text.replace('%s', skus.join(', ')), kind);
    }, 50);
  }
  notes.get(text).push(sku);
}

function showStatus(s) {
  statusBox.dataset.state = s.state;
  document.body.dataset.connection = s.state;
  let text;
  switch (s.state) {
    case 'connecting':
      text = s.attempt > 0 ? `Connecting… (attempt ${s.attempt + 1})` : 'Connecting…';
      break;
    case 'connected':
      text = 'Live';
      break;
    default: {
      // The pill says what happened; the activity log keeps the code too.
      const meaning = CLOSE_MEANING[s.code] || (s.code ? 'disconnected' : '');
      const retry = s.willReconnect ? `, retrying in ${(s.retryIn / 1000).toFixed(1)} s` : '';
      text = `Disconnected${meaning ? ': ' + meaning : ''}${retry}`;
      statusText.textContent = text;
      const why = s.code ? ` (${s.code}${meaning ? ': ' + meaning : ''}${s.reason ? ', ' + s.reason : ''})` : '';
      log(`Disconnected${why}${retry}`, 'warn');
      return;
    }
  }
  statusText.textContent = text;
  if (s.state !== 'connecting') log(text, 'ok');
}

// fetchProducts loads the catalogue, retrying until the server answers.
async function fetchProducts() {
  for (let delay = 500; ; delay = Math.min(delay * 2, 10000)) {
    try {
      const res = await fetch('api/products');
      if (res.ok) return await res.json();
    } catch {
      // retried below
    }
    await new Promise((r) => setTimeout(r, delay * Math.random()));
  }
}

function makeRow(p) {
  const tr = document.createElement('tr');
  tr.dataset.sku = p.sku;
  tr.dataset.state = 'loading';
  const cells = {};
  for (const name of ['name', 'sku', 'stock', 'availability', 'updated', 'viewers']) {
    const td = document.createElement('td');
    td.className = name;
    tr.append(td);
    cells[name] = td;
  }
  cells.name.textContent = p.name;
  cells.sku.textContent = p.sku;
  cells.stock.classList.add('num');
  cells.stock.textContent = '…';
  cells.availability.textContent = '';
  cells.updated.textContent = '';
  cells.viewers.classList.add('num');
  cells.viewers.textContent = '…';
  return { tr, cells, asks: 0 };
}

// render shows a product's stock event; anything else on the topic is
// ignored. It returns the quantity shown before, or undefined.
function render(row, msg, animate) {
  const ev = msg.data;
  if (!ev || typeof ev !== 'object' || !Number.isSafeInteger(ev.NewQuantity) || ev.NewQuantity < 0) return;
  const q = ev.NewQuantity;
  const { tr, cells } = row;
  const before = row.tr.dataset.stock;
  const changed = cells.stock.textContent !== String(q);
  cells.stock.textContent = String(q);
  tr.dataset.stock = String(q);
  tr.dataset.seq = String(msg.seq);
  const state = q === 0 ? 'out' : q <= LOW_STOCK ? 'low' : 'in';
  tr.dataset.state = state;
  cells.availability.textContent = state === 'out' ? 'Out of stock' : state === 'low' ? 'Low stock' : 'In stock';
  const when = Number.isSafeInteger(ev.Timestamp) ? new Date(ev.Timestamp) : new Date();
  cells.updated.textContent = timeFormat.format(when);
  cells.updated.title = `${when.toISOString()} · seq ${msg.seq}`;
  if (animate && changed) {
    tr.classList.remove('flash');
    void tr.offsetWidth; // restart the animation
    tr.classList.add('flash');
  }
  return changed ? before : undefined;
}

// The transport: WebSocket, or Server-Sent Events with ?transport=sse.
const params = new URLSearchParams(location.search);
const transport = params.get('transport') === 'sse' ? 'sse' : 'websocket';
// ?sku=SKU-1 (repeatable) shows only those products: a product's page.
const only = params.getAll('sku').flatMap((v) => v.split(',')).filter(Boolean);

let client;

// countViewers shows how many sessions follow a product's topic, on every
// server: its presence count, asked again at every join and leave (the
// server enables presence and join/leave for inventory topics). Over
// WebSocket the client asks with the presence_count command; an SSE
// stream cannot send commands, so the page asks GET /api/viewers. Only the
// answer to the latest question is shown.
function countViewers(row, topic, sku) {
  const ask = ++row.asks;
  const count = transport === 'websocket'
    ? client.presenceCount(topic)
    : fetch(`api/viewers?sku=${encodeURIComponent(sku)}`).then((res) => (res.ok ? res.json() : Promise.reject(new Error(res.status)))).then((b) => b.viewers);
  count.then((n) => {
    if (ask !== row.asks) return;
    row.cells.viewers.textContent = String(n);
    row.cells.viewers.title = `${n} ${n === 1 ? 'person looks' : 'people look'} at ${sku} now`;
    row.tr.dataset.viewers = String(n);
  }, () => {}); // asked again at the next join, leave or resubscribe
}

async function main() {
  let products = await fetchProducts();
  if (only.length > 0) products = products.filter((p) => only.includes(p.sku));
  rows.replaceChildren();
  const topics = products.map((p) => {
    const row = makeRow(p);
    rows.append(row.tr);
    return {
      topic: p.topic,
      snapshot: true,
      onSnapshot(snap) {
        const item = snap.items.find((m) => m.key === p.sku);
        if (item) render(row, item, row.tr.dataset.stock !== undefined);
        else row.cells.stock.textContent = '—';
      },
      onMessage(msg) {
        if (msg.key !== p.sku) return;
        const before = render(row, msg, true);
        if (before !== undefined) log(`${p.name} (${p.sku}): ${before} → ${row.tr.dataset.stock} in stock`);
      },
      onReset() {
        noteLater('The server lost its history: reloaded the current stock of %s', p.sku, 'warn');
      },
      onSubscribed(info) {
        if (info.resumed && info.recovered) noteLater('Resumed %s from their last positions, nothing lost', p.sku, 'ok');
        countViewers(row, p.topic, p.sku);
      },
      onJoin() {
        countViewers(row, p.topic, p.sku);
      },
      onLeave() {
        countViewers(row, p.topic, p.sku);
      },
      onError(err) {
        log(`${p.sku}: ${err.message}`, 'warn');
      },
    };
  });
  document.getElementById('transport').textContent = transport === 'sse' ? 'Server-Sent Events' : 'WebSocket';
  client = connect(transport === 'sse' ? 'sse' : 'ws', {
    transport,
    topics,
    backoffMin: 500,
    backoffMax: 10000,
    onStatus: showStatus,
  });
  // For debugging in the console.
  window.inventory = { client };
}

main();
