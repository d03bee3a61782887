// fanout.js: the browser client of fanout, one dependency-free ES module.
//
//   import { connect } from '/fanout.js';
//   const client = connect('/ws', { onStatus: (s) => console.log(s.state) });
//   client.subscribe('inventory.SKU-1', {
//     snapshot: true,
//     onSnapshot: (snap) => render(snap.items),
//     onMessage: (msg) => update(msg.data),
//   });
//
// The client keeps one connection and restores it with exponential backoff
// and full jitter. After a reconnect it subscribes every topic again with
// since = the last position it delivered, so the server replays what was
// missed; it drops duplicates and detects gaps by seq. When history no longer
// reaches back, it calls onReset and then onSnapshot with the topic's current
// state. A topic's final message (published with fanout.WithFinal, as a
// saga's last state) ends its subscription: onEnd, state 'ended'.
// fanout.d.ts documents the API; docs/PROTOCOL.md the wire protocol.

/** Default options of connect. */
export const defaults = Object.freeze({
  transport: 'websocket',
  backoffMin: 500,
  backoffMax: 30000,
  healthyAfter: 5000,
  pingInterval: 25000,
  pingTimeout: 10000,
  connectTimeout: 10000,
  refreshMargin: 30000,
});

/** The WebSocket subprotocol of the JSON protocol. */
export const PROTOCOL = 'fanout.v1';

/**
 * protocolBearer returns the Sec-WebSocket-Protocol entry that carries
 * token: 'bearer.' and the token's UTF-8 bytes in unpadded base64url.
 */
export function protocolBearer(token) {
  const b64 = encodeBase64(new TextEncoder().encode(token));
  return 'bearer.' + b64.replace(/\+/g, '-').replace(/\//g, '_').replace(/=+$/, '');
}

/**
 * refreshDelay returns how long to wait, at now, before refreshing
 * credentials that expire at expires (ms since the epoch): until margin ms
 * before, or half-way when less than twice the margin is left.
 */
export function refreshDelay(expires, now, margin) {
  const left = Math.max(0, expires - now);
  return Math.max(0, left - Math.min(margin, left / 2));
}

/** Close codes of the protocol (docs/PROTOCOL.md). */
export const CloseCode = Object.freeze({
  NORMAL: 1000,
  GOING_AWAY: 1001,
  PROTOCOL: 1002,
  ABNORMAL: 1006,
  TOO_LARGE: 1009,
  INTERNAL: 1011,
  SHUTDOWN: 4000,
  SLOW_CONSUMER: 4001,
  UNAUTHORIZED: 4002,
  BAD_REQUEST: 4003,
  RATE_LIMITED: 4004,
  RESYNC: 4005,
  TIMEOUT: 4006,
  DISCONNECTED: 4007,
});

/** An error reported by the server or the client, with a protocol code. */
export class FanoutError extends Error {
  constructor(code, message) {
    super(message || code);
    this.name = 'FanoutError';
    this.code = code;
  }
}

// ---------------------------------------------------------------------------
// Pure logic: no I/O, no timers. Exported for tests and for other clients.

/**
 * backoffDelay returns the delay in ms before reconnect attempt number
 * attempt (1 for the first retry): a uniformly random value between 0 and
 * min(max, min * 2^(attempt-1)) ("full jitter").
 */
export function backoffDelay(attempt, min, max, random = Math.random) {
  const n = Math.max(1, Math.floor(attempt));
  const cap = Math.min(max, min * Math.pow(2, Math.min(n - 1, 30)));
  return Math.floor(random() * Math.max(0, cap));
}

/**
 * reconnectPlan decides what to do after a connection closed with code:
 * { reconnect, delay, refreshToken }. attempt counts consecutive failed
 * connections including this one (1 when a healthy connection dropped).
 */
export function reconnectPlan(code, attempt, opts, random = Math.random) {
  const min = opts.backoffMin, max = opts.backoffMax;
  switch (code) {
    case CloseCode.BAD_REQUEST:
    case CloseCode.PROTOCOL:
      // The server rejected what this client sends: retrying unchanged
      // cannot help.
      return { reconnect: false, delay: 0, refreshToken: false };
    case CloseCode.DISCONNECTED:
      // Server code disconnected this user on purpose.
      return { reconnect: false, delay: 0, refreshToken: false };
    case CloseCode.UNAUTHORIZED:
      // Credentials rejected or expired: get new ones, and back off hard so
      // that a client with a bad token does not hammer the server.
      return { reconnect: true, delay: Math.floor(max / 2 + random() * (max / 2)), refreshToken: true };
    case CloseCode.SHUTDOWN:
      // The server is draining: reconnect at once (to another replica),
      // spread over a few hundred ms. A server that keeps shutting us out
      // gets the normal backoff.
      if (attempt <= 1) {
        return { reconnect: true, delay: Math.floor(random() * Math.min(min, 250)), refreshToken: false };
      }
  }
  if (code >= 4500 && code <= 4999) {
    // An application's own disconnect code that forbids reconnecting
    // (4100 to 4499 reconnect after the backoff).
    return { reconnect: false, delay: 0, refreshToken: false };
  }
  return { reconnect: true, delay: backoffDelay(attempt, min, max, random), refreshToken: false };
}

/**
 * parseFrames splits a server message into its frames: JSON objects, one per
 * line. Lines that are not JSON objects are passed to onBad (if given) and
 * skipped.
 */
export function parseFrames(text, onBad) {
  const frames = [];
  let start = 0;
  while (start <= text.length) {
    let end = text.indexOf('\n', start);
    if (end < 0) end = text.length;
    let line = text.slice(start, end);
    start = end + 1;
    if (line.endsWith('\r')) line = line.slice(0, -1);
    if (line.trim() === '') continue;
    let f;
    try {
      f = JSON.parse(line);
    } catch (err) {
      if (onBad) onBad(line, err);
      continue;
    }
    if (f === null || typeof f !== 'object' || Array.isArray(f) || typeof f.type !== 'string') {
      if (onBad) onBad(line, new Error('not a frame'));
      continue;
    }
    frames.push(f);
  }
  return frames;
}

/** decodeBase64 turns standard base64 into bytes. */
export function decodeBase64(s) {
  const bin = atob(s);
  const b = new Uint8Array(bin.length);
  for (let i = 0; i < bin.length; i++) b[i] = bin.charCodeAt(i);
  return b;
}

/** encodeBase64 turns bytes into standard base64. */
export function encodeBase64(bytes) {
  let bin = '';
  for (let i = 0; i < bytes.length; i += 0x8000) {
    bin += String.fromCharCode.apply(null, bytes.subarray(i, i + 0x8000));
  }
  return btoa(bin);
}

/** The message header that marks a topic's final message. */
export const HEADER_FINAL = 'fanout-final';

/** isFinal reports whether a "msg" frame (or snapshot item) is its topic's last. */
export function isFinal(f) {
  return !!(f && f.header && typeof f.header === 'object' && f.header[HEADER_FINAL] === 'true');
}

/**
 * decodeMessage turns a "msg" frame (or a snapshot item) into a Message:
 * data is the parsed JSON value when the payload was JSON ("data"), or a
 * Uint8Array when it was not ("data64"); final tells whether it is the
 * topic's last message.
 */
export function decodeMessage(f) {
  const m = {
    topic: f.topic,
    epoch: f.epoch || '',
    seq: f.seq || 0,
    key: f.key || '',
    time: typeof f.time === 'number' ? f.time : undefined,
    header: f.header || undefined,
    final: isFinal(f),
    data: undefined,
  };
  if ('data' in f) m.data = f.data;
  else if (typeof f.data64 === 'string') m.data = decodeBase64(f.data64);
  return m;
}

/**
 * classify says what to do with a message at position msg given the last
 * delivered position last ({epoch, seq}, or null when unknown):
 * 'deliver' (the next one), 'duplicate' (already delivered) or 'gap'
 * (messages are missing, or the epoch changed: resume from last).
 */
export function classify(last, msg) {
  const lastSeq = last ? last.seq : 0;
  const lastEpoch = last ? last.epoch : '';
  if (msg.epoch === lastEpoch && msg.seq <= lastSeq) return 'duplicate';
  if (msg.seq === lastSeq + 1 && (msg.epoch === lastEpoch || lastSeq === 0)) return 'deliver';
  return 'gap';
}

/** newIdempotencyKey returns a random idempotency key for a publish. */
export function newIdempotencyKey() {
  const c = globalThis.crypto;
  if (c && typeof c.randomUUID === 'function') return `js-${c.randomUUID()}`;
  const b = new Uint8Array(16);
  if (c && typeof c.getRandomValues === 'function') c.getRandomValues(b);
  else for (let i = 0; i < b.length; i++) b[i] = Math.floor(Math.random() * 256);
  return `js-${Array.from(b, (x) => x.toString(16).padStart(2, '0')).join('')}`;
}

/** retryable reports whether a failed subscribe may succeed if tried again. */
export function retryable(code) {
  return code === 'unavailable' || code === 'internal' || code === 'closed' ||
    code === 'rate_limited' || code === 'already_subscribed' || code === 'disconnected';
}

// ---------------------------------------------------------------------------
// The client.

/** connect creates a client and starts connecting. */
export function connect(url, options) {
  return new Client(url, options);
}

const noop = () => {};

/** Client is one connection to a fanout server, restored until close(). */
export class Client {
  constructor(url, options = {}) {
    this._opts = { ...defaults, ...options };
    const o = this._opts;
    if (o.transport !== 'websocket' && o.transport !== 'sse') {
      throw new TypeError(`fanout: unknown transport ${JSON.stringify(o.transport)}`);
    }
    if (!(o.backoffMin >= 0) || !(o.backoffMax >= o.backoffMin)) {
      throw new TypeError('fanout: need 0 <= backoffMin <= backoffMax');
    }
    absoluteURL(url); // throws on a URL that can never work
    this._url = url;
    this._subs = new Map(); // topic -> Subscription
    this._pending = new Map(); // command id -> {onReply}
    this._unsent = []; // publishes whose connection dropped, sent again on the next
    this._nextId = 0;
    this._attempt = 0; // consecutive failed connections
    this._conn = null; // the current connection, or null
    this._gen = 0; // bumped per connection; events of older ones are ignored
    this._timers = new Set();
    this._retry = null; // {timer, refreshToken} while waiting to reconnect
    this._idle = false; // disconnected because there is nothing to follow
    this._closed = false;
    this._status = Object.freeze({ state: 'connecting', attempt: 0 });
    this._onOnline = () => this.reconnect();
    if (typeof globalThis.addEventListener === 'function') {
      globalThis.addEventListener('online', this._onOnline);
    }
    for (const t of o.topics || []) {
      const spec = typeof t === 'string' ? { topic: t } : t;
      this.subscribe(spec.topic, spec);
    }
    this._open('connect');
  }

  /** When the connection's credentials expire (ms since the epoch), or null. */
  get expires() {
    return this._expires ?? null;
  }

  /** The current connection status. */
  get status() {
    return this._status;
  }

  /** The subscription to topic, or undefined. */
  subscription(topic) {
    return this._subs.get(topic);
  }

  /**
   * subscribe starts receiving topic's messages; it returns the
   * Subscription. A client has at most one subscription per topic.
   */
  subscribe(topic, opts = {}) {
    if (this._closed) throw new FanoutError('closed', 'fanout: client is closed');
    if (typeof topic !== 'string' || topic === '') throw new TypeError('fanout: topic must be a non-empty string');
    if (this._subs.has(topic)) throw new FanoutError('already_subscribed', `fanout: already subscribed to ${topic}`);
    const sub = new Subscription(this, topic, opts);
    this._subs.set(topic, sub);
    // A WebSocket that is still opening subscribes everything once open; an
    // SSE stream must be reopened with the new topic either way. A client
    // that went idle, its topics all ended, connects again.
    if (this._conn && (this._conn.ready || this._opts.transport === 'sse')) this._conn.subscribe(sub);
    else if (this._idle) this._open('connect');
    return sub;
  }

  /**
   * publish sends data to topic (WebSocket only, where the server allows
   * clients to publish) and resolves with the message's position. Bytes
   * (Uint8Array, ArrayBuffer) travel as data64, anything else as JSON.
   *
   * opts.key makes the message the topic's state for that key;
   * opts.header (at most 32 strings, 4 KiB) travels with the message;
   * opts.idempotencyKey (at most 256 bytes) makes the server publish the
   * message once however often it is sent: without one, publish makes a
   * random key. A publish whose connection drops before its reply is sent
   * again with the same key on the next connection, so that it is
   * published once; it is rejected only when the client stops or closes,
   * or when opts.signal (an AbortSignal) aborts, after which it may or may
   * not have been published. Called while the client is not connected,
   * publish rejects at once with 'disconnected'.
   */
  publish(topic, data, opts = {}) {
    if (this._opts.transport !== 'websocket') {
      return Promise.reject(new FanoutError('bad_request', 'fanout: publish needs the websocket transport'));
    }
    if (!this._conn || !this._conn.ready) {
      return Promise.reject(new FanoutError('disconnected', 'fanout: not connected'));
    }
    const cmd = { type: 'publish', topic };
    if (data instanceof ArrayBuffer) data = new Uint8Array(data);
    if (data instanceof Uint8Array) cmd.data64 = encodeBase64(data);
    else if (data === undefined) return Promise.reject(new TypeError('fanout: publish needs data'));
    else cmd.data = data;
    if (opts.key) cmd.key = opts.key;
    cmd.idempotency_key = opts.idempotencyKey || newIdempotencyKey();
    if (opts.header) cmd.header = { ...opts.header };
    const signal = opts.signal;
    if (signal && signal.aborted) return Promise.reject(signal.reason);
    return new Promise((resolve, reject) => {
      const p = { cmd, done: false };
      const onAbort = () => p.settle(null, signal.reason);
      p.settle = (pos, err) => {
        if (p.done) return;
        p.done = true;
        if (signal) signal.removeEventListener('abort', onAbort);
        const i = this._unsent.indexOf(p);
        if (i >= 0) this._unsent.splice(i, 1);
        if (err) reject(err);
        else resolve(pos);
      };
      if (signal) signal.addEventListener('abort', onAbort, { once: true });
      this._sendPublish(p);
    });
  }

  /**
   * presence resolves with who is subscribed to topic on every node
   * ([{principal, session, info}]), where the server keeps presence for the
   * topic and allows this client to read it (WebSocket only). Rejects with
   * 'disconnected' when not connected.
   */
  presence(topic) {
    return this._query({ type: 'presence', topic }).then((f) => f.presence || []);
  }

  /** presenceCount resolves with how many sessions are subscribed to topic. */
  presenceCount(topic) {
    return this._query({ type: 'presence_count', topic }).then((f) => f.count || 0);
  }

  _query(cmd) {
    if (this._opts.transport !== 'websocket') {
      return Promise.reject(new FanoutError('bad_request', `fanout: ${cmd.type} needs the websocket transport`));
    }
    if (!this._conn || !this._conn.ready) {
      return Promise.reject(new FanoutError('disconnected', 'fanout: not connected'));
    }
    return new Promise((resolve, reject) => {
      this._command(cmd, (f) => (f.ok ? resolve(f) : reject(replyError(f))));
    });
  }

  // _sendPublish sends the publish p; when its connection drops first, p
  // waits in _unsent for the next connection.
  _sendPublish(p) {
    this._command(p.cmd, (f) => {
      if (p.done) return;
      if (f.ok) p.settle(f.position);
      else if (f.error && f.error.code === 'disconnected' && !this._closed) this._unsent.push(p);
      else p.settle(null, replyError(f));
    });
  }

  // _failUnsent rejects the publishes waiting for a connection: the client
  // stopped.
  _failUnsent(reason) {
    for (const p of [...this._unsent]) {
      p.settle(null, new FanoutError('disconnected', `fanout: ${reason || 'stopped'}; the publish may or may not have happened`));
    }
    this._unsent = [];
  }

  /**
   * reconnect connects now when the client is disconnected: waiting for its
   * next attempt, or stopped by a close code that does not retry.
   */
  reconnect() {
    if (this._closed || this._status.state !== 'disconnected') return;
    let reason = 'connect';
    if (this._retry) {
      if (this._retry.refreshToken) reason = 'unauthorized';
      this._clearTimer(this._retry.timer);
      this._retry = null;
    }
    this._open(reason);
  }

  /** close ends the connection for good. */
  close() {
    if (this._closed) return;
    this._closed = true;
    if (typeof globalThis.removeEventListener === 'function') {
      globalThis.removeEventListener('online', this._onOnline);
    }
    const conn = this._conn;
    this._conn = null;
    this._gen++;
    if (conn) conn.close(CloseCode.NORMAL, 'client closed');
    for (const t of this._timers) clearTimeout(t);
    this._timers.clear();
    this._retry = null;
    this._failPending();
    this._failUnsent('client closed');
    for (const sub of this._subs.values()) sub._state = 'closed';
    this._setStatus({ state: 'disconnected', code: CloseCode.NORMAL, reason: 'client closed', willReconnect: false, attempt: this._attempt });
  }

  // --- internals ---

  _setTimer(fn, ms) {
    const t = setTimeout(() => {
      this._timers.delete(t);
      fn();
    }, ms);
    this._timers.add(t);
    return t;
  }

  _clearTimer(t) {
    if (t === null || t === undefined) return;
    clearTimeout(t);
    this._timers.delete(t);
  }

  _setStatus(s) {
    this._status = Object.freeze(s);
    call(this._opts.onStatus, this._status);
  }

  _nextCommandId() {
    this._nextId++;
    return String(this._nextId);
  }

  // _command sends cmd with a fresh id; onReply gets its reply frame.
  _command(cmd, onReply) {
    const id = this._nextCommandId();
    this._pending.set(id, { onReply });
    this._conn.send({ id, ...cmd });
    return id;
  }

  // _following reports whether a subscription still waits for messages.
  _following() {
    for (const sub of this._subs.values()) {
      if (sub._state !== 'failed' && sub._state !== 'closed') return true;
    }
    return false;
  }

  // _goIdle leaves the client disconnected without a retry: it has nothing
  // to follow (an SSE stream needs topics), until the next subscribe.
  _goIdle(code, reason) {
    this._idle = true;
    this._attempt = 0;
    const s = { state: 'disconnected', willReconnect: false, attempt: 0 };
    if (code !== undefined) Object.assign(s, { code, reason });
    this._setStatus(s);
  }

  _failPending() {
    const pending = [...this._pending.values()];
    this._pending.clear();
    for (const p of pending) {
      p.onReply({ type: 'reply', ok: false, error: { code: 'disconnected', message: 'fanout: connection lost' } });
    }
  }

  async _open(reason) {
    const gen = ++this._gen;
    this._idle = false;
    if (this._opts.transport === 'sse' && !this._following()) {
      this._goIdle();
      return;
    }
    this._setStatus({ state: 'connecting', attempt: this._attempt });
    let token;
    try {
      token = await resolveToken(this._opts.token, reason);
    } catch (err) {
      if (gen !== this._gen) return;
      this._onClosed(gen, 0, `token: ${err && err.message ? err.message : err}`, false);
      return;
    }
    if (gen !== this._gen || this._closed) return;
    const make = this._opts.transport === 'sse' ? openSSE : openWebSocket;
    let conn;
    try {
      conn = make(this, gen, this._url, token);
    } catch (err) {
      this._onClosed(gen, 0, `connect: ${err && err.message ? err.message : err}`, false);
      return;
    }
    this._conn = conn;
    conn.connectTimer = this._setTimer(() => {
      if (gen === this._gen && !conn.ready) this._drop(gen, CloseCode.TIMEOUT, 'connect timeout');
    }, this._opts.connectTimeout);
  }

  // _onOpen: the connection is up.
  _onOpen(gen) {
    if (gen !== this._gen) return;
    const conn = this._conn;
    conn.ready = true;
    this._clearTimer(conn.connectTimer);
    conn.healthyTimer = this._setTimer(() => {
      if (gen !== this._gen) return;
      conn.healthy = true;
      this._attempt = 0;
    }, this._opts.healthyAfter);
    this._setStatus({ state: 'connected', attempt: this._attempt });
    if (conn.pings && this._opts.pingInterval > 0) this._schedulePing(gen);
    conn.opened();
    const unsent = this._unsent;
    this._unsent = [];
    for (const p of unsent) this._sendPublish(p);
  }

  _schedulePing(gen) {
    const conn = this._conn;
    conn.pingTimer = this._setTimer(() => {
      if (gen !== this._gen) return;
      const timeout = this._setTimer(() => {
        if (gen === this._gen) this._drop(gen, CloseCode.TIMEOUT, 'ping timeout');
      }, this._opts.pingTimeout);
      this._command({ type: 'ping' }, () => {
        this._clearTimer(timeout);
        if (gen === this._gen) this._schedulePing(gen);
      });
    }, this._opts.pingInterval);
  }

  // _drop abandons the connection without waiting for a close handshake
  // that a dead connection would never finish.
  _drop(gen, code, reason) {
    if (gen !== this._gen) return;
    const conn = this._conn;
    if (conn) conn.close(CloseCode.NORMAL, reason);
    this._onClosed(gen, code, reason, conn ? conn.healthy : false);
  }

  // _reopen replaces connection gen by a new one at once, without counting a
  // failure (the SSE transport, when its set of topics changes).
  _reopen(gen) {
    if (gen !== this._gen || this._closed) return;
    const conn = this._conn;
    if (conn) {
      for (const t of [conn.connectTimer, conn.healthyTimer, conn.pingTimer, conn.refreshTimer]) this._clearTimer(t);
      conn.close(CloseCode.NORMAL, 'reopening');
    }
    this._conn = null;
    this._gen++;
    this._failPending();
    for (const sub of this._subs.values()) sub._disconnected();
    this._open('connect');
  }

  // _onFrames handles frames received on connection gen.
  _onFrames(gen, frames) {
    for (const f of frames) {
      if (gen !== this._gen) return; // a callback closed or replaced the connection
      switch (f.type) {
        case 'reply': {
          const p = this._pending.get(f.id);
          if (p) {
            this._pending.delete(f.id);
            p.onReply(f);
          }
          break;
        }
        case 'msg': {
          const sub = this._subs.get(f.topic);
          if (sub) sub._onMsg(f);
          break;
        }
        case 'snapshot': {
          const sub = this._subs.get(f.topic);
          if (sub) sub._onSnapshot(f);
          break;
        }
        case 'join':
        case 'leave': {
          const sub = this._subs.get(f.topic);
          if (sub) sub._onPresence(f);
          break;
        }
        case 'close':
          // The transport's own close follows; the frame says why.
          this._conn.closeFrame = f;
          break;
        case 'expiry':
          this._expiry(gen, f.expires);
          break;
        case 'subscribed':
          this._onServerSubscribed(f);
          break;
        case 'unsubscribed': {
          const sub = this._subs.get(f.topic);
          if (sub) sub._onUnsubscribed();
          break;
        }
        default:
        // Unknown frame types are for newer clients.
      }
    }
  }

  // _expiry schedules the refresh of connection gen's credentials, which
  // expire at expires (ms since the epoch; undefined: never). Only a
  // WebSocket with a token function refreshes in place; an SSE stream ends
  // at expiry with 4002 and reconnects with a fresh token.
  _expiry(gen, expires) {
    const conn = this._conn;
    if (gen !== this._gen || !conn) return;
    this._clearTimer(conn.refreshTimer);
    conn.refreshTimer = null;
    this._expires = typeof expires === 'number' ? expires : null;
    if (this._expires === null || this._opts.transport !== 'websocket' || typeof this._opts.token !== 'function') return;
    conn.refreshTimer = this._setTimer(() => this._refresh(gen), refreshDelay(this._expires, Date.now(), this._opts.refreshMargin));
  }

  // _refresh asks the token function for new credentials and sends them in
  // a refresh command; the reply says when they expire. A refresh that
  // fails leaves the connection until the server closes it with 4002.
  async _refresh(gen) {
    let token;
    try {
      token = await resolveToken(this._opts.token, 'refresh');
    } catch {
      return;
    }
    const conn = this._conn;
    if (gen !== this._gen || !conn || !conn.ready || typeof token !== 'string' || token === '') return;
    this._command({ type: 'refresh', token }, (f) => {
      if (f.ok) this._expiry(gen, f.expires);
    });
  }

  // _onServerSubscribed takes a subscription that server code made: the
  // subscribed frame is the ok reply to a subscribe the client did not
  // send. options.onServerSubscribe gives its callbacks; without them the
  // client declines it.
  _onServerSubscribed(f) {
    const reply = { type: 'reply', ok: true, topic: f.topic, position: f.position };
    const mine = this._subs.get(f.topic);
    if (mine) {
      // The app subscribed too and the server took the server's subscribe
      // first: this frame answers the app's, which the server refuses.
      if (mine._state === 'subscribing' && mine._awaiting !== null) {
        this._pending.delete(mine._awaiting);
        mine._onReply(reply);
      }
      return;
    }
    const fn = this._opts.onServerSubscribe;
    let opts = null;
    if (typeof fn === 'function') {
      try {
        opts = fn({ topic: f.topic, position: f.position || null, snapshot: f.snapshot === true });
      } catch (err) {
        setTimeout(() => {
          throw err;
        });
      }
    }
    if (!opts) {
      this._command({ type: 'unsubscribe', topic: f.topic }, noop);
      return;
    }
    const sub = new Subscription(this, f.topic, { ...opts, snapshot: f.snapshot === true, since: undefined });
    sub.server = true;
    this._subs.set(f.topic, sub);
    sub._state = 'subscribing';
    sub._onReply(reply);
  }

  // _onClosed: connection gen ended with code and reason.
  _onClosed(gen, code, reason, healthy) {
    if (gen !== this._gen || this._closed) return;
    const conn = this._conn;
    if (conn) {
      if (conn.closeFrame) {
        code = conn.closeFrame.code;
        reason = conn.closeFrame.reason || reason;
      }
      healthy = conn.healthy;
      for (const t of [conn.connectTimer, conn.healthyTimer, conn.pingTimer, conn.refreshTimer]) this._clearTimer(t);
    }
    this._expires = null;
    const cf = conn ? conn.closeFrame : null;
    this._conn = null;
    this._gen++;
    this._failPending();
    for (const sub of this._subs.values()) sub._disconnected();
    // The server ends an SSE stream (1000, reconnect false) once its topics
    // all delivered their final message: with nothing left to follow, the
    // client does not reconnect.
    const over = cf && cf.code === CloseCode.NORMAL && cf.reconnect === false;
    if ((over || this._opts.transport === 'sse') && !this._following()) {
      this._goIdle(code, reason);
      return;
    }
    this._attempt = healthy ? 1 : this._attempt + 1;
    let plan = reconnectPlan(code, this._attempt, this._opts);
    if (code === CloseCode.UNAUTHORIZED && healthy) {
      // Credentials that served a healthy connection expired (an SSE
      // stream's always do): reconnect soon, with a fresh token.
      plan = { ...plan, delay: Math.floor(Math.random() * Math.min(this._opts.backoffMin, 250)) };
    }
    if (!plan.reconnect) {
      this._failUnsent(reason);
      this._setStatus({ state: 'disconnected', code, reason, willReconnect: false, attempt: this._attempt });
      return;
    }
    const timer = this._setTimer(() => {
      this._retry = null;
      this._open(plan.refreshToken ? 'unauthorized' : 'connect');
    }, plan.delay);
    this._retry = { timer, refreshToken: plan.refreshToken };
    this._setStatus({ state: 'disconnected', code, reason, willReconnect: true, retryIn: plan.delay, attempt: this._attempt });
  }
}

/** Subscription is a client's interest in one topic. */
export class Subscription {
  constructor(client, topic, opts) {
    this._client = client;
    this.topic = topic;
    this._opts = opts;
    this._position = opts.since ? { epoch: opts.since.epoch || '', seq: opts.since.seq } : null;
    this._state = 'pending'; // pending | subscribing | active | failed | closed | ended
    this._awaiting = null; // id of the subscribe command awaiting its reply
    this._attempt = 0;
    this._retryTimer = null;
    this.server = false; // made by server code (options.onServerSubscribe)
  }

  /** The position of the last message delivered (or of the snapshot). */
  get position() {
    return this._position;
  }

  /** pending, subscribing, active, failed, closed or ended. */
  get state() {
    return this._state;
  }

  /** unsubscribe stops the subscription. */
  unsubscribe() {
    if (this._state === 'closed' || this._state === 'ended') return;
    const c = this._client;
    const wasLive = this._state === 'subscribing' || this._state === 'active';
    this._state = 'closed';
    c._clearTimer(this._retryTimer);
    if (c._subs.get(this.topic) === this) c._subs.delete(this.topic);
    if (wasLive && c._conn && c._conn.ready) c._conn.unsubscribe(this);
  }

  // _onUnsubscribed: the server ended the subscription (an unsubscribed
  // frame); it is not resumed.
  _onUnsubscribed() {
    if (this._state === 'closed' || this._state === 'ended' || this._state === 'failed') return;
    const c = this._client;
    this._state = 'closed';
    c._clearTimer(this._retryTimer);
    this._retryTimer = null;
    if (this._awaiting !== null) c._pending.delete(this._awaiting);
    this._awaiting = null;
    if (c._subs.get(this.topic) === this) c._subs.delete(this.topic);
    call(this._opts.onUnsubscribed, { topic: this.topic, position: this._position }, this);
  }

  // _request is the subscribe command for the next (re)subscribe.
  _request() {
    const cmd = { type: 'subscribe', topic: this.topic };
    if (this._position) cmd.since = { epoch: this._position.epoch, seq: this._position.seq };
    else if (this._opts.snapshot) cmd.snapshot = true;
    return cmd;
  }

  _onReply(f) {
    if (this._state === 'closed') return;
    this._awaiting = null;
    if (!f.ok) {
      const err = replyError(f);
      if (err.code === 'disconnected') return; // resubscribed on reconnect
      call(this._opts.onError, err, this);
      if (!retryable(err.code)) {
        this._state = 'failed';
        return;
      }
      this._state = 'pending';
      this._attempt++;
      const c = this._client;
      const delay = backoffDelay(this._attempt, c._opts.backoffMin, c._opts.backoffMax);
      this._retryTimer = c._setTimer(() => {
        this._retryTimer = null;
        if (this._state === 'pending' && c._conn && c._conn.ready) c._conn.subscribe(this);
      }, delay);
      return;
    }
    this._state = 'active';
    this._attempt = 0;
    const resumed = this._position !== null;
    const pos = f.position ? { epoch: f.position.epoch || '', seq: f.position.seq || 0 } : null;
    if (f.recovered === false) {
      // History no longer reaches back: what the app holds is stale, and the
      // snapshot that follows is the topic's state.
      this._position = pos;
      call(this._opts.onReset, { topic: this.topic, position: pos }, this);
    } else if (f.recovered !== true) {
      // A fresh subscribe: live messages follow the reply's position.
      this._position = pos;
    }
    // recovered === true: history follows, from the position we asked for.
    call(this._opts.onSubscribed, { topic: this.topic, position: pos, resumed, recovered: f.recovered }, this);
  }

  _onMsg(f) {
    if (this._state !== 'active') return; // from before the last subscribe
    const verdict = classify(this._position, f);
    if (verdict === 'duplicate') return;
    if (verdict === 'gap') {
      this._resync();
      return;
    }
    this._position = { epoch: f.epoch, seq: f.seq };
    const m = decodeMessage(f);
    call(this._opts.onMessage, m, this);
    if (m.final) this._end(m);
  }

  _onPresence(f) {
    if (this._state !== 'active') return;
    const fn = f.type === 'join' ? this._opts.onJoin : this._opts.onLeave;
    call(fn, { topic: this.topic, client: f.client }, this);
  }

  _onSnapshot(f) {
    if (this._state !== 'active') return;
    const pos = f.position ? { epoch: f.position.epoch || '', seq: f.position.seq || 0 } : this._position;
    this._position = pos;
    const items = (f.items || []).map(decodeMessage);
    call(this._opts.onSnapshot, { topic: this.topic, position: pos, items }, this);
    const final = items.find((m) => m.final);
    if (final) this._end(final);
  }

  // _end ends the subscription after the topic's final message: nothing
  // follows it. A WebSocket unsubscribes; the server ends an SSE stream
  // by itself once all its topics ended.
  _end(m) {
    if (this._state !== 'active') return; // a callback unsubscribed or closed
    const c = this._client;
    this._state = 'ended';
    c._clearTimer(this._retryTimer);
    this._retryTimer = null;
    if (c._subs.get(this.topic) === this) c._subs.delete(this.topic);
    if (c._conn && c._conn.ready) c._conn.ended(this);
    call(this._opts.onEnd, { topic: this.topic, position: this._position, message: m }, this);
  }

  // _resync resubscribes from the last delivered position after a gap.
  _resync() {
    const c = this._client;
    if (!c._conn || !c._conn.ready) return;
    c._conn.resync(this);
  }

  _disconnected() {
    this._awaiting = null;
    if (this._state === 'subscribing' || this._state === 'active') this._state = 'pending';
    this._client._clearTimer(this._retryTimer);
    this._retryTimer = null;
  }
}

function replyError(f) {
  const e = f.error || {};
  return new FanoutError(e.code || 'internal', e.message || 'fanout: command failed');
}

async function resolveToken(token, reason) {
  if (typeof token === 'function') return token({ reason });
  return token;
}

// call runs a user callback; an exception in it must not break the client.
function call(fn, ...args) {
  if (typeof fn !== 'function') return;
  try {
    fn(...args);
  } catch (err) {
    setTimeout(() => {
      throw err;
    });
  }
}

function absoluteURL(url) {
  const base = globalThis.location ? globalThis.location.href : undefined;
  return new URL(url, base);
}

// ---------------------------------------------------------------------------
// Transports. A connection object has: ready, healthy, pings (whether the
// client pings), opened() (called once it is up), send(cmd), subscribe(sub),
// unsubscribe(sub), ended(sub) (its final message came), resync(sub),
// close(code, reason).

// tokenIn returns where the token travels on transport: the option's, or
// the default ('message' on WebSocket, 'cookie' on SSE).
function tokenIn(client) {
  const t = client._opts.transport;
  const v = client._opts.tokenIn || (t === 'sse' ? 'cookie' : 'message');
  const ok = t === 'sse' ? ['cookie', 'query'] : ['message', 'protocol', 'query'];
  if (!ok.includes(v)) throw new TypeError(`fanout: tokenIn ${JSON.stringify(v)} does not work with ${t}`);
  return v;
}

// The WebSocket sends the token in its first message (an auth command) by
// default, or in Sec-WebSocket-Protocol; never in the URL unless tokenIn
// is 'query', where proxies and access logs see it.
function openWebSocket(client, gen, url, token) {
  const u = absoluteURL(url);
  if (u.protocol === 'http:') u.protocol = 'ws:';
  else if (u.protocol === 'https:') u.protocol = 'wss:';
  const how = tokenIn(client);
  if (token && how === 'query') u.searchParams.set('token', token);
  const WS = client._opts.WebSocket || globalThis.WebSocket;
  // Offering the subprotocol tells the server that credentials may come
  // in the first message.
  const protocols = token && how === 'protocol' ? [PROTOCOL, protocolBearer(token)] : [PROTOCOL];
  const ws = new WS(u.toString(), protocols);
  ws.binaryType = 'arraybuffer';
  const decoder = typeof TextDecoder === 'function' ? new TextDecoder() : null;
  const conn = {
    ready: false,
    healthy: false,
    pings: true,
    closeFrame: null,
    send(cmd) {
      ws.send(JSON.stringify(cmd));
    },
    opened() {
      for (const sub of client._subs.values()) {
        if (sub._state !== 'failed' && sub._state !== 'closed') conn.subscribe(sub);
      }
    },
    subscribe(sub) {
      sub._state = 'subscribing';
      sub._awaiting = client._command(sub._request(), (f) => sub._onReply(f));
    },
    unsubscribe(sub) {
      client._command({ type: 'unsubscribe', topic: sub.topic }, noop);
    },
    ended(sub) {
      // The server keeps a WebSocket's subscriptions until told.
      client._command({ type: 'unsubscribe', topic: sub.topic }, noop);
    },
    resync(sub) {
      // Leave and subscribe again from the last delivered position; frames
      // of the old subscription are dropped until the new reply.
      client._command({ type: 'unsubscribe', topic: sub.topic }, noop);
      conn.subscribe(sub);
    },
    close(code, reason) {
      ws.onopen = ws.onmessage = ws.onclose = ws.onerror = null;
      try {
        ws.close(code, reason.slice(0, 100));
      } catch {
        // already closed
      }
    },
  };
  ws.onopen = () => {
    if (token && how === 'message' && gen === client._gen) {
      // First, before any other command: the server runs commands in
      // order, so the subscribes that follow may go at once.
      client._command({ type: 'auth', token }, (f) => {
        if (f.ok) client._expiry(gen, f.expires);
      });
    }
    client._onOpen(gen);
  };
  ws.onmessage = (ev) => {
    let text = ev.data;
    if (typeof text !== 'string') {
      if (!decoder) return;
      text = decoder.decode(text instanceof ArrayBuffer ? new Uint8Array(text) : text);
    }
    client._onFrames(gen, parseFrames(text));
  };
  ws.onclose = (ev) => client._onClosed(gen, ev.code, ev.reason || '', conn.healthy);
  ws.onerror = noop; // a close event follows
  return conn;
}

// openSSE follows the subscribed topics over Server-Sent Events
// (transport/sse): the topics travel in the URL (?topic=a&topic=b), their
// positions in a since cursor, and each event carries one frame of the
// WebSocket protocol. The client, not EventSource, owns reconnects: on any
// error it closes the EventSource and opens a new one after its backoff,
// with a cursor of the positions it delivered. Subscribing a topic later
// reopens the stream with the new set. Publishing is not possible.
//
// The token travels in the access_token cookie by default ('cookie'): the
// client sets it, scoped to the stream's path, SameSite=Strict (and Secure
// on https), before it opens the stream. A page whose server set the cookie
// at login passes no token. tokenIn 'query' puts it in the URL instead,
// where proxies and access logs see it.
function openSSE(client, gen, url, token) {
  const u = absoluteURL(url);
  if (token && tokenIn(client) === 'query') u.searchParams.set('token', token);
  else if (token) setTokenCookie(u, token);
  const subs = [...client._subs.values()].filter((s) => s._state !== 'failed' && s._state !== 'closed');
  const positions = new Map();
  for (const s of subs) {
    u.searchParams.append('topic', s.topic);
    s._state = 'subscribing';
    if (s._position) positions.set(s.topic, s._position);
  }
  if (positions.size > 0) u.searchParams.set('since', encodeCursor(subs.map((s) => s.topic), positions));
  if (subs.some((s) => !s._position && s._opts.snapshot)) u.searchParams.set('snapshot', '1');
  const ES = client._opts.EventSource || globalThis.EventSource;
  const es = new ES(u.toString());
  let reopening = false;
  const conn = {
    ready: false,
    healthy: false,
    pings: false, // the server's heartbeats are comments, which EventSource hides
    closeFrame: null,
    opened() {},
    send() {
      throw new FanoutError('bad_request', 'fanout: the sse transport takes no commands');
    },
    subscribe() {
      // A new topic needs a new stream; the subscribes of one tick share it.
      if (reopening) return;
      reopening = true;
      queueMicrotask(() => client._reopen(gen));
    },
    unsubscribe() {
      // The stream keeps carrying the topic until it is reopened; its
      // frames are dropped meanwhile.
    },
    ended() {
      // The server ends the stream once every topic of it ended.
    },
    resync() {
      if (reopening) return;
      reopening = true;
      queueMicrotask(() => client._reopen(gen));
    },
    close() {
      es.onopen = es.onmessage = es.onerror = null;
      for (const t of sseEvents) es.removeEventListener(t, onEvent);
      es.close();
    },
  };
  const onEvent = (ev) => {
    const frames = parseFrames(ev.data);
    for (const f of frames) {
      if (gen !== client._gen) return;
      if (f.type === 'reply') {
        // Subscribe replies carry no id: the stream subscribed by itself.
        const sub = client._subs.get(f.topic);
        if (sub && sub._state === 'subscribing') sub._onReply(f);
      } else {
        client._onFrames(gen, [f]);
      }
    }
  };
  es.onopen = () => client._onOpen(gen);
  for (const t of sseEvents) es.addEventListener(t, onEvent);
  es.onerror = () => {
    // EventSource would retry by itself, at its own pace; the client
    // reconnects instead, so that backoff, status and close codes work as
    // on WebSocket.
    const cf = conn.closeFrame;
    conn.close();
    client._onClosed(gen, cf ? cf.code : CloseCode.ABNORMAL, cf ? cf.reason : 'stream failed or ended', conn.healthy);
  };
  return conn;
}

const sseEvents = ['reply', 'msg', 'snapshot', 'close', 'expiry', 'join', 'leave'];

// setTokenCookie sets the access_token cookie for the SSE stream at u.
function setTokenCookie(u, token) {
  // A cookie value may hold no space, quote, comma, semicolon or backslash.
  if (!/^[\x21\x23-\x2b\x2d-\x3a\x3c-\x5b\x5d-\x7e]*$/.test(token)) {
    throw new FanoutError('bad_request', "fanout: the token cannot travel in a cookie; use tokenIn: 'query'");
  }
  const doc = globalThis.document;
  if (!doc) throw new FanoutError('bad_request', 'fanout: no document to set the access_token cookie in');
  let c = `access_token=${token}; Path=${u.pathname}; SameSite=Strict`;
  if (u.protocol === 'https:') c += '; Secure';
  doc.cookie = c;
}

const crcTable = (() => {
  const t = new Uint32Array(256);
  for (let n = 0; n < 256; n++) {
    let c = n;
    for (let k = 0; k < 8; k++) c = c & 1 ? 0xedb88320 ^ (c >>> 1) : c >>> 1;
    t[n] = c >>> 0;
  }
  return t;
})();

/** crc32 continues the CRC-32 (IEEE) crc over bytes. */
export function crc32(bytes, crc = 0) {
  let c = ~crc >>> 0;
  for (let i = 0; i < bytes.length; i++) c = crcTable[(c ^ bytes[i]) & 0xff] ^ (c >>> 8);
  return ~c >>> 0;
}

function pushUvarint(out, v) {
  while (v >= 0x80) {
    out.push((v % 0x80) | 0x80);
    v = Math.floor(v / 0x80);
  }
  out.push(v);
}

/**
 * encodeCursor returns the SSE cursor (version 1 of docs/PROTOCOL.md) of a
 * stream of topics, with each topic at its position in positions (a Map of
 * topic to {epoch, seq}); topics without one are subscribed afresh.
 */
export function encodeCursor(topics, positions) {
  const sorted = [...new Set(topics)].sort();
  const enc = new TextEncoder();
  const epochs = [];
  for (const t of sorted) {
    const p = positions.get(t);
    if (p && !epochs.includes(p.epoch)) epochs.push(p.epoch);
  }
  const body = [];
  pushUvarint(body, epochs.length);
  for (const e of epochs) {
    const b = enc.encode(e);
    pushUvarint(body, b.length);
    for (const x of b) body.push(x);
  }
  for (const t of sorted) {
    const p = positions.get(t);
    if (!p) {
      body.push(0);
      continue;
    }
    pushUvarint(body, epochs.indexOf(p.epoch) + 1);
    pushUvarint(body, p.seq);
  }
  const sum = crc32(body, crc32(enc.encode(sorted.map((t) => t + '\n').join(''))));
  const bin = new Uint8Array(5 + body.length);
  bin[0] = 1;
  bin[1] = sum >>> 24;
  bin[2] = (sum >>> 16) & 0xff;
  bin[3] = (sum >>> 8) & 0xff;
  bin[4] = sum & 0xff;
  bin.set(body, 5);
  return encodeBase64(bin).replace(/\+/g, '-').replace(/\//g, '_').replace(/=+$/, '');
}
