// Type declarations of fanout.js, the browser client of fanout.
//
// A page loads the module from the server that embeds fanout (the Go package
// github.com/gofanout/fanout/client/js serves it):
//
//   import { connect } from '/fanout.js';
//
// The wire protocol is described in docs/PROTOCOL.md.

/** A position in a topic's stream. seq grows by one per message; epoch names the history's lineage. */
export interface Position {
  epoch: string;
  seq: number;
}

/** One message of a topic. */
export interface Message {
  topic: string;
  epoch: string;
  seq: number;
  /** The key that makes this message the topic's current state for it; '' when none. */
  key: string;
  /** When the message was published, in ms since the Unix epoch. */
  time?: number;
  /** Small metadata such as trace context. */
  header?: Record<string, string>;
  /**
   * Whether this is the topic's last message (published with
   * fanout.WithFinal; header 'fanout-final': 'true'). It ends the
   * subscription: onEnd follows.
   */
  final: boolean;
  /**
   * The payload: the parsed JSON value when the published bytes were JSON,
   * otherwise the bytes themselves.
   */
  data: unknown | Uint8Array;
}

/** A topic's state: the latest message per key, and the position it corresponds to. */
export interface Snapshot {
  topic: string;
  position: Position;
  items: Message[];
}

/** What the server said when a subscription started (or restarted after a reconnect). */
export interface SubscribedInfo {
  topic: string;
  /** The topic's position in the server's reply. */
  position: Position | null;
  /** Whether this subscribe asked to resume (with since). */
  resumed: boolean;
  /**
   * For a resume: true when history reached back (nothing was missed; the
   * missed messages follow through onMessage), false when it did not (onReset
   * and onSnapshot follow). Undefined for a fresh subscribe.
   */
  recovered?: boolean;
}

/** Passed to onReset: history no longer reaches back to the client's position. */
export interface ResetInfo {
  topic: string;
  /** The position of the snapshot that follows. */
  position: Position | null;
}

/** Passed to onEnd: the topic delivered its final message, and nothing follows it. */
export interface EndInfo {
  topic: string;
  /** The position of the final message, or of the snapshot that held it. */
  position: Position | null;
  /** The final message (delivered through onMessage, or an item of the snapshot). */
  message: Message;
}

/** An error from the server (its wire code, e.g. 'forbidden') or from the client ('disconnected'). */
export declare class FanoutError extends Error {
  readonly code: string;
  constructor(code: string, message?: string);
}

export interface SubscribeOptions {
  /**
   * Ask for the topic's current state first (onSnapshot), then live
   * messages. Used for the first subscribe only: later ones resume. Default false.
   */
  snapshot?: boolean;
  /** Resume after this position (e.g. one the page saved). Default: none. */
  since?: Position;
  /** Each message, in seq order, once. */
  onMessage?: (msg: Message, sub: Subscription) => void;
  /** The topic's state: after a subscribe with snapshot, and after onReset. Replace what you hold. */
  onSnapshot?: (snap: Snapshot, sub: Subscription) => void;
  /**
   * A resume found that history no longer reaches back (recovered=false):
   * messages were lost. Drop the state you derived from them; onSnapshot
   * follows with the current state.
   */
  onReset?: (info: ResetInfo, sub: Subscription) => void;
  /** The server accepted the (re)subscribe. */
  onSubscribed?: (info: SubscribedInfo, sub: Subscription) => void;
  /**
   * The topic delivered its final message (message.final), live, from
   * history or in a snapshot, after onMessage or onSnapshot gave it to you:
   * the subscription is over (state 'ended') and the client forgets it, so
   * subscribe() may follow the topic again. Over WebSocket the client
   * unsubscribes; over SSE the server ends the stream once all its topics
   * ended, and the client does not reconnect it.
   */
  onEnd?: (info: EndInfo, sub: Subscription) => void;
  /**
   * The server refused the subscribe. Temporary errors ('unavailable',
   * 'internal', 'rate_limited') are retried with backoff; others
   * ('forbidden', 'invalid_topic', ...) end the subscription (state 'failed').
   */
  onError?: (err: FanoutError, sub: Subscription) => void;
  /**
   * The server ended the subscription (server code called
   * Hub.Unsubscribe): no message of the topic follows, the client forgets
   * it (state 'closed') and does not resume it. WebSocket only.
   */
  onUnsubscribed?: (info: UnsubscribedInfo, sub: Subscription) => void;
  /**
   * A session subscribed to the topic, on any node (topics whose server
   * options enable join/leave; the client's own join included). Joins and
   * leaves take no position and are not replayed after a reconnect.
   */
  onJoin?: (info: PresenceInfo, sub: Subscription) => void;
  /** A session left the topic: unsubscribed or disconnected. */
  onLeave?: (info: PresenceInfo, sub: Subscription) => void;
}

/** Passed to onUnsubscribed. */
export interface UnsubscribedInfo {
  topic: string;
  /** The position of the last message delivered, or of the snapshot. */
  position: Position | null;
}

/** Passed to onServerSubscribe: server code subscribed this client to a topic. */
export interface ServerSubscribeInfo {
  topic: string;
  /** The position live messages continue after. */
  position: Position | null;
  /** A snapshot follows (onSnapshot). */
  snapshot: boolean;
}

/** One subscriber of a topic, as presence lists it. */
export interface ClientInfo {
  /** The principal's id; empty for anonymous. */
  principal: string;
  /** The session, unique across the server's nodes. */
  session: string;
  /** What the server's authenticator tells about the principal (a JSON value). */
  info?: unknown;
}

/** Passed to onJoin and onLeave. */
export interface PresenceInfo {
  topic: string;
  client: ClientInfo;
}

/** A topic given at connect time: its name, or its name with subscribe options. */
export type TopicSpec = string | ({ topic: string } & SubscribeOptions);

/** The connection's state, for the UI. */
export interface Status {
  state: 'connecting' | 'connected' | 'disconnected';
  /** Consecutive failed connections (0 once a connection has stayed up for healthyAfter). */
  attempt: number;
  /** Why the last connection ended: the server's close code, 1006 for a lost connection, 4006 for a ping timeout. */
  code?: number;
  reason?: string;
  /**
   * Whether the client will connect again: false after 4003 bad request,
   * 4007 disconnected by the server, an application's close code from 4500
   * to 4999,
   * close(), or, with nothing left to follow, after the server ended the
   * stream because its topics ended (1000 'topic ended'); an SSE client
   * without topics stays disconnected. A later subscribe() connects again.
   */
  willReconnect?: boolean;
  /** In how many ms it will. */
  retryIn?: number;
}

export interface ConnectOptions {
  /**
   * 'websocket' (default): subscribe and unsubscribe at any time, publish,
   * ping. 'sse': Server-Sent Events (transport/sse): the topics and a cursor
   * of their positions travel in the URL, so subscribing a new topic reopens
   * the stream (list them in topics to open it once); no publish, no ping
   * (the server's heartbeats keep proxies open). The server refuses a stream
   * in which any topic is refused (e.g. forbidden), and the client retries
   * it with backoff.
   */
  transport?: 'websocket' | 'sse';
  /**
   * Topics to subscribe at once (either transport). With 'sse' these are
   * typically all the topics the page follows; attach callbacks with
   * subscribe options here, or look them up with client.subscription(topic).
   */
  topics?: TopicSpec[];
  /**
   * A bearer token, or a function that returns one (the token callback).
   * The function is called before every connection (reason 'connect', or
   * 'unauthorized' after the server closed with 4002: fetch a new token)
   * and, on a WebSocket, before the credentials expire (reason 'refresh'):
   * the server tells when they do, and the client refreshes them in place,
   * refreshMargin ms before (or half-way when less is left). Where the
   * token travels: see tokenIn. A page whose server set the access_token
   * cookie at login needs no token for SSE.
   */
  token?: string | ((info: { reason: 'connect' | 'unauthorized' | 'refresh' }) => string | undefined | Promise<string | undefined>);
  /**
   * Where the token travels. WebSocket: 'message' (default), an auth
   * command, the connection's first message; 'protocol', a
   * Sec-WebSocket-Protocol entry (protocolBearer) next to 'fanout.v1'.
   * SSE: 'cookie' (default), the access_token cookie, which the client sets
   * for the stream's path with SameSite=Strict (and Secure on https) before
   * it opens the stream; a token that a cookie cannot hold is refused.
   * Either: 'query', the token query parameter, which proxies and access
   * logs see.
   */
  tokenIn?: 'message' | 'protocol' | 'cookie' | 'query';
  /** Refresh credentials this many ms before they expire (WebSocket). Default 30000. */
  refreshMargin?: number;
  /** Called on every status change. */
  onStatus?: (status: Status) => void;
  /**
   * WebSocket only: server code subscribed this client to a topic
   * (Hub.Subscribe, a server-side subscription). Return the subscription's
   * callbacks (onMessage, onSnapshot, onUnsubscribed, ...) to accept it:
   * it then is an ordinary subscription (client.subscription(topic),
   * unsubscribe(), resumed with since after a reconnect as the client's
   * own, which the server's authorizer judges). Return nothing to decline
   * it: the client unsubscribes. Without this option every server-side
   * subscription is declined.
   */
  onServerSubscribe?: (info: ServerSubscribeInfo) => SubscribeOptions | null | undefined | void;
  /** Backoff: the first retry waits up to backoffMin ms, each next one up to twice as long, capped at backoffMax (full jitter). Defaults 500 and 30000. */
  backoffMin?: number;
  backoffMax?: number;
  /** A connection that stays up this long (ms) resets the backoff. Default 5000. */
  healthyAfter?: number;
  /** WebSocket only: send an application ping every pingInterval ms (0: never) and reconnect when no reply comes within pingTimeout ms. Defaults 25000 and 10000. */
  pingInterval?: number;
  pingTimeout?: number;
  /** Give up on a connection that is not open after this many ms. Default 10000. */
  connectTimeout?: number;
  /** The WebSocket constructor to use. Default: globalThis.WebSocket. */
  WebSocket?: { new (url: string, protocols?: string[]): WebSocket };
  /** The EventSource constructor to use. Default: globalThis.EventSource. */
  EventSource?: { new (url: string): EventSource };
}

/** One subscription of a client to a topic. */
export declare class Subscription {
  readonly topic: string;
  /** The position of the last message delivered, or of the last snapshot; null before the first reply. */
  readonly position: Position | null;
  /** 'ended' once the topic's final message was delivered (see onEnd). */
  readonly state: 'pending' | 'subscribing' | 'active' | 'failed' | 'closed' | 'ended';
  /** Whether server code made the subscription (see onServerSubscribe). */
  readonly server: boolean;
  /** Stop receiving the topic. */
  unsubscribe(): void;
}

/**
 * A connection to a fanout server that restores itself with exponential
 * backoff and full jitter until close(). After each reconnect every
 * subscription resumes from the last position it delivered.
 *
 * Close codes: 4000 (server shutdown) reconnects at once; 4002
 * (unauthorized) asks the token function again and backs off hard, except
 * after a healthy connection (its credentials expired), which reconnects
 * soon; 4003
 * (bad request) and 1002 (protocol error) stop; any other backs off.
 */
export declare class Client {
  constructor(url: string, options?: ConnectOptions);
  readonly status: Status;
  /** When the connection's credentials expire (ms since the epoch), or null when they never do or nobody said. */
  readonly expires: number | null;
  /** Subscribe to a topic. Throws FanoutError 'already_subscribed' when this client already is. */
  subscribe(topic: string, options?: SubscribeOptions): Subscription;
  /** The client's subscription to topic. */
  subscription(topic: string): Subscription | undefined;
  /**
   * Publish (WebSocket only; the server's authorizer must allow it).
   * Uint8Array and ArrayBuffer travel as bytes, anything else as JSON.
   * Rejects with FanoutError 'disconnected' when not connected. Every
   * publish carries an idempotency key (idempotencyKey, at most 256 bytes,
   * or a random one): a publish whose connection drops before its reply is
   * sent again with the same key on the next connection, so that it is
   * published once; it rejects with 'disconnected' only when the client
   * stops or closes, or with signal's reason when signal aborts. header:
   * at most 32 strings and 4 KiB.
   */
  publish(
    topic: string,
    data: unknown,
    options?: { key?: string; idempotencyKey?: string; header?: Record<string, string>; signal?: AbortSignal },
  ): Promise<Position>;
  /**
   * Who is subscribed to topic, on every node, where the server keeps
   * presence for the topic (its topic options) and allows this client to
   * read it (WebSocket only; at most the server's limit of entries).
   * Rejects with FanoutError 'forbidden', 'disconnected', ...
   */
  presence(topic: string): Promise<ClientInfo[]>;
  /** How many sessions are subscribed to topic, on every node (WebSocket only). */
  presenceCount(topic: string): Promise<number>;
  /**
   * When disconnected (waiting for the next attempt, or stopped by 4003),
   * connect now. The browser's 'online' event does this too.
   */
  reconnect(): void;
  /** Close for good. */
  close(): void;
}

/**
 * Connect to a fanout server: url is the WebSocket endpoint (http(s) URLs
 * and relative paths are turned into ws(s) ones) or, with transport 'sse',
 * the SSE endpoint.
 */
export declare function connect(url: string, options?: ConnectOptions): Client;

export declare const defaults: Readonly<Required<Pick<ConnectOptions,
  'transport' | 'backoffMin' | 'backoffMax' | 'healthyAfter' | 'pingInterval' | 'pingTimeout' | 'connectTimeout' | 'refreshMargin'>>>;

/** The WebSocket subprotocol of the JSON protocol: 'fanout.v1'. */
export declare const PROTOCOL: 'fanout.v1';
/** The Sec-WebSocket-Protocol entry that carries token: 'bearer.' and its UTF-8 bytes in unpadded base64url. */
export declare function protocolBearer(token: string): string;
/** How long to wait, at now, before refreshing credentials that expire at expires (ms): until margin before, or half-way when less than twice the margin is left. */
export declare function refreshDelay(expires: number, now: number, margin: number): number;

export declare const CloseCode: Readonly<{
  NORMAL: 1000; GOING_AWAY: 1001; PROTOCOL: 1002; ABNORMAL: 1006; TOO_LARGE: 1009; INTERNAL: 1011;
  SHUTDOWN: 4000; SLOW_CONSUMER: 4001; UNAUTHORIZED: 4002; BAD_REQUEST: 4003;
  RATE_LIMITED: 4004; RESYNC: 4005; TIMEOUT: 4006; DISCONNECTED: 4007;
}>;

// Pure helpers, exported for tests and for writers of other clients.

/** The delay before reconnect attempt number attempt (1 = first retry): uniformly random in [0, min(max, min*2^(attempt-1))). */
export declare function backoffDelay(attempt: number, min: number, max: number, random?: () => number): number;
/** What to do after a close with code after attempt consecutive failures. */
export declare function reconnectPlan(code: number, attempt: number, opts: { backoffMin: number; backoffMax: number }, random?: () => number):
  { reconnect: boolean; delay: number; refreshToken: boolean };
/** Split a server message into its frames (one JSON object per line). */
export declare function parseFrames(text: string, onBad?: (line: string, err: Error) => void): Array<{ type: string; [k: string]: unknown }>;
/** Turn a msg frame into a Message, decoding data64 into bytes. */
export declare function decodeMessage(frame: object): Message;
/** The header that marks a topic's final message: 'fanout-final' (value 'true'). */
export declare const HEADER_FINAL: 'fanout-final';
/** Whether a msg frame (or snapshot item) carries the final header. */
export declare function isFinal(frame: object): boolean;
/** 'deliver' the next message, drop a 'duplicate', or resume after a 'gap'. */
export declare function classify(last: Position | null, msg: Position): 'deliver' | 'duplicate' | 'gap';
/** Whether a subscribe that failed with this error code may succeed later. */
export declare function retryable(code: string): boolean;
export declare function encodeBase64(bytes: Uint8Array): string;
/** The SSE cursor (since parameter, event id) of a stream of topics at the given positions; topics without one start afresh. */
export declare function encodeCursor(topics: string[], positions: Map<string, Position>): string;
/** CRC-32 (IEEE) of bytes, continuing crc. */
export declare function crc32(bytes: Uint8Array | number[], crc?: number): number;
export declare function decodeBase64(s: string): Uint8Array;
