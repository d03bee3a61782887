// Package fanout is an embeddable real-time pub/sub fan-out layer: a host
// application publishes messages to topics, and every client subscribed to a
// topic receives them, over WebSocket (transport/websocket), Server-Sent
// Events (transport/sse) or gRPC streams (transport/grpc), from any replica
// of the application when a backplane (backplane/redis, backplane/nats)
// connects the replicas.
//
// # Model
//
// A [Hub] owns one node's topics and sessions. [Hub.Publish] hands a message
// to the [Backplane], which gives it the next [Position] of its topic, keeps
// it in the topic's bounded history (and, when it has a key, in the topic's
// snapshot of the latest message per key) and delivers it to every node with
// local subscribers. There the hub puts it in the outbound queue of every
// subscribed [Session]; each session's single writer drains its queue in
// batches. A message is encoded once per wire format, however many sessions
// receive it ([Message.Encode]).
//
// # Guarantees
//
//   - Per topic, a session receives messages in Seq order, without
//     duplicates.
//   - A session that keeps up loses nothing. A client that reconnects and
//     subscribes with since (its last position) receives every message after
//     it, once, when history still reaches back; otherwise its reply says
//     recovered=false and carries the topic's snapshot.
//   - A slow session never blocks the publisher or other sessions: when its
//     queue (bounded in messages and bytes) is full, it is closed with
//     [CloseSlowConsumer], and its client resumes from history.
//   - [Hub.Shutdown] closes every session with [CloseShutdown], telling
//     clients to reconnect elsewhere, after writing what was queued.
//
// # Hooks
//
// [HubOptions] takes an [Authenticator] (credentials to [Principal]), an
// [Authorizer] (principal, topic, [Action] to allow or deny), an [Observer]
// for metrics and a *slog.Logger.
//
// # Transports
//
// A transport authenticates a request with [Hub.Authenticate], creates a
// session with [Hub.NewSession], turns client commands into
// [Session.Subscribe], [Session.Unsubscribe] and [Session.Publish], writes
// what [Session.Next] returns, and calls [Session.Close] when the connection
// ends.
package fanout
