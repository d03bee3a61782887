// Unit tests of the client's logic: run with `node --test client/js/`.
//
// The pure functions are tested directly. The connection state machine is
// driven through a scripted socket that stands in for the browser's
// WebSocket object (Node 20 has none); the real thing, against a real server
// in a real browser, is tested in e2e/.

import { test, mock } from 'node:test';
import assert from 'node:assert/strict';

import {
  backoffDelay,
  reconnectPlan,
  parseFrames,
  decodeMessage,
  classify,
  retryable,
  encodeBase64,
  decodeBase64,
  defaults,
  connect,
  CloseCode,
  FanoutError,
  encodeCursor,
  crc32,
  HEADER_FINAL,
  isFinal,
  PROTOCOL,
  protocolBearer,
  refreshDelay,
} from './fanout.js';

const FINAL = { 'fanout-final': 'true' };

test('backoffDelay grows exponentially and stays within the cap', () => {
  const top = () => 0.999999;
  const cases = [
    { attempt: 0, want: 499 },
    { attempt: 1, want: 499 },
    { attempt: 2, want: 999 },
    { attempt: 3, want: 1999 },
    { attempt: 6, want: 15999 },
    { attempt: 7, want: 29999 },
    { attempt: 1000, want: 29999 },
  ];
  for (const c of cases) {
    assert.equal(backoffDelay(c.attempt, 500, 30000, top), c.want, `attempt ${c.attempt}`);
  }
  assert.equal(backoffDelay(5, 500, 30000, () => 0), 0, 'full jitter reaches 0');
  for (let i = 0; i < 1000; i++) {
    const d = backoffDelay(4, 100, 1000);
    assert.ok(d >= 0 && d < 800, `got ${d}, want in [0, 800)`);
  }
});

test('reconnectPlan honours close codes', () => {
  const o = { backoffMin: 500, backoffMax: 30000 };
  const half = () => 0.5;
  assert.deepEqual(reconnectPlan(CloseCode.BAD_REQUEST, 1, o, half), { reconnect: false, delay: 0, refreshToken: false });
  assert.deepEqual(reconnectPlan(CloseCode.PROTOCOL, 1, o, half), { reconnect: false, delay: 0, refreshToken: false });
  const auth = reconnectPlan(CloseCode.UNAUTHORIZED, 1, o, half);
  assert.equal(auth.refreshToken, true);
  assert.ok(auth.delay >= 15000 && auth.delay <= 30000, `unauthorized delay ${auth.delay}, want in [15000, 30000]`);
  const down = reconnectPlan(CloseCode.SHUTDOWN, 1, o, () => 0.999);
  assert.ok(down.reconnect && down.delay < 250, `shutdown delay ${down.delay}, want < 250`);
  const downAgain = reconnectPlan(CloseCode.SHUTDOWN, 4, o, () => 0.999);
  assert.ok(downAgain.delay > 3000, `repeated shutdown delay ${downAgain.delay}, want a backoff`);
  for (const code of [CloseCode.ABNORMAL, CloseCode.SLOW_CONSUMER, CloseCode.RESYNC, CloseCode.RATE_LIMITED, CloseCode.INTERNAL]) {
    const p = reconnectPlan(code, 3, o, () => 0.999);
    assert.equal(p.reconnect, true, `code ${code}`);
    assert.equal(p.delay, 1998, `code ${code}`);
  }
});

test('parseFrames splits lines and skips bad ones', () => {
  const bad = [];
  const text = '{"type":"reply","id":"1","ok":true}\n\r\n{"type":"msg","topic":"a","seq":1}\r\nnot json\n[1]\n{"x":1}\n';
  const got = parseFrames(text, (line) => bad.push(line));
  assert.deepEqual(got, [
    { type: 'reply', id: '1', ok: true },
    { type: 'msg', topic: 'a', seq: 1 },
  ]);
  assert.deepEqual(bad, ['not json', '[1]', '{"x":1}']);
  assert.deepEqual(parseFrames(''), []);
  assert.deepEqual(parseFrames('{"type":"close","code":4000}'), [{ type: 'close', code: 4000 }]);
});

test('decodeMessage follows the data/data64 rule', () => {
  const j = decodeMessage({ type: 'msg', topic: 't', epoch: 'e', seq: 3, key: 'k', time: 5, data: { n: 1 } });
  assert.deepEqual(j, { topic: 't', epoch: 'e', seq: 3, key: 'k', time: 5, header: undefined, final: false, data: { n: 1 } });
  const zero = decodeMessage({ type: 'msg', topic: 't', epoch: 'e', seq: 4, data: 0 });
  assert.equal(zero.data, 0);
  const b = decodeMessage({ type: 'msg', topic: 't', epoch: 'e', seq: 5, data64: 'AP8Q' });
  assert.deepEqual(b.data, new Uint8Array([0, 255, 16]));
  const empty = decodeMessage({ type: 'msg', topic: 't', epoch: 'e', seq: 6, data64: '' });
  assert.deepEqual(empty.data, new Uint8Array([]));
});

test('the fanout-final header marks a final message', () => {
  assert.equal(HEADER_FINAL, 'fanout-final');
  const cases = [
    { header: { 'fanout-final': 'true' }, want: true },
    { header: { 'fanout-final': 'true', traceparent: 'x' }, want: true },
    { header: { 'fanout-final': 'false' }, want: false },
    { header: { 'fanout-final': true }, want: false },
    { header: { traceparent: 'x' }, want: false },
    { header: undefined, want: false },
    { header: null, want: false },
  ];
  for (const c of cases) {
    const f = { type: 'msg', topic: 't', epoch: 'e', seq: 1, data: 1, header: c.header };
    assert.equal(isFinal(f), c.want, JSON.stringify(c.header));
    assert.equal(decodeMessage(f).final, c.want, JSON.stringify(c.header));
  }
});

test('base64 round trip', () => {
  const bytes = new Uint8Array(70000);
  for (let i = 0; i < bytes.length; i++) bytes[i] = (i * 7) & 0xff;
  assert.deepEqual(decodeBase64(encodeBase64(bytes)), bytes);
  assert.equal(encodeBase64(new Uint8Array([0, 255, 16])), 'AP8Q');
});

test('classify detects duplicates and gaps by seq', () => {
  const cases = [
    { last: null, msg: { epoch: 'e', seq: 1 }, want: 'deliver' },
    { last: null, msg: { epoch: 'e', seq: 2 }, want: 'gap' },
    { last: { epoch: '', seq: 0 }, msg: { epoch: 'e', seq: 1 }, want: 'deliver' },
    { last: { epoch: 'e', seq: 0 }, msg: { epoch: 'e', seq: 1 }, want: 'deliver' },
    { last: { epoch: 'e', seq: 4 }, msg: { epoch: 'e', seq: 5 }, want: 'deliver' },
    { last: { epoch: 'e', seq: 4 }, msg: { epoch: 'e', seq: 4 }, want: 'duplicate' },
    { last: { epoch: 'e', seq: 4 }, msg: { epoch: 'e', seq: 2 }, want: 'duplicate' },
    { last: { epoch: 'e', seq: 4 }, msg: { epoch: 'e', seq: 6 }, want: 'gap' },
    { last: { epoch: 'e', seq: 4 }, msg: { epoch: 'f', seq: 5 }, want: 'gap' },
    { last: { epoch: 'e', seq: 4 }, msg: { epoch: 'f', seq: 1 }, want: 'gap' },
  ];
  for (const c of cases) {
    assert.equal(classify(c.last, c.msg), c.want, JSON.stringify(c));
  }
});

test('retryable error codes', () => {
  for (const c of ['unavailable', 'internal', 'closed', 'rate_limited']) assert.equal(retryable(c), true, c);
  for (const c of ['forbidden', 'invalid_topic', 'too_many_subscriptions', 'bad_request', 'unauthenticated']) {
    assert.equal(retryable(c), false, c);
  }
});

// --- the client against a scripted socket ---

// ScriptedSocket records what the client sends; the test plays the server.
class ScriptedSocket {
  static all = [];
  constructor(url, protocols) {
    this.url = url;
    this.protocols = protocols;
    this.sent = [];
    this.closedWith = null;
    ScriptedSocket.all.push(this);
  }
  send(text) {
    this.sent.push(JSON.parse(text));
  }
  close(code, reason) {
    this.closedWith = { code, reason };
  }
  // Server side.
  open() {
    this.onopen?.({});
  }
  frames(...fs) {
    this.onmessage?.({ data: fs.map((f) => JSON.stringify(f)).join('\n') });
  }
  end(code, reason = '') {
    this.onclose?.({ code, reason });
  }
  take() {
    const s = this.sent;
    this.sent = [];
    return s;
  }
}

function setup(t, opts = {}) {
  ScriptedSocket.all = [];
  mock.timers.enable({ apis: ['setTimeout'] });
  t.after(() => mock.timers.reset());
  const statuses = [];
  const client = connect('ws://server.test/ws', {
    WebSocket: ScriptedSocket,
    onStatus: (s) => statuses.push(s),
    ...opts,
  });
  t.after(() => client.close());
  return { client, statuses, sock: () => ScriptedSocket.all.at(-1) };
}

// flush lets pending promise callbacks (the token lookup) run.
const flush = () => new Promise((r) => setImmediate(r));

test('client subscribes with snapshot, delivers in order, drops duplicates', async (t) => {
  const { client, statuses, sock } = setup(t);
  const got = [];
  const snaps = [];
  client.subscribe('inv.A', { snapshot: true, onMessage: (m) => got.push(m), onSnapshot: (s) => snaps.push(s) });
  await flush();
  const ws = sock();
  assert.equal(ws.url, 'ws://server.test/ws');
  ws.open();
  assert.equal(statuses.at(-1).state, 'connected');
  const [sub] = ws.take();
  assert.deepEqual(sub, { id: sub.id, type: 'subscribe', topic: 'inv.A', snapshot: true });
  const item = { type: 'msg', topic: 'inv.A', epoch: 'e1', seq: 7, key: 'A', data: { q: 3 } };
  ws.frames(
    { type: 'reply', id: sub.id, ok: true, topic: 'inv.A', position: { epoch: 'e1', seq: 7 } },
    { type: 'snapshot', topic: 'inv.A', position: { epoch: 'e1', seq: 7 }, items: [item] },
    { type: 'msg', topic: 'inv.A', epoch: 'e1', seq: 8, key: 'A', data: { q: 2 } },
    { type: 'msg', topic: 'inv.A', epoch: 'e1', seq: 8, key: 'A', data: { q: 2 } },
    { type: 'msg', topic: 'other', epoch: 'e1', seq: 1, data: 1 },
  );
  ws.frames({ type: 'msg', topic: 'inv.A', epoch: 'e1', seq: 9, key: 'A', data: { q: 1 } });
  assert.equal(snaps.length, 1);
  assert.deepEqual(snaps[0].items.map((m) => m.data), [{ q: 3 }]);
  assert.deepEqual(got.map((m) => m.seq), [8, 9]);
  assert.deepEqual(client.subscription('inv.A').position, { epoch: 'e1', seq: 9 });
});

test('client resubscribes with since after a reconnect', async (t) => {
  const { client, statuses, sock } = setup(t, { backoffMin: 100, backoffMax: 1000 });
  const got = [];
  client.subscribe('a', { snapshot: true, onMessage: (m) => got.push(m.seq) });
  await flush();
  let ws = sock();
  ws.open();
  let [cmd] = ws.take();
  ws.frames(
    { type: 'reply', id: cmd.id, ok: true, position: { epoch: 'e', seq: 2 } },
    { type: 'snapshot', topic: 'a', position: { epoch: 'e', seq: 2 }, items: [] },
    { type: 'msg', topic: 'a', epoch: 'e', seq: 3, data: 3 },
  );
  ws.end(1006);
  const st = statuses.at(-1);
  assert.equal(st.state, 'disconnected');
  assert.equal(st.code, 1006);
  assert.equal(st.willReconnect, true);
  assert.ok(st.retryIn >= 0 && st.retryIn < 100, `retryIn ${st.retryIn}, want < 100`);
  mock.timers.tick(100);
  await flush();
  assert.equal(statuses.at(-1).state, 'connecting');
  ws = sock();
  assert.equal(ScriptedSocket.all.length, 2);
  ws.open();
  [cmd] = ws.take();
  assert.deepEqual(cmd, { id: cmd.id, type: 'subscribe', topic: 'a', since: { epoch: 'e', seq: 3 } });
  // History replays 4 and 5 after the reply (whose position is the end of
  // history); a live duplicate of 5 is dropped.
  ws.frames(
    { type: 'reply', id: cmd.id, ok: true, position: { epoch: 'e', seq: 5 }, recovered: true },
    { type: 'msg', topic: 'a', epoch: 'e', seq: 4, data: 4 },
    { type: 'msg', topic: 'a', epoch: 'e', seq: 5, data: 5 },
    { type: 'msg', topic: 'a', epoch: 'e', seq: 5, data: 5 },
  );
  assert.deepEqual(got, [3, 4, 5]);
});

test('client surfaces recovered=false and applies the snapshot', async (t) => {
  const { client, sock } = setup(t, { backoffMin: 10, backoffMax: 10 });
  const events = [];
  client.subscribe('a', {
    since: { epoch: 'old', seq: 40 },
    onReset: (r) => events.push(['reset', r.position.seq]),
    onSnapshot: (s) => events.push(['snapshot', s.items.length]),
    onMessage: (m) => events.push(['msg', m.seq]),
  });
  await flush();
  const ws = sock();
  ws.open();
  const [cmd] = ws.take();
  assert.deepEqual(cmd.since, { epoch: 'old', seq: 40 });
  ws.frames(
    { type: 'reply', id: cmd.id, ok: true, position: { epoch: 'new', seq: 2 }, recovered: false },
    { type: 'snapshot', topic: 'a', position: { epoch: 'new', seq: 2 }, items: [{ type: 'msg', topic: 'a', epoch: 'new', seq: 2, key: 'k', data: 1 }] },
    { type: 'msg', topic: 'a', epoch: 'new', seq: 3, data: 2 },
  );
  assert.deepEqual(events, [['reset', 2], ['snapshot', 1], ['msg', 3]]);
});

test('client resubscribes from its position after a gap', async (t) => {
  const { client, sock } = setup(t);
  const got = [];
  client.subscribe('a', { onMessage: (m) => got.push(m.seq) });
  await flush();
  const ws = sock();
  ws.open();
  let [cmd] = ws.take();
  ws.frames(
    { type: 'reply', id: cmd.id, ok: true, position: { epoch: 'e', seq: 1 } },
    { type: 'msg', topic: 'a', epoch: 'e', seq: 2, data: 0 },
    { type: 'msg', topic: 'a', epoch: 'e', seq: 4, data: 0 },
    { type: 'msg', topic: 'a', epoch: 'e', seq: 5, data: 0 },
  );
  const sent = ws.take();
  assert.deepEqual(sent.map((c) => c.type), ['unsubscribe', 'subscribe']);
  assert.deepEqual(sent[1].since, { epoch: 'e', seq: 2 });
  cmd = sent[1];
  ws.frames(
    { type: 'reply', id: sent[0].id, ok: true },
    { type: 'reply', id: cmd.id, ok: true, position: { epoch: 'e', seq: 5 }, recovered: true },
    { type: 'msg', topic: 'a', epoch: 'e', seq: 3, data: 0 },
    { type: 'msg', topic: 'a', epoch: 'e', seq: 4, data: 0 },
    { type: 'msg', topic: 'a', epoch: 'e', seq: 5, data: 0 },
  );
  assert.deepEqual(got, [2, 3, 4, 5]);
});

test('client stops on 4003 and reconnects at once on 4000', async (t) => {
  const { statuses, sock } = setup(t, { backoffMin: 1000, backoffMax: 60000, healthyAfter: 50 });
  await flush();
  let ws = sock();
  ws.open();
  mock.timers.tick(50); // healthy
  ws.frames({ type: 'close', code: 4000, reason: 'server shutting down', reconnect: true });
  ws.end(4000, 'server shutting down');
  let st = statuses.at(-1);
  assert.equal(st.code, 4000);
  assert.equal(st.reason, 'server shutting down');
  assert.ok(st.retryIn < 250, `retryIn ${st.retryIn}, want < 250`);
  mock.timers.tick(250);
  await flush();
  ws = sock();
  assert.equal(ScriptedSocket.all.length, 2);
  ws.open();
  ws.end(4003, 'bad request');
  st = statuses.at(-1);
  assert.equal(st.state, 'disconnected');
  assert.equal(st.willReconnect, false);
  mock.timers.tick(120000);
  await flush();
  assert.equal(ScriptedSocket.all.length, 2, 'no reconnect after 4003');
});

test('client refreshes its token after 4002 and backs off hard', async (t) => {
  const asked = [];
  let n = 0;
  const { statuses, sock } = setup(t, {
    backoffMin: 100,
    backoffMax: 10000,
    token: ({ reason }) => {
      asked.push(reason);
      return `tok${++n}`;
    },
  });
  await flush();
  let ws = sock();
  assert.equal(ws.url, 'ws://server.test/ws');
  ws.open();
  assert.deepEqual(ws.take().map((c) => [c.type, c.token]), [['auth', 'tok1']]);
  ws.end(4002, 'token expired');
  const st = statuses.at(-1);
  assert.ok(st.retryIn >= 5000, `retryIn ${st.retryIn}, want >= 5000`);
  mock.timers.tick(st.retryIn);
  await flush();
  ws = sock();
  assert.equal(ws.url, 'ws://server.test/ws');
  ws.open();
  assert.deepEqual(ws.take().map((c) => [c.type, c.token]), [['auth', 'tok2']]);
  assert.deepEqual(asked, ['connect', 'unauthorized']);
});

test('client pings and reconnects when the pong does not come', async (t) => {
  const { statuses, sock } = setup(t, { pingInterval: 1000, pingTimeout: 500, backoffMin: 10, backoffMax: 10 });
  await flush();
  const ws = sock();
  ws.open();
  mock.timers.tick(1000);
  let [ping] = ws.take();
  assert.equal(ping.type, 'ping');
  ws.frames({ type: 'reply', id: ping.id, ok: true });
  mock.timers.tick(1000);
  [ping] = ws.take();
  assert.equal(ping.type, 'ping');
  mock.timers.tick(500);
  // The retry may already have started within that tick (full jitter).
  const st = statuses.findLast((s) => s.state === 'disconnected');
  assert.ok(st, 'a disconnected status');
  assert.equal(st.code, CloseCode.TIMEOUT);
  assert.equal(st.reason, 'ping timeout');
  assert.notEqual(ws.closedWith, null, 'the dead socket was closed');
  mock.timers.tick(10);
  await flush();
  assert.equal(ScriptedSocket.all.length, 2);
});

test('client publishes JSON and bytes and fails fast when disconnected', async (t) => {
  const { client, sock } = setup(t);
  await assert.rejects(client.publish('a', 1), (e) => e instanceof FanoutError && e.code === 'disconnected');
  await flush();
  const ws = sock();
  ws.open();
  const p1 = client.publish('a', { n: 1 }, { key: 'k' });
  const p2 = client.publish('a', new Uint8Array([0, 255]), { idempotencyKey: 'e1', header: { tp: '00' } });
  const [c1, c2] = ws.take();
  assert.match(c1.idempotency_key, /^js-[0-9a-f-]{32,36}$/);
  assert.deepEqual(c1, { id: c1.id, type: 'publish', topic: 'a', data: { n: 1 }, key: 'k', idempotency_key: c1.idempotency_key });
  assert.deepEqual(c2, { id: c2.id, type: 'publish', topic: 'a', data64: 'AP8=', idempotency_key: 'e1', header: { tp: '00' } });
  ws.frames(
    { type: 'reply', id: c1.id, ok: true, position: { epoch: 'e', seq: 1 } },
    { type: 'reply', id: c2.id, ok: false, error: { code: 'forbidden', message: 'no' } },
  );
  assert.deepEqual(await p1, { epoch: 'e', seq: 1 });
  await assert.rejects(p2, (e) => e.code === 'forbidden');
});

test('a publish lost with its connection is sent again with the same idempotency key', async (t) => {
  const { client, sock } = setup(t, { backoffMin: 100, backoffMax: 100 });
  await flush();
  let ws = sock();
  ws.open();
  const p = client.publish('a', { n: 1 });
  const ac = new AbortController();
  const aborted = client.publish('a', 2, { signal: ac.signal });
  const [c1] = ws.take();
  ws.end(1006);
  mock.timers.tick(100);
  await flush();
  ws = sock();
  ws.open();
  const again = ws.take();
  assert.equal(again.length, 2);
  assert.notEqual(again[0].id, c1.id);
  assert.deepEqual(again[0], { ...c1, id: again[0].id }, 'the same command, with the same idempotency key');
  ac.abort(new Error('gave up'));
  await assert.rejects(aborted, /gave up/);
  ws.frames({ type: 'reply', id: again[0].id, ok: true, position: { epoch: 'e', seq: 1 } });
  assert.deepEqual(await p, { epoch: 'e', seq: 1 });

  // A client that stops rejects the publishes it could not send.
  const lost = client.publish('a', 3);
  ws.take();
  ws.end(4003, 'bad request');
  await assert.rejects(lost, (e) => e.code === 'disconnected');
});

test('a failed subscribe is retried only when the error is temporary', async (t) => {
  const { client, sock } = setup(t, { backoffMin: 100, backoffMax: 100 });
  const errors = [];
  client.subscribe('x', { onError: (e) => errors.push(e.code) });
  client.subscribe('y', { onError: (e) => errors.push(e.code) });
  await flush();
  const ws = sock();
  ws.open();
  const [cx, cy] = ws.take();
  ws.frames(
    { type: 'reply', id: cx.id, ok: false, error: { code: 'forbidden', message: 'no' } },
    { type: 'reply', id: cy.id, ok: false, error: { code: 'unavailable', message: 'later' } },
  );
  assert.deepEqual(errors, ['forbidden', 'unavailable']);
  assert.equal(client.subscription('x').state, 'failed');
  mock.timers.tick(100);
  const again = ws.take();
  assert.deepEqual(again.map((c) => c.topic), ['y']);
});

test('defaults are documented values', () => {
  assert.equal(defaults.backoffMin, 500);
  assert.equal(defaults.backoffMax, 30000);
  assert.equal(defaults.transport, 'websocket');
});

test('encodeCursor matches the server\'s cursors', () => {
  // Made by transport/sse.EncodeCursor.
  const cases = [
    { topics: ['a'], pos: {}, want: 'Aa9JyqwAAA' },
    {
      topics: ['inventory.SKU-2', 'inventory.SKU-1'],
      pos: { 'inventory.SKU-1': { epoch: 'f3eb537f8340', seq: 7 } },
      want: 'AfdRY04BDGYzZWI1MzdmODM0MAEHAA',
    },
    {
      topics: ['b', 'a', 'c'],
      pos: { a: { epoch: 'e1', seq: 300 }, b: { epoch: 'e2', seq: 1 }, c: { epoch: 'e1', seq: 9007199254740991 } },
      want: 'Ael_bM8CAmUxAmUyAawCAgEB_________w8',
    },
    { topics: ['saga:42'], pos: { 'saga:42': { epoch: '', seq: 0 } }, want: 'ASv8cKoBAAEA' },
  ];
  for (const c of cases) {
    assert.equal(encodeCursor(c.topics, new Map(Object.entries(c.pos))), c.want, JSON.stringify(c));
  }
  assert.equal(crc32(new TextEncoder().encode('123456789')), 0xcbf43926);
});

test('a subscribe while the WebSocket opens waits for it', async (t) => {
  const { client, sock } = setup(t);
  await flush();
  const ws = sock();
  client.subscribe('late', {});
  assert.deepEqual(ws.take(), [], 'nothing sent before open');
  ws.open();
  assert.deepEqual(ws.take().map((c) => [c.type, c.topic]), [['subscribe', 'late']]);
});

// ScriptedEventSource stands in for the browser's EventSource.
class ScriptedEventSource {
  static all = [];
  constructor(url) {
    this.url = new URL(url);
    this.listeners = {};
    this.closed = false;
    ScriptedEventSource.all.push(this);
  }
  addEventListener(type, fn) {
    (this.listeners[type] ||= []).push(fn);
  }
  removeEventListener(type, fn) {
    this.listeners[type] = (this.listeners[type] || []).filter((f) => f !== fn);
  }
  close() {
    this.closed = true;
  }
  open() {
    this.onopen?.({});
  }
  event(f) {
    for (const fn of this.listeners[f.type] || []) fn({ data: JSON.stringify(f) });
  }
  fail() {
    this.onerror?.({});
  }
}

test('the sse transport puts topics and positions in the URL and resumes with a cursor', async (t) => {
  ScriptedEventSource.all = [];
  mock.timers.enable({ apis: ['setTimeout'] });
  t.after(() => mock.timers.reset());
  const statuses = [];
  const got = [];
  const client = connect('http://server.test/sse', {
    transport: 'sse',
    EventSource: ScriptedEventSource,
    backoffMin: 100,
    backoffMax: 100,
    onStatus: (s) => statuses.push(s.state),
    topics: [{ topic: 'saga:1', snapshot: true, onMessage: (m) => got.push(m.seq), onSnapshot: (s) => got.push(`snap@${s.position.seq}`) }],
  });
  t.after(() => client.close());
  await flush();
  let es = ScriptedEventSource.all.at(-1);
  assert.deepEqual(es.url.searchParams.getAll('topic'), ['saga:1']);
  assert.equal(es.url.searchParams.get('snapshot'), '1');
  assert.equal(es.url.searchParams.get('since'), null);
  es.open();
  es.event({ type: 'reply', id: '', ok: true, topic: 'saga:1', position: { epoch: 'e', seq: 2 } });
  es.event({ type: 'snapshot', topic: 'saga:1', position: { epoch: 'e', seq: 2 }, items: [] });
  es.event({ type: 'msg', topic: 'saga:1', epoch: 'e', seq: 3, data: 1 });
  es.event({ type: 'close', code: 4000, reason: 'server shutting down', reconnect: true });
  es.fail();
  assert.equal(es.closed, true, 'the client closes the EventSource itself');
  assert.deepEqual(statuses, ['connecting', 'connected', 'disconnected']);
  mock.timers.tick(250);
  await flush();
  es = ScriptedEventSource.all.at(-1);
  assert.equal(ScriptedEventSource.all.length, 2);
  assert.equal(es.url.searchParams.get('since'), encodeCursor(['saga:1'], new Map([['saga:1', { epoch: 'e', seq: 3 }]])));
  assert.equal(es.url.searchParams.get('snapshot'), null);
  es.open();
  es.event({ type: 'reply', id: '', ok: true, topic: 'saga:1', position: { epoch: 'e', seq: 4 }, recovered: true });
  es.event({ type: 'msg', topic: 'saga:1', epoch: 'e', seq: 3, data: 1 });
  es.event({ type: 'msg', topic: 'saga:1', epoch: 'e', seq: 4, data: 1 });
  assert.deepEqual(got, ['snap@2', 3, 4]);

  // A new topic reopens the stream with both.
  client.subscribe('saga:2', {});
  await flush();
  es = ScriptedEventSource.all.at(-1);
  assert.equal(ScriptedEventSource.all.length, 3);
  assert.deepEqual(es.url.searchParams.getAll('topic'), ['saga:1', 'saga:2']);
  assert.equal(es.url.searchParams.get('since'), encodeCursor(['saga:1', 'saga:2'], new Map([['saga:1', { epoch: 'e', seq: 4 }]])));
});

test('reconnect() connects at once, also after a stop', async (t) => {
  const { client, statuses, sock } = setup(t, { backoffMin: 60000, backoffMax: 60000 });
  await flush();
  sock().open();
  client.reconnect(); // connected: nothing to do
  assert.equal(ScriptedSocket.all.length, 1);
  sock().end(1006);
  client.reconnect();
  await flush();
  assert.equal(ScriptedSocket.all.length, 2, 'reconnect skips the wait');
  sock().open();
  sock().end(4003, 'bad request');
  assert.equal(statuses.at(-1).willReconnect, false);
  client.reconnect();
  await flush();
  assert.equal(ScriptedSocket.all.length, 3, 'reconnect after a stop');
});

test('a final message ends the subscription over WebSocket', async (t) => {
  const { client, sock } = setup(t, { backoffMin: 10, backoffMax: 10 });
  const events = [];
  const sub = client.subscribe('saga.1', {
    onMessage: (m) => events.push(['msg', m.seq, m.final]),
    onEnd: (e, s) => events.push(['end', e.topic, e.position.seq, e.message.seq, s.state]),
  });
  const other = client.subscribe('saga.2', { onMessage: (m) => events.push(['other', m.seq]) });
  await flush();
  let ws = sock();
  ws.open();
  const [c1, c2] = ws.take();
  ws.frames(
    { type: 'reply', id: c1.id, ok: true, topic: 'saga.1', position: { epoch: 'e', seq: 0 } },
    { type: 'reply', id: c2.id, ok: true, topic: 'saga.2', position: { epoch: 'e', seq: 0 } },
    { type: 'msg', topic: 'saga.1', epoch: 'e', seq: 1, data: 1 },
    { type: 'msg', topic: 'saga.1', epoch: 'e', seq: 2, data: 2, header: FINAL },
    { type: 'msg', topic: 'saga.1', epoch: 'e', seq: 3, data: 3 },
    { type: 'msg', topic: 'saga.2', epoch: 'e', seq: 1, data: 1 },
  );
  assert.deepEqual(events, [['msg', 1, false], ['msg', 2, true], ['end', 'saga.1', 2, 2, 'ended'], ['other', 1]]);
  assert.equal(sub.state, 'ended');
  assert.equal(client.subscription('saga.1'), undefined, 'the client forgets an ended subscription');
  assert.deepEqual(ws.take().map((c) => [c.type, c.topic]), [['unsubscribe', 'saga.1']]);
  sub.unsubscribe(); // nothing to do
  assert.deepEqual(ws.take(), []);
  // The WebSocket stays: saga.2 is still followed, and only it is
  // subscribed again after a reconnect.
  ws.end(1006);
  mock.timers.tick(10);
  await flush();
  ws = sock();
  ws.open();
  assert.deepEqual(ws.take().map((c) => [c.type, c.topic]), [['subscribe', 'saga.2']]);
  assert.equal(other.state, 'subscribing');
});

test('a snapshot that holds the final message ends the subscription', async (t) => {
  const { client, statuses, sock } = setup(t);
  const events = [];
  client.subscribe('saga.9', {
    snapshot: true,
    onSnapshot: (s) => events.push(['snapshot', s.items.map((m) => m.final)]),
    onMessage: (m) => events.push(['msg', m.seq]),
    onEnd: (e) => events.push(['end', e.position.seq, e.message.key]),
  });
  await flush();
  const ws = sock();
  ws.open();
  const [cmd] = ws.take();
  ws.frames(
    { type: 'reply', id: cmd.id, ok: true, topic: 'saga.9', position: { epoch: 'e', seq: 12 } },
    {
      type: 'snapshot', topic: 'saga.9', position: { epoch: 'e', seq: 12 }, items: [
        { type: 'msg', topic: 'saga.9', epoch: 'e', seq: 11, key: 'hotel', data: 1 },
        { type: 'msg', topic: 'saga.9', epoch: 'e', seq: 12, key: 'saga', data: 2, header: FINAL },
      ],
    },
    { type: 'msg', topic: 'saga.9', epoch: 'e', seq: 13, data: 3 },
  );
  assert.deepEqual(events, [['snapshot', [false, true]], ['end', 12, 'saga']]);
  assert.deepEqual(ws.take().map((c) => c.type), ['unsubscribe']);
  assert.equal(statuses.at(-1).state, 'connected', 'a WebSocket stays connected');
});

test('over SSE the client does not reconnect a stream whose topics all ended', async (t) => {
  ScriptedEventSource.all = [];
  mock.timers.enable({ apis: ['setTimeout'] });
  t.after(() => mock.timers.reset());
  const statuses = [];
  const ends = [];
  const client = connect('http://server.test/sse', {
    transport: 'sse',
    EventSource: ScriptedEventSource,
    backoffMin: 100,
    backoffMax: 100,
    onStatus: (s) => statuses.push(s),
    topics: [
      { topic: 'a', onEnd: (e) => ends.push(e.topic) },
      { topic: 'b', onEnd: (e) => ends.push(e.topic) },
    ],
  });
  t.after(() => client.close());
  await flush();
  let es = ScriptedEventSource.all.at(-1);
  es.open();
  es.event({ type: 'reply', id: '', ok: true, topic: 'a', position: { epoch: 'e', seq: 0 } });
  es.event({ type: 'reply', id: '', ok: true, topic: 'b', position: { epoch: 'e', seq: 4 } });
  es.event({ type: 'msg', topic: 'a', epoch: 'e', seq: 1, data: 1, header: FINAL });
  assert.deepEqual(ends, ['a']);

  // The connection drops before b ended: the client reopens the stream
  // with b alone.
  es.fail();
  assert.equal(statuses.at(-1).willReconnect, true);
  mock.timers.tick(100);
  await flush();
  assert.equal(ScriptedEventSource.all.length, 2);
  es = ScriptedEventSource.all.at(-1);
  assert.deepEqual(es.url.searchParams.getAll('topic'), ['b']);
  assert.equal(es.url.searchParams.get('since'), encodeCursor(['b'], new Map([['b', { epoch: 'e', seq: 4 }]])));
  es.open();
  es.event({ type: 'reply', id: '', ok: true, topic: 'b', position: { epoch: 'e', seq: 5 }, recovered: true });
  es.event({ type: 'msg', topic: 'b', epoch: 'e', seq: 5, data: 1, header: FINAL });
  es.event({ type: 'close', code: 1000, reason: 'topic ended', reconnect: false });
  es.fail(); // the server ended the response
  assert.deepEqual(ends, ['a', 'b']);
  assert.equal(es.closed, true, 'EventSource must not reconnect by itself');
  const st = statuses.at(-1);
  assert.deepEqual(
    { state: st.state, code: st.code, reason: st.reason, willReconnect: st.willReconnect },
    { state: 'disconnected', code: 1000, reason: 'topic ended', willReconnect: false },
  );
  mock.timers.tick(60000);
  await flush();
  assert.equal(ScriptedEventSource.all.length, 2, 'no reconnect after the end');

  // A new topic opens a new stream.
  client.subscribe('c', {});
  await flush();
  assert.equal(ScriptedEventSource.all.length, 3);
  assert.deepEqual(ScriptedEventSource.all.at(-1).url.searchParams.getAll('topic'), ['c']);
  assert.equal(statuses.at(-1).state, 'connecting');
});

test('an SSE client without topics waits for one', async (t) => {
  ScriptedEventSource.all = [];
  mock.timers.enable({ apis: ['setTimeout'] });
  t.after(() => mock.timers.reset());
  const statuses = [];
  const client = connect('http://server.test/sse', {
    transport: 'sse',
    EventSource: ScriptedEventSource,
    onStatus: (s) => statuses.push(s),
  });
  t.after(() => client.close());
  await flush();
  assert.equal(ScriptedEventSource.all.length, 0, 'no stream without a topic');
  assert.equal(statuses.at(-1).state, 'disconnected');
  assert.equal(statuses.at(-1).willReconnect, false);
  client.subscribe('x', {});
  await flush();
  assert.equal(ScriptedEventSource.all.length, 1);
  assert.deepEqual(ScriptedEventSource.all[0].url.searchParams.getAll('topic'), ['x']);
});

test('a close 1000 without reconnect does not stop a client that still follows topics', async (t) => {
  const { client, statuses, sock } = setup(t, { backoffMin: 10, backoffMax: 10 });
  client.subscribe('live', {});
  await flush();
  const ws = sock();
  ws.open();
  ws.take();
  ws.frames({ type: 'close', code: 1000, reason: 'topic ended', reconnect: false });
  ws.end(1000, 'topic ended');
  assert.equal(statuses.at(-1).willReconnect, true);
  mock.timers.tick(10);
  await flush();
  assert.equal(ScriptedSocket.all.length, 2);
});

// --- credentials: never in a URL by default, refreshed before they expire ---

const SECRET = 's3cr3t.t0k3n';

test('the client never builds a URL with the token', async (t) => {
  // WebSocket, by default: the token goes in the first message.
  const { sock } = setup(t, { token: () => SECRET });
  await flush();
  const ws = sock();
  assert.ok(!ws.url.includes(SECRET), ws.url);
  assert.deepEqual(ws.protocols, [PROTOCOL]);
  ws.open();
  assert.deepEqual(ws.take()[0], { id: '1', type: 'auth', token: SECRET });
});

test('with tokenIn protocol the token travels in Sec-WebSocket-Protocol', async (t) => {
  const { sock } = setup(t, { token: SECRET, tokenIn: 'protocol' });
  await flush();
  const ws = sock();
  assert.ok(!ws.url.includes(SECRET), ws.url);
  assert.deepEqual(ws.protocols, [PROTOCOL, protocolBearer(SECRET)]);
  assert.equal(protocolBearer('a?b'), 'bearer.YT9i');
  ws.open();
  assert.ok(ws.take().every((c) => c.type !== 'auth'));
});

test('over SSE the token travels in a cookie for the stream path, not in the URL', async (t) => {
  ScriptedEventSource.all = [];
  const cookies = [];
  globalThis.document = { set cookie(v) { cookies.push(v); } };
  t.after(() => delete globalThis.document);
  const c = connect('https://server.test/app/sse?x=1', {
    transport: 'sse', EventSource: ScriptedEventSource, token: async () => SECRET, topics: ['a'],
  });
  t.after(() => c.close());
  await flush();
  const es = ScriptedEventSource.all.at(-1);
  assert.ok(!es.url.toString().includes(SECRET), es.url.toString());
  assert.deepEqual(cookies, [`access_token=${SECRET}; Path=/app/sse; SameSite=Strict; Secure`]);
});

test('tokenIn query still puts the token in the URL', async (t) => {
  const { sock } = setup(t, { token: SECRET, tokenIn: 'query' });
  await flush();
  const ws = sock();
  assert.equal(ws.url, `ws://server.test/ws?token=${SECRET}`);
  ws.open();
  assert.ok(ws.take().every((c) => c.type !== 'auth'));
});

test('refreshDelay refreshes a margin before expiry, or half-way', () => {
  assert.equal(refreshDelay(100000, 0, 30000), 70000);
  assert.equal(refreshDelay(40000, 0, 30000), 20000);
  assert.equal(refreshDelay(0, 10, 30000), 0);
});

test('the client refreshes its credentials in place before they expire', async (t) => {
  const asked = [];
  let n = 0;
  const { client, statuses, sock } = setup(t, {
    pingInterval: 0,
    token: ({ reason }) => {
      asked.push(reason);
      return `tok${++n}`;
    },
  });
  await flush();
  const ws = sock();
  ws.open();
  const [auth] = ws.take();
  const expires = Date.now() + 60000;
  ws.frames({ type: 'reply', id: auth.id, ok: true, expires });
  assert.equal(client.expires, expires);
  mock.timers.tick(29000);
  await flush();
  assert.deepEqual(ws.take(), [], 'no refresh 31s before expiry');
  mock.timers.tick(1000);
  await flush();
  const [refresh] = ws.take();
  assert.deepEqual(refresh, { id: refresh.id, type: 'refresh', token: 'tok2' });
  ws.frames({ type: 'reply', id: refresh.id, ok: true, expires: expires + 60000 });
  assert.equal(client.expires, expires + 60000);
  mock.timers.tick(90000);
  await flush();
  const [again] = ws.take();
  assert.equal(again.type, 'refresh');
  assert.equal(again.token, 'tok3');
  assert.deepEqual(asked, ['connect', 'refresh', 'refresh']);
  assert.equal(statuses.at(-1).state, 'connected');
  assert.equal(ScriptedSocket.all.length, 1, 'no reconnect');
});

test('an expiry frame schedules a refresh too; a healthy connection closed with 4002 reconnects soon', async (t) => {
  const { statuses, sock } = setup(t, { pingInterval: 0, healthyAfter: 100, backoffMin: 100, backoffMax: 60000, token: () => 'tok' });
  await flush();
  const ws = sock();
  ws.open();
  ws.take();
  ws.frames({ type: 'expiry', expires: Date.now() + 10000 });
  mock.timers.tick(5000);
  await flush();
  assert.equal(ws.take()[0].type, 'refresh');
  ws.end(4002, 'credentials expired');
  const st = statuses.at(-1);
  assert.equal(st.willReconnect, true);
  assert.ok(st.retryIn < 250, `retryIn ${st.retryIn}, want < 250 after a healthy connection`);
});

test('no URL the client builds carries the token, across reopens and reconnects', async (t) => {
  ScriptedEventSource.all = [];
  mock.timers.enable({ apis: ['setTimeout'] });
  t.after(() => mock.timers.reset());
  const cookies = [];
  globalThis.document = { set cookie(v) { cookies.push(v); } };
  t.after(() => delete globalThis.document);
  let n = 0;
  const c = connect('http://server.test/sse', {
    transport: 'sse', EventSource: ScriptedEventSource, backoffMin: 10, backoffMax: 10, healthyAfter: 50,
    token: () => `${SECRET}${++n}`, topics: ['a'],
  });
  t.after(() => c.close());
  await flush();
  let es = ScriptedEventSource.all.at(-1);
  es.open();
  c.subscribe('b'); // reopens the stream with both topics
  await flush();
  es = ScriptedEventSource.all.at(-1);
  es.open();
  mock.timers.tick(50); // healthy
  es.event({ type: 'close', code: 4002, reason: 'credentials expired', reconnect: false });
  es.fail();
  mock.timers.tick(250);
  await flush();
  assert.equal(ScriptedEventSource.all.length, 3);
  for (const s of ScriptedEventSource.all) assert.ok(!s.url.toString().includes(SECRET), s.url.toString());
  assert.deepEqual(cookies.map((v) => v.split(';')[0]), [1, 2, 3].map((i) => `access_token=${SECRET}${i}`));
});

test('reconnectPlan stops after a server-side disconnect', () => {
  const o = { backoffMin: 500, backoffMax: 30000 };
  for (const code of [CloseCode.DISCONNECTED, 4500, 4999]) {
    assert.equal(reconnectPlan(code, 1, o).reconnect, false, `code ${code}`);
  }
  for (const code of [4100, 4499]) {
    assert.equal(reconnectPlan(code, 1, o).reconnect, true, `code ${code}`);
  }
});

test('a server-side subscription is accepted, delivered, resumed and ended by the server', async (t) => {
  const infos = [];
  const got = [];
  const snaps = [];
  const ends = [];
  const { client, sock } = setup(t, {
    backoffMin: 100,
    backoffMax: 1000,
    onServerSubscribe: (info) => {
      infos.push(info);
      return {
        onMessage: (m) => got.push(m.seq),
        onSnapshot: (s) => snaps.push(s.items.length),
        onUnsubscribed: (i) => ends.push(i),
      };
    },
  });
  await flush();
  let ws = sock();
  ws.open();
  ws.frames(
    { type: 'subscribed', topic: 'saga/1', position: { epoch: 'e', seq: 2 }, snapshot: true },
    { type: 'snapshot', topic: 'saga/1', position: { epoch: 'e', seq: 2 }, items: [{ type: 'msg', topic: 'saga/1', epoch: 'e', seq: 2, key: 's', data: 1 }] },
    { type: 'msg', topic: 'saga/1', epoch: 'e', seq: 3, data: 3 },
  );
  assert.deepEqual(infos, [{ topic: 'saga/1', position: { epoch: 'e', seq: 2 }, snapshot: true }]);
  assert.deepEqual(snaps, [1]);
  assert.deepEqual(got, [3]);
  const sub = client.subscription('saga/1');
  assert.equal(sub.server, true);
  assert.equal(sub.state, 'active');
  assert.deepEqual(ws.take(), [], 'nothing sent for an accepted server-side subscription');

  // After a reconnect the client resumes it as its own.
  ws.end(1006);
  mock.timers.tick(100);
  await flush();
  ws = sock();
  ws.open();
  const [cmd] = ws.take();
  assert.deepEqual(cmd, { id: cmd.id, type: 'subscribe', topic: 'saga/1', since: { epoch: 'e', seq: 3 } });
  ws.frames({ type: 'reply', id: cmd.id, ok: true, position: { epoch: 'e', seq: 3 }, recovered: true });

  ws.frames({ type: 'unsubscribed', topic: 'saga/1' }, { type: 'msg', topic: 'saga/1', epoch: 'e', seq: 4, data: 4 });
  assert.deepEqual(ends, [{ topic: 'saga/1', position: { epoch: 'e', seq: 3 } }]);
  assert.equal(sub.state, 'closed');
  assert.equal(client.subscription('saga/1'), undefined);
  assert.deepEqual(got, [3]);
});

test('without onServerSubscribe a server-side subscription is declined', async (t) => {
  const { client, sock } = setup(t);
  await flush();
  const ws = sock();
  ws.open();
  ws.frames({ type: 'subscribed', topic: 'x', position: { epoch: 'e', seq: 0 } });
  const [cmd] = ws.take();
  assert.deepEqual(cmd, { id: cmd.id, type: 'unsubscribe', topic: 'x' });
  assert.equal(client.subscription('x'), undefined);
});

test('a subscribed frame answers the app\'s own pending subscribe of the topic', async (t) => {
  const { client, sock } = setup(t, { onServerSubscribe: () => ({}) });
  const got = [];
  client.subscribe('t', { onMessage: (m) => got.push(m.seq) });
  await flush();
  const ws = sock();
  ws.open();
  const [cmd] = ws.take();
  ws.frames(
    { type: 'subscribed', topic: 't', position: { epoch: 'e', seq: 5 } },
    { type: 'reply', id: cmd.id, ok: false, topic: 't', error: { code: 'already_subscribed', message: 'x' } },
    { type: 'msg', topic: 't', epoch: 'e', seq: 6, data: 6 },
  );
  assert.equal(client.subscription('t').state, 'active');
  assert.equal(client.subscription('t').server, false);
  assert.deepEqual(got, [6]);
});

test('client surfaces join and leave and queries presence', async (t) => {
  const { client, sock } = setup(t);
  const events = [];
  client.subscribe('room:1', {
    onMessage: (m) => events.push(`msg ${m.data}`),
    onJoin: (e) => events.push(`join ${e.client.principal} ${JSON.stringify(e.client.info)}`),
    onLeave: (e) => events.push(`leave ${e.client.principal}`),
  });
  await flush();
  await assert.rejects(client.presence('room:1'), (e) => e.code === 'disconnected');
  const ws = sock();
  ws.open();
  const [sub] = ws.take();
  const bob = { principal: 'bob', session: 'n1:2', info: { name: 'Bob' } };
  ws.frames(
    { type: 'join', topic: 'room:1', client: bob },
    { type: 'reply', id: sub.id, ok: true, topic: 'room:1', position: { epoch: 'e', seq: 0 } },
    { type: 'join', topic: 'room:1', client: bob },
    { type: 'msg', topic: 'room:1', epoch: 'e', seq: 1, data: 'hi' },
    { type: 'leave', topic: 'room:1', client: bob },
    { type: 'join', topic: 'other', client: bob },
  );
  assert.deepEqual(events, ['join bob {"name":"Bob"}', 'msg hi', 'leave bob']);

  const p = client.presence('room:1');
  const n = client.presenceCount('room:1');
  const [q1, q2] = ws.take();
  assert.deepEqual(q1, { id: q1.id, type: 'presence', topic: 'room:1' });
  assert.deepEqual(q2, { id: q2.id, type: 'presence_count', topic: 'room:1' });
  ws.frames(
    { type: 'reply', id: q1.id, ok: true, topic: 'room:1', presence: [bob] },
    { type: 'reply', id: q2.id, ok: true, topic: 'room:1', count: 1 },
  );
  assert.deepEqual(await p, [bob]);
  assert.equal(await n, 1);
  const denied = client.presence('room:2');
  const [q3] = ws.take();
  ws.frames({ type: 'reply', id: q3.id, ok: false, topic: 'room:2', error: { code: 'forbidden', message: 'no' } });
  await assert.rejects(denied, (e) => e.code === 'forbidden');
});
