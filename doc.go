// Package fanout is an embeddable real-time pub/sub fan-out layer: a host
// application publishes messages to topics, and every client subscribed to a
// topic receives them, over WebSocket (transport/websocket), Server-Sent
// Events (transport/sse) or gRPC streams (transport/grpc), from any replica
// of the application when a backplane (backplane/redis, backplane/nats)
// connects the replicas.
//
// # Publishing
//
// An application creates one [Hub] with [NewHub], mounts the transports it
// wants on it, and publishes with [Hub.Publish]:
//
//	hub.Publish(ctx, "inventory.SKU-1", []byte(`{"stock":5}`), fanout.WithKey("SKU-1"))
//
// [WithKey] makes the message the topic's current state for that key, which
// a client that subscribes late receives first (its snapshot).
// [WithIdempotencyKey] makes a retried publish harmless, [WithHeader]
// attaches trace context, and [WithFinal] marks a topic's last message.
// Services in other languages publish over HTTP through
// [NewPublishHandler]. [Hub.DeleteTopic] ends a topic at once.
//
// [Hub.Shutdown] drains the hub when the process stops: every client is
// told to reconnect elsewhere, after what was queued for it; [Hub.Close]
// stops at once.
//
// # Options and hooks
//
// [HubOptions] holds every limit, with its default: queue sizes, the
// subscriptions of a session, command rates and the sizes of what a
// client may publish. Its hooks are an [Authenticator] (credentials to
// [Principal]), an [Authorizer] (principal, topic, [Action] to allow or
// deny), an [Observer] for metrics ([Event]) and a *slog.Logger. Errors
// are sentinels to match with errors.Is ([ErrForbidden], [ErrTooLarge],
// ...), and [ErrorCode] gives a client's view of one.
//
// # Operations
//
// The [Observer] sees every event that can go wrong or take time:
// handshakes accepted and refused, publishes and subscribes that fail,
// each backplane call with its duration, each write with its delivery
// latency and queue depth, and why each session closed; package metrics
// turns them into Prometheus series. [Hub.Ready] answers a readiness
// probe; the hub logs the loss and return of its backplane. A [Tracer]
// (package otel) follows each message from its publisher to every node,
// and the W3C traceparent reaches clients in the message's header.
// [NewInspectHandler] lists a node's topics and sessions for operators.
//
// # Guarantees
//
//   - Per topic, a session receives messages in Seq order, without
//     duplicates.
//   - A session that keeps up loses nothing. A client that reconnects and
//     subscribes with since (its last [Position]) receives every message
//     after it, once, when history still reaches back; otherwise its reply
//     says recovered=false and carries the topic's snapshot.
//   - A slow session never blocks the publisher or other sessions: when its
//     queue (bounded in messages and bytes) is full, it is closed with
//     [CloseSlowConsumer], and its client resumes from history.
//   - [Hub.Shutdown] closes every session with [CloseShutdown], telling
//     clients to reconnect elsewhere, after writing what was queued.
//
// # Topic lifecycle
//
// A topic needs no declaration. On a hub, its state lives while a local
// session is subscribed to it, and is freed with the last one, also after
// a refused or failed subscribe. In the backplane, its stored state
// (position, history, snapshot, idempotency keys) is created by its first
// publish and expires after an idle time without publish or read (a day by
// default), or a grace period after a message published [WithFinal] (ten
// minutes by default); history also leaves at its age. [Hub.DeleteTopic]
// forgets it at once. A topic that starts again gets a new epoch, so a
// client resuming from an old position is told recovered=false and gets
// the (empty) snapshot: positions are never reused.
//
// # Server control
//
// Server code lists this node's sessions ([Hub.Sessions],
// [Hub.PrincipalSessions]) and acts on a user's sessions on every node:
// [Hub.Disconnect] closes them, [Hub.Subscribe] and [Hub.Unsubscribe] add
// and end server-side subscriptions, which clients see as ordinary ones
// ([FrameSubscribed], [FrameUnsubscribed]). A call acts on this node at
// once and reaches the others as a control message through a backplane
// that implements [ControlBackplane]. [Hub.History] and [Hub.Snapshot]
// read a topic's state for server code.
//
// # Writing a transport
//
// A transport adapts a wire protocol to sessions. It authenticates a
// request with [Hub.Authenticate] (see [CredentialsFromRequest]), creates
// a [Session] with [Hub.NewSession], turns client commands into
// [Session.Subscribe], [Session.Unsubscribe] and [Session.Publish], and
// hands its connection to the session with [Session.Attach]: a [Conn] says
// how a batch of [Frame] values, a heartbeat and the close go out in its own
// format, and the hub's writer decides when, within
// [HubOptions.WriteTimeout]. The transport waits for [Session.Detached],
// tells the session with [Session.Hangup] when its client went away, and
// calls [Session.Close] with a [CloseCode] when the connection ends. A
// message is encoded once per wire format, however many sessions receive
// it ([NewEncoding], [Message.Encode]). The conformance suite
// transport/transporttest checks a transport.
//
// # Writing a backplane
//
// A [Backplane] connects the hubs of several nodes: it assigns positions,
// stores history and snapshots, and delivers every message to the nodes
// with subscribers, through the [Receiver] a hub gives it. [MemoryBroker]
// is the in-process implementation, and the default. A backplane that
// also implements [ControlBackplane] carries server control to every node.
// The conformance suite backplane/backplanetest checks a backplane.
package fanout
