// The saga page's gRPC-Web client: it follows one topic over the
// server-streaming fanout.v1.SubscribeService/Subscribe, with
// @connectrpc/connect-web and the messages that protoc-gen-es generated from
// fanout.proto. build.sh bundles it into ../page/grpcweb.js.
//
// A subscription first gets the topic's snapshot (or, on a resume, what it
// missed), then every message in order. When the stream breaks (a network
// cut, a server that drains or restarts), it subscribes again with since set
// to the last position it received, so nothing is lost or repeated; if the
// server says that history no longer reaches back (recovered=false), the
// snapshot follows. The stream ends when the topic delivered its final
// message: the server closes it with 1000 "topic ended", and the client
// does not reconnect.
import { Code, ConnectError, createClient } from '@connectrpc/connect';
import { createGrpcWebTransport } from '@connectrpc/connect-web';
import { SubscribeService } from '../../../../transport/grpc/es/fanout/v1/fanout_pb.js';

/** The header that marks a topic's final message. */
const FINAL = 'fanout-final';

/**
 * Codes after which subscribing again cannot help: the request itself is
 * refused. Every other code (Unavailable for a drain, Aborted, a network
 * error as Unknown, ...) means "reconnect and resume".
 */
const REFUSALS = new Set([
  Code.InvalidArgument,
  Code.NotFound,
  Code.AlreadyExists,
  Code.PermissionDenied,
  Code.FailedPrecondition,
  Code.OutOfRange,
  Code.Unimplemented,
  Code.Unauthenticated,
]);

/** codeName turns a Code into the gRPC name in snake case: "permission_denied". */
export function codeName(code) {
  return (Code[code] || 'unknown').replace(/[A-Z]/g, (c, i) => (i ? '_' : '') + c.toLowerCase());
}

const decoder = new TextDecoder();

/**
 * message converts a fanout.v1.Message into what the page shows: data
 * parsed as JSON when it is JSON, the bytes otherwise.
 */
function message(m) {
  let data = m.data;
  try {
    data = JSON.parse(decoder.decode(m.data));
  } catch {
    // not JSON: keep the bytes
  }
  return { topic: m.topic, epoch: m.epoch, seq: Number(m.seq), key: m.key, data, final: m.headers[FINAL] === 'true' };
}

/**
 * follow subscribes to topic over gRPC-Web and returns { close() }.
 *
 * options:
 *   baseUrl      where the services are mounted (default: this origin)
 *   token        a bearer token, sent as "Authorization: Bearer <token>"
 *   snapshot     ask for the topic's state first (default true)
 *   onSnapshot   ({topic, position, items}) the topic's state per key
 *   onMessage    ({topic, epoch, seq, key, data, final}) each message, in order
 *   onStatus     ({state, retryIn, code, reason}): state is 'connecting',
 *                'connected', 'reconnecting' (retryIn ms) or 'disconnected'
 *                (reason 'topic ended' after the final message)
 *   onEnd        () the final message came
 *   onError      ({code, status, message}) a refusal; the client stops
 *   minDelay, maxDelay   reconnection backoff bounds, in ms (250, 5000)
 */
export function follow(topic, options = {}) {
  const o = { baseUrl: location.origin, snapshot: true, minDelay: 250, maxDelay: 5000, ...options };
  const client = createClient(SubscribeService, createGrpcWebTransport({ baseUrl: o.baseUrl }));
  const call = (name, ...args) => {
    try {
      o[name]?.(...args);
    } catch (err) {
      console.error(`grpcweb: ${name}:`, err);
    }
  };
  let position = null; // {epoch, seq}: the last one received
  let closed = false;
  let abort = null;
  let wake = null;

  const sleep = (ms) =>
    new Promise((resolve) => {
      const timer = setTimeout(resolve, ms);
      wake = () => {
        clearTimeout(timer);
        resolve();
      };
    });

  // once runs one Subscribe call; it returns 'end' after the final message,
  // 'stop' after a refusal, and otherwise how it broke: {progressed, shutdown}.
  async function once() {
    const ac = new AbortController();
    abort = () => ac.abort();
    const sub = { topic };
    if (position) sub.since = position;
    else sub.snapshot = o.snapshot;
    const headers = o.token ? { Authorization: `Bearer ${o.token}` } : {};
    let progressed = false;
    let close = null;
    let ended = false;
    try {
      const stream = client.subscribe({ subscriptions: [sub] }, { signal: ac.signal, headers });
      for await (const batch of stream) {
        for (const { frame } of batch.frames) {
          switch (frame.case) {
            case 'reply':
              if (frame.value.error) {
                call('onError', { code: frame.value.error.code, status: Code.Unknown, message: frame.value.error.message });
                return 'stop';
              }
              progressed = true;
              call('onStatus', { state: 'connected' });
              break;
            case 'snapshot': {
              const s = frame.value;
              position = { epoch: s.position?.epoch ?? '', seq: s.position?.seq ?? 0n };
              const items = s.items.map(message);
              call('onSnapshot', { topic: s.topic, position: { epoch: position.epoch, seq: Number(position.seq) }, items });
              if (!ended && items.some((m) => m.final)) {
                ended = true;
                call('onEnd');
              }
              break;
            }
            case 'message': {
              const m = frame.value;
              position = { epoch: m.epoch, seq: m.seq };
              const msg = message(m);
              call('onMessage', msg);
              if (!ended && msg.final) {
                ended = true;
                call('onEnd');
              }
              break;
            }
            case 'close':
              close = frame.value;
              break;
          }
        }
        // The server ends the call right after the final message's close
        // frame; one that does not is left here.
        if (ended && !close) break;
      }
    } catch (err) {
      if (closed) return 'stop';
      const e = ConnectError.from(err);
      if (REFUSALS.has(e.code)) {
        call('onError', { code: codeName(e.code), status: e.code, message: e.rawMessage });
        call('onStatus', { state: 'disconnected', code: codeName(e.code), reason: e.rawMessage });
        return 'stop';
      }
      return { progressed, shutdown: e.code === Code.Unavailable, code: codeName(e.code) };
    } finally {
      abort = null;
    }
    if (ended || (close && !close.reconnect)) {
      call('onStatus', { state: 'disconnected', code: 'ok', reason: close?.reason || 'topic ended', byServer: !!close });
      return 'end';
    }
    return { progressed, shutdown: false, code: 'ok' };
  }

  (async () => {
    let attempt = 0;
    while (!closed) {
      call('onStatus', { state: attempt === 0 ? 'connecting' : 'reconnecting' });
      const r = await once();
      if (r === 'end' || r === 'stop' || closed) return;
      attempt = r.progressed ? 1 : attempt + 1;
      // A drain asks every client to go elsewhere at once: spread them.
      const cap = Math.min(o.maxDelay, o.minDelay * 2 ** (attempt - 1));
      const delay = Math.floor(r.shutdown && attempt === 1 ? Math.random() * o.minDelay : cap / 2 + Math.random() * (cap / 2));
      call('onStatus', { state: 'reconnecting', retryIn: delay, code: r.code });
      await sleep(delay);
    }
  })();

  return {
    close() {
      closed = true;
      abort?.();
      wake?.();
    },
  };
}
