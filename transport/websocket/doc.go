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
// shuts down), and accepts the WebSocket. It then reads client commands, one
// JSON command per text message, and processes them in order, while a single
// writer sends what the session queues: every frame of a batch goes out in
// one text message, frames separated by "\n".
//
// When the session closes (the client was too slow, sent too many commands,
// the hub shuts down, ...), the last text message ends with a "close" frame
// carrying the code, the reason and whether to reconnect, and the WebSocket
// is closed with the same code. ServeHTTP returns when both the reader and
// the writer have ended.
//
// # Heartbeats
//
// The server pings every [Options.PingInterval] and closes a client that
// does not answer within [Options.PingTimeout] with [fanout.CloseTimeout].
// Browsers answer pings by themselves.
//
// # Memory
//
// An idle connection costs two goroutines (the request's, which reads, and
// the writer) plus the buffers of net/http and the WebSocket library. The
// writer takes its frame and encoding buffers from pools only while it has
// something to write, and pings use no goroutine of their own while they
// are not due.
package websocket
