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

form.addEventListener('submit', async (ev) => {
  ev.preventDefault();
  errorBox.textContent = '';
  const fail = form.elements.fail.value;
  const transport = form.elements.transport.value;
  let booking;
  try {
    const res = await fetch('/bookings', {
      method: 'POST',
      headers: { 'Content-Type': 'application/json' },
      body: JSON.stringify(fail ? { fail } : {}),
    });
    if (!res.ok) throw new Error(`${res.status} ${(await res.text()).trim()}`);
    booking = await res.json();
  } catch (err) {
    errorBox.textContent = `Could not start the booking: ${err.message}`;
    return;
  }
  follow(new BookingView(booking, fail, transport), booking.topic, transport, booking.token);
});

// follow subscribes to the saga's topic: first its snapshot (the current
// state of every step), then every update in order. The saga publishes its
// final update with fanout.WithFinal, which ends the subscription (onEnd,
// live or in the snapshot of a late page). Over SSE and gRPC-Web the
// server then ends the stream and the client does not reconnect it; a
// WebSocket carries any number of topics, so the page closes it. token, from
// a server run with -secret, is the booking's bearer token.
function follow(view, topic, transport, token) {
  if (transport === 'grpc-web') {
    let ended = false;
    followGrpcWeb(topic, {
      token,
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
    });
    return;
  }
  let client = null;
  let ended = false;
  client = connect(transport === 'websocket' ? '/ws' : '/events', {
    transport,
    token,
    onStatus: (s) => {
      if (!ended) view.status(s);
      else if (s.state === 'disconnected') view.closed(s);
    },
    topics: [{
      topic,
      snapshot: true,
      onSnapshot: (snap) => view.snapshot(snap),
      onMessage: (msg) => view.apply(msg, 'live'),
      onEnd: () => {
        ended = true;
        view.ended();
        // The callback may run while connect() is still constructing.
        if (transport === 'websocket') queueMicrotask(() => client.close());
      },
      onError: (err) => view.error(err),
    }],
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
    this.el = template.content.firstElementChild.cloneNode(true);
    this.el.dataset.tx = booking.tx;
    this.el.dataset.transport = transport;
    this.el.querySelector('.tx').textContent = booking.tx;
    const link = new URLSearchParams({ tx: booking.tx, transport });
    if (booking.token) link.set('token', booking.token);
    this.el.querySelector('.link').href = `?${link}`;
    this.el.querySelector('.title').textContent = fail ? `Booking (fails at ${fail})` : 'Booking';
    this.stepsEl = this.el.querySelector('.steps');
    this.logEl = this.el.querySelector('.log');
    this.connEl = this.el.querySelector('.conn');
    this.outcomeEl = this.el.querySelector('.outcome');
    this.steps = new Map();
    for (const s of booking.steps || []) this.step(s);
    list.prepend(this.el);
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
      : 'the saga ended: stream closed';
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
// from any replica: the snapshot shows where they stand.
const params = new URLSearchParams(location.search);
for (const tx of params.getAll('tx')) {
  if (!/^[0-9a-f]{1,64}$/.test(tx)) {
    errorBox.textContent = `Not a transaction id: ${tx}`;
    continue;
  }
  const transport = TRANSPORTS[params.get('transport')] ? params.get('transport') : 'sse';
  follow(new BookingView({ tx, steps: [] }, '', transport), `saga.${tx}`, transport, params.get('token') || undefined);
}
