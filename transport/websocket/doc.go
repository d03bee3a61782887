// Package websocket serves fanout sessions over WebSocket, speaking the JSON
// protocol of docs/PROTOCOL.md.
//
// [New] returns an [http.Handler]; mount it where clients connect:
//
//	hub, _ := fanout.NewHub(nil)
//	http.Handle("/ws", websocket.New(hub, nil))
//
// # Connection lifecycle
//
// The handler authenticates the upgrade request with [fanout.Hub.Authenticate]
// before accepting it (a rejected request gets a 401 JSON error and no
// upgrade), creates a session with [fanout.Hub.NewSession] (503 while the hub
// shuts down), accepts the WebSocket and returns: the connection is served
// by goroutines of the handler. One reads client commands, one JSON command
// per text message, and processes them in order; a writer, which runs only
// while the session has frames to write (one at a time, so in order), sends
// them: every frame of a batch goes out in one text message, frames
// separated by "\n".
//
// When the session closes (the client was too slow, sent too many commands,
// the hub shuts down, ...), the last text message ends with a "close" frame
// carrying the code, the reason and whether to reconnect, and the WebSocket
// is closed with the same code. [Handler.Close] closes every connection
// with [fanout.CloseShutdown] and returns when their goroutines have ended;
// call it after [fanout.Hub.Shutdown] to wait for the connections (which
// http.Server.Shutdown does not do for upgraded ones).
//
// # Credentials
//
// The handshake's token comes from the Authorization header, a
// Sec-WebSocket-Protocol entry ([ProtocolBearer], offered with [Protocol]),
// the token query parameter (visible to proxies and in access logs) or the
// access_token cookie. A client that offers [Protocol] without a token may
// instead send an "auth" command first, within [Options.AuthTimeout]; any
// other command first closes the connection with
// [fanout.CloseUnauthorized]. Credentials that expire are refreshed with a
// "refresh" command ([fanout.Session.Refresh]); without one, the
// connection closes with [fanout.CloseUnauthorized] when they expire.
//
// # Heartbeats
//
// The server pings every [Options.PingInterval] and closes a client that
// does not answer within [Options.PingTimeout] with [fanout.CloseTimeout].
// Browsers answer pings by themselves.
//
// # Memory
//
// An idle connection costs one goroutine, the reader, parked in the
// WebSocket library's read, plus a 512-byte read buffer and a write buffer
// of [Options.WriteBufferSize] (1 KiB by default) instead of net/http's two
// 4 KiB buffers; the request is not kept. The writer takes its frame and
// encoding buffers from pools, and pings run from a timer: neither holds a
// goroutine while there is nothing to do. With 10,000 idle connections
// this is about 14 KB per connection, of which 8 KiB is the reader's stack
// (BenchmarkIdleConnections).
package websocket
