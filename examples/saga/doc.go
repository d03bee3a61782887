// Command saga shows the progress of a distributed transaction, live: a
// trip booking that books a flight, a hotel and a car, and when a step
// fails, compensates (cancels) the confirmed ones in reverse order.
//
//	go run ./examples/saga
//	open http://localhost:8080
//	go run ./examples/saga/follow -fail hotel
//	go run ./examples/saga/follow -protocol grpc-web -fail car
//
// With -redis (or $SAGA_REDIS_ADDR), replicas share one Redis as their
// backplane. With -secret (or $SAGA_SECRET), a client follows a booking only
// with the token that POST /bookings answers, or as the user who started
// it. README.md lists the flags.
//
// Every page is a user (GET /token, kept in an HttpOnly cookie). A booking
// posted with {"subscribe": true} is delivered to its user through a
// server-side subscription: [fanout.Hub.Subscribe] subscribes every
// WebSocket session of the user, on every replica, to the saga's topic,
// with its snapshot. SSE and gRPC streams name their topics and follow
// them as before.
//
// # Endpoints
//
// On the HTTP address (-addr, default :8080; HTTP/1.1 and h2c):
//
//	GET  /              the page: starts a booking and follows it over SSE,
//	                    WebSocket (a server-side subscription) or gRPC-Web
//	GET  /token         the page's user and its token {"user","token"}
//	POST /bookings      starts a booking; answers 202 {"tx","topic","steps"}
//	                    (and "token" with -secret)
//	                    (inject a failure with {"fail":"hotel"} or ?fail=hotel;
//	                    {"subscribe":true} subscribes the user's WebSockets)
//	GET  /events        Server-Sent Events (transport/sse)
//	GET  /ws            WebSocket (transport/websocket)
//	GET  /fanout.js     the browser client (client/js)
//	GET  /grpcweb.js    the page's gRPC-Web client (web/, bundled)
//	GET  /healthz       readiness: 200, or 503 once the server drains
//	POST /fanout.v1.SubscribeService/*, /fanout.v1.PublishService/*
//	                    the fanout gRPC services over gRPC-Web, Connect and
//	                    gRPC (transport/grpc, Server.Handler)
//
// On the gRPC address (-grpc-addr, default :9090): the same services on
// grpc.Server, whose server-streaming Subscribe the follow command uses by
// default.
//
// # Messages
//
// Transaction tx publishes to topic "saga.<tx>". Every message is a JSON
// [Update] {"tx","step","status","detail","steps","final"} whose key is its
// step ("flight", "hotel", "car"), or "saga" for the transaction as a whole,
// so the topic's snapshot holds the current state of every step. Before
// POST /bookings answers, the topic already holds every step as "pending"
// and the saga as "running"; a client subscribes with snapshot=true and
// receives that state (or a later one), then every change in order:
//
//	flight booking, flight confirmed, hotel booking, hotel failed,
//	car skipped, flight compensating, flight compensated, saga compensated
//
// # The end of a stream
//
// The saga's last message has key "saga", a final status ("completed",
// "compensated", or "failed" when a compensation failed or the server
// stopped the saga) and "final": true, and it is published with
// [fanout.WithFinal]. Nothing is published to the topic after it. The
// server ends the streams that follow the topic right after it, live, from
// history, or in the snapshot of a late subscriber: an SSE stream gets a
// close event 1000 "topic ended" without reconnect and its response ends
// (a browser that reconnects anyway with the last event id gets 204, which
// stops EventSource); a Subscribe call (gRPC, gRPC-Web or Connect) gets the
// same close frame and ends with OK (io.EOF). The clients stop at the final message by
// themselves too: the page's client ends the subscription (onEnd) and does
// not reconnect the stream; over WebSocket it unsubscribes, and the
// connection stays open for other topics; the follow command prints that the server ended
// the stream, and cancels the call itself when a server does not.
//
// # Shutdown
//
// On SIGTERM the server reports not ready, refuses new bookings, lets the
// running sagas finish for up to half the -drain period (then interrupts
// them: they publish a final "failed"), and drains the hub: each client is
// told to reconnect elsewhere and resumes there. A saga runs in the memory
// of the replica that started it; with -redis, it is followed from any
// replica.
package main
