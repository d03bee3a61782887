// Package fanoutgrpc serves a [fanout.Hub] over gRPC: a server-streaming
// Subscribe (the call browsers make, over gRPC-Web or Connect), a
// bidirectional Connect for services, and a unary Publish. The protocol is
// proto/fanout/v1/fanout.proto; package fanoutv1 holds its generated Go code,
// including the clients, fanoutv1/fanoutv1connect the code for
// connectrpc.com/connect, and es/ the code for browsers (@bufbuild/protobuf).
// docs/PROTOCOL.md describes it.
//
// The package lives in the folder transport/grpc but is named fanoutgrpc:
// it is always used next to google.golang.org/grpc, whose server it
// registers with, and a distinct name spares every caller an import alias.
//
//	hub, _ := fanout.NewHub(nil)
//	gs := grpc.NewServer()
//	fanoutgrpc.New(hub, nil).Register(gs)
//	go gs.Serve(lis)
//	...
//	hub.Shutdown(ctx) // ends every stream with codes.Unavailable
//	gs.GracefulStop()
//
// [Server.Handler] serves the same calls, with the same code, on a net/http
// server, over gRPC, gRPC-Web and the Connect protocol: browsers reach it
// without a proxy such as Envoy.
//
//	srv := fanoutgrpc.New(hub, nil)
//	mux.Handle("/fanout.v1.SubscribeService/", srv.Handler())
//	mux.Handle("/fanout.v1.PublishService/", srv.Handler())
//
// # Authentication
//
// Every call is authenticated with [fanout.Hub.Authenticate]. The
// credentials carry the token of an "authorization: Bearer <token>" metadata
// entry (on [Server.Handler], the request's Authorization header), all the
// metadata as Header, and Transport "grpc".
//
// # Streams
//
// Each stream is one [fanout.Session], written by the session's writer,
// which the hub runs ([fanout.Session.Attach]): each batch goes out as one
// Frames message (or several, past [Options.MaxBatchBytes]), so that frames
// queued together travel together. A send that a client does not take
// within [fanout.HubOptions.WriteTimeout] ends the call with the 4001 status
// below, as on the other transports, on grpc.Server and [Server.Handler]
// alike. A message is
// encoded to protobuf once, however many streams carry it; each stream's
// Frames message is assembled from those cached bytes without marshalling
// the message again.
//
// A stream that stays silent for [Options.Heartbeat] gets an empty Frames
// message, which keeps proxies from ending it.
//
// A Subscribe stream ends by itself once every one of its topics has
// delivered its final message (one published with [fanout.WithFinal], as a
// saga's last state), live, from history after since, or inside a
// snapshot: right after that message, in the same Frames message, comes a
// close frame with code 1000, reason "topic ended" and reconnect false,
// and the call returns OK, so the client's Recv returns io.EOF. What a
// topic publishes after its final message is not sent. A Connect stream
// does not end that way, as its client may subscribe again at any time: it
// sees the final message's "fanout-final" header and unsubscribes.
//
// # Presence and server-side subscriptions
//
// Subscribe and Connect streams receive join and leave frames
// (Frame.join, Frame.leave) for topics whose [fanout.TopicOptions] enable
// JoinLeave, in order with the topic's messages, as the other transports
// do. Connect takes the presence and presence_count commands, answered by
// a reply whose presence or count is set ([fanout.Session.Presence]), and
// carries server-side subscriptions: [fanout.Hub.Subscribe] sends its
// streams a subscribed frame (then the snapshot, when asked, and the
// topic's messages), [fanout.Hub.Unsubscribe] an unsubscribed frame.
// Subscribe streams have fixed topics: server-side subscriptions leave
// them alone, and [fanout.Hub.Disconnect] ends both kinds.
//
// A stream ends with a close frame followed by the call's status, which
// tells the client what to do: codes.Unavailable when the hub shuts down
// (reconnect, to another server, and resume), codes.ResourceExhausted for a
// slow consumer or too many commands, codes.Aborted when the server lost
// track of a topic (reconnect and resume), codes.PermissionDenied when
// server code disconnected the user (4007, and the application's codes from
// 4500) and codes.Aborted for the application's codes below 4500
// (reconnect and resume), OK for a normal end. Every status
// carries a google.rpc.ErrorInfo (domain "fanout") whose reason is the
// protocol's error code in upper case, or SESSION_CLOSED with the close
// code as metadata.
package fanoutgrpc
