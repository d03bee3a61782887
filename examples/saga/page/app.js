// The saga page: starts bookings and follows each one over SSE or
// WebSocket with fanout's browser client, or over gRPC-Web (the
// SubscribeService/Subscribe server stream, with @connectrpc/connect-web,
// bundled in grpcweb.js), until its final update.
import { connect } from '/fanout.js';
import { follow as followGrpcWeb } from './grpcweb.js';

const TRANSPORTS = { sse: 'SSE', websocket: 'WebSocket', 'grpc-web': 'gRPC-Web' };

const form = document.getElementById('book');
const list = document.getElementById('bookings');
const errorBox = document.getElementById('error');
const template = document.getElementById('booking');

// The page's user: the server keeps it in an HttpOnly cookie and answers
// its token at GET /token. The token is the credential of the page's
// streams, which fanout.js carries where no log sees it: the WebSocket's
// first message (an auth command) and, for SSE, the access_token cookie.
// No URL the page requests carries a token.
let userRequest = null;
function user() {
  userRequest ??= fetch('/token', { cache: 'no-store' }).then(async (res) => {
    if (!res.ok) throw new Error(`${res.status} ${(await res.text()).trim()}`);
    return res.json();
  }).catch((err) => {
    userRequest = null;
    throw err;
  });
  return userRequest;
}
const userToken = async () => (await user()).token;

// views are the booking cards, by transaction id.
const views = new Map();

const txOf = (topic) => (/^saga\.([0-9a-f]{1,64})$/.exec(topic) || [])[1];

// The page's WebSocket, as its user. The server subscribes it to the
// sagas the user starts with "Follow over WebSocket" (a server-side
// subscription, on every tab of the user and every replica): the page
// never names their topics. It stays open for the next booking.
let wsStatus = { state: 'connecting' };
let wsUp;
const wsConnected = new Promise((resolve) => { wsUp = resolve; });
const ws = connect('/ws', {
  transport: 'websocket',
  token: userToken,
  onStatus: (s) => {
    wsStatus = s;
    if (s.state === 'connected') wsUp();
    document.body.dataset.ws = s.state;
    for (const v of views.values()) {
      if (v.el.dataset.saga === 'ended') continue;
      if (v.transport === 'websocket') v.status(s);
      if (s.state === 'connected') v.countViewers();
    }
  },
  onServerSubscribe: (info) => {
    const tx = txOf(info.topic);
    if (!tx) return null;
    const view = views.get(tx) ?? new BookingView({ tx, steps: [] }, null, 'websocket');
    if (view.transport !== 'websocket' || view.subscribed) return null; // followed otherwise here
    view.subscribed = true;
    view.el.dataset.delivery = 'server';
    view.status(wsStatus);
    return callbacks(view);
  },
});

form.addEventListener('submit', async (ev) => {
  ev.preventDefault();
  errorBox.textContent = '';
  const fail = form.elements.fail.value;
  const transport = form.elements.transport.value;
  const server = transport === 'websocket';
  let booking;
  try {
    // The server subscribes the page's WebSocket when the booking starts:
    // it must be connected by then.
    if (server) await within(wsConnected, 10000, 'the WebSocket is not connected');
    const res = await fetch('/bookings', {
      method: 'POST',
      headers: { 'Content-Type': 'application/json', Authorization: `Bearer ${await userToken()}` },
      body: JSON.stringify({ ...(fail ? { fail } : {}), ...(server ? { subscribe: true } : {}) }),
    });
    if (!res.ok) throw new Error(`${res.status} ${(await res.text()).trim()}`);
    booking = await res.json();
  } catch (err) {
    errorBox.textContent = `Could not start the booking: ${err.message}`;
    return;
  }
  // The server-side subscription may have come first, and made the card.
  const view = views.get(booking.tx) ?? new BookingView(booking, fail, transport);
  view.booked(booking, fail);
  if (!server) follow(view, booking.topic, transport, userToken);
});

// within rejects when p takes longer than ms.
function within(p, ms, what) {
  let timer;
  return Promise.race([p, new Promise((_, reject) => {
    timer = setTimeout(() => reject(new Error(what)), ms);
  })]).finally(() => clearTimeout(timer));
}

// callbacks are a card's subscription callbacks: first the snapshot (the
// current state of every step), then every update in order. The saga
// publishes its final update with fanout.WithFinal, which ends the
// subscription (onEnd, live or in the snapshot of a late page).
function callbacks(view, onEnd) {
  return {
    snapshot: true,
    onSnapshot: (snap) => view.snapshot(snap),
    onMessage: (msg) => view.apply(msg, 'live'),
    onEnd: () => {
      view.ended();
      // A WebSocket carries any number of topics: the client unsubscribes
      // the ended one and the connection stays.
      if (view.transport === 'websocket') view.closed({ reason: '' });
      onEnd?.();
    },
    onUnsubscribed: () => view.closed({ reason: '' }),
    onError: (err) => view.error(err),
    // Who follows the saga: counted again at every join and leave, which
    // the server sends for saga topics (its TopicOptions).
    onSubscribed: () => view.countViewers(),
    onJoin: () => view.countViewers(),
    onLeave: () => view.countViewers(),
  };
}

// follow subscribes to the saga's topic by its name, over SSE, gRPC-Web or
// the page's WebSocket. Over SSE and gRPC-Web the server ends the stream
// after the final update, and the client does not reconnect it. token, a
// string or a function, is the credential: the user's token, or the
// booking's token of a link (a server run with -secret).
function follow(view, topic, transport, token) {
  if (transport === 'grpc-web') {
    // A gRPC-Web stream gets no join and leave: the page asks for the
    // count every few seconds while the saga runs.
    const poll = setInterval(() => {
      if (view.el.dataset.saga === 'ended' || view.el.dataset.stream === 'refused') clearInterval(poll);
      else view.countViewers();
    }, 3000);
    let ended = false;
    (async () => followGrpcWeb(topic, {
      token: typeof token === 'function' ? await token() : token,
      onStatus: (s) => {
        if (!ended && s.state !== 'disconnected') view.status(s);
        else if (ended) view.closed({ ...s, reason: s.byServer ? s.reason : '' });
        else view.refused(s);
      },
      onSnapshot: (snap) => view.snapshot(snap),
      onMessage: (msg) => view.apply(msg, 'live'),
      onEnd: () => {
        ended = true;
        view.ended();
      },
      onError: (err) => view.error(err),
    }))().catch((err) => view.error({ code: 'token', message: err.message }));
    return;
  }
  if (transport === 'websocket') {
    view.subscribed = true;
    view.status(wsStatus);
    ws.subscribe(topic, callbacks(view));
    return;
  }
  let ended = false;
  connect('/events', {
    transport,
    token,
    onStatus: (s) => {
      if (!ended) view.status(s);
      else if (s.state === 'disconnected') view.closed(s);
    },
    topics: [{ topic, ...callbacks(view, () => { ended = true; }) }],
  });
}

// extra is what an update's detail adds to its step and status.
function extra(u) {
  const d = u.detail || '';
  return d === `${u.step} ${u.status}` ? '' : d.replace(`${u.step} ${u.status}: `, '');
}

// BookingView is one booking's card.
class BookingView {
  constructor(booking, fail, transport) {
    this.transport = transport;
    this.topic = `saga.${booking.tx}`;
    this.asks = 0;
    this.el = template.content.firstElementChild.cloneNode(true);
    this.el.dataset.tx = booking.tx;
    this.el.dataset.transport = transport;
    this.el.querySelector('.tx').textContent = booking.tx;
    this.booked(booking, fail);
    this.stepsEl = this.el.querySelector('.steps');
    this.logEl = this.el.querySelector('.log');
    this.connEl = this.el.querySelector('.conn');
    this.outcomeEl = this.el.querySelector('.outcome');
    this.steps = new Map();
    for (const s of booking.steps || []) this.step(s);
    views.set(booking.tx, this);
    list.prepend(this.el);
  }

  // countViewers shows how many sessions follow the booking, on every
  // replica and over every transport: the presence count of its topic,
  // asked with the presence command over the page's WebSocket (a later
  // answer replaces an earlier one only when it is the latest asked).
  countViewers() {
    const ask = ++this.asks;
    ws.presenceCount(this.topic).then((n) => {
      if (ask !== this.asks) return;
      const el = this.el.querySelector('.viewers');
      el.hidden = false;
      el.textContent = `${n} viewer${n === 1 ? '' : 's'}`;
      this.el.dataset.viewers = String(n);
    }, () => {}); // not connected yet: asked again once it is
  }

  // booked sets what the booking's request told: its title and its link.
  // A booking's token (-secret) goes in the link's fragment, which the
  // browser never sends.
  booked(booking, fail) {
    const link = new URLSearchParams({ tx: booking.tx, transport: this.transport });
    const frag = booking.token ? `#${new URLSearchParams({ token: booking.token })}` : '';
    this.el.querySelector('.link').href = `?${link}${frag}`;
    if (fail !== null) this.el.querySelector('.title').textContent = fail ? `Booking (fails at ${fail})` : 'Booking';
  }

  step(name) {
    let li = this.steps.get(name);
    if (!li) {
      li = document.createElement('li');
      li.dataset.step = name;
      li.dataset.status = 'unknown';
      li.innerHTML = '<span class="name"></span><span class="status"></span><span class="detail"></span>';
      li.querySelector('.name').textContent = name;
      this.steps.set(name, li);
      this.stepsEl.append(li);
    }
    return li;
  }

  snapshot(snap) {
    // The snapshot replaces what the card shows: the current state of
    // every step, at snap.position.
    for (const m of snap.items) this.apply(m, 'snapshot');
  }

  apply(msg, how) {
    const u = msg.data;
    if (!u || typeof u !== 'object') return;
    const item = document.createElement('li');
    item.dataset.seq = msg.seq;
    item.dataset.how = how;
    const detail = extra(u);
    item.textContent = `#${msg.seq} ${u.step} ${u.status}${detail ? ` — ${detail}` : ''}${how === 'snapshot' ? ' (snapshot)' : ''}`;
    this.logEl.append(item);
    if (u.step === 'saga') {
      this.el.dataset.state = u.status;
      this.outcomeEl.textContent = u.status;
      // Lay the steps out in the saga's order (appending moves them).
      for (const s of u.steps || []) this.stepsEl.append(this.step(s));
      return;
    }
    const li = this.step(u.step);
    li.dataset.status = u.status;
    li.querySelector('.status').textContent = u.status;
    li.querySelector('.detail').textContent = extra(u);
  }

  status(s) {
    this.el.dataset.stream = s.state === 'connected' ? 'open' : s.state;
    this.connEl.textContent = s.state === 'connected'
      ? `following over ${TRANSPORTS[this.el.dataset.transport]}`
      : `${s.state}${s.retryIn != null ? `, retrying in ${Math.round(s.retryIn / 100) / 10}s` : ''}`;
  }

  // ended: the final update came; the stream closes next.
  ended() {
    this.el.dataset.saga = 'ended';
    this.connEl.textContent = 'the saga ended';
  }

  // closed: the stream closed after the end, by the server (SSE: 1000
  // 'topic ended') or by the page.
  closed(s) {
    const byServer = s.reason === 'topic ended';
    this.el.dataset.stream = 'ended';
    this.el.dataset.closedBy = byServer ? 'server' : 'page';
    this.connEl.textContent = byServer
      ? 'the saga ended: the server closed the stream'
      : `the saga ended: ${this.transport === 'websocket' ? 'unsubscribed' : 'stream closed'}`;
  }

  error(err) {
    this.el.dataset.error = err.code;
    this.connEl.textContent = `error: ${err.code} ${err.message}`;
  }

  // refused: the server refused the stream (gRPC-Web); error() said why.
  refused() {
    this.el.dataset.stream = 'refused';
    this.el.dataset.state = 'refused';
    this.outcomeEl.textContent = 'refused';
  }
}

// A link with ?tx=<id> (repeatable) follows bookings that already started,
// from any replica: the snapshot shows where they stand. A booking's token
// (-secret) comes in the fragment, #token=..., which the browser never
// sends to a server; without one SSE and gRPC-Web follow anonymously.
// Over WebSocket the page follows as its user (with -secret: the bookings
// the user started, while they run).
const params = new URLSearchParams(location.search);
const linkToken = new URLSearchParams(location.hash.slice(1)).get('token') || undefined;
for (const tx of params.getAll('tx')) {
  if (!/^[0-9a-f]{1,64}$/.test(tx)) {
    errorBox.textContent = `Not a transaction id: ${tx}`;
    continue;
  }
  if (views.has(tx)) continue;
  const transport = TRANSPORTS[params.get('transport')] ? params.get('transport') : 'sse';
  follow(new BookingView({ tx, steps: [] }, '', transport), `saga.${tx}`, transport, linkToken);
}
