// Package nats is a [fanout.Backplane] on NATS: JetStream keeps positions,
// history and snapshots, and core NATS delivers live messages to the nodes
// that have subscribers.
//
//	nc, err := nats.Connect(url) // the application's connection
//	if err != nil {
//		return err
//	}
//	defer nc.Close() // after the hub
//	hub, err := fanout.NewHub(&fanout.HubOptions{
//		Backplane: fnats.New(nc, &fnats.Options{HistorySize: 4096}),
//	})
//
// Each hub gets its own [Backplane] from [New]; nodes may share a
// connection. The hub closes its backplane, which leaves the connection
// open: the application closes it after the hub. The server must run with
// JetStream enabled (nats-server -js), version 2.9 or later.
//
// # Subjects and streams
//
// A topic name becomes one subject token: the bytes that NATS treats
// specially ("." separates tokens; "*", ">" and white space are wildcards
// and separators) and "~" are written as "~" and two hex digits, every
// other byte of a valid topic stays as it is. So "orders.eu" becomes
// "orders~2Eeu". The mapping is reversible. With P for [Options.Prefix] and
// S for [Options.Stream]:
//
//	P.h.<topic>        stream S: the topic's history, HistorySize per topic
//	P.l.<topic>        core NATS: live messages, republished by stream S
//	P.k.<topic>.<key>  stream S_KEYS: the latest message per key (base64url
//	                   key, or "~" and its SHA-256 when longer than 96 bytes)
//	P.i.<topic>.<id>   stream S_IDEM: positions of idempotent publishes
//	P.x.<kind>.<topic> stream S_EXPIRE: when to purge the topic, a work
//	                   queue (kind "f" after a final message, "i" when idle)
//	P.e                stream S_LIVE, in memory: the storage's incarnation
//	P.e.<topic>        stream S_LIVE, in memory: the topic's current epoch
//
// The streams are created, or updated to the options, on first use. Every
// message carries its position, publish time, key and header in headers
// (Fanout-Epoch, Fanout-Seq, Fanout-Time, Fanout-Key, Fanout-Header,
// Fanout-Incarnation); its
// payload is the message's data as it is.
//
// # Positions
//
// JetStream numbers messages per stream, not per subject, so the topic's
// Seq is kept in a header and assigned by compare-and-set: Publish appends
// the new message with Seq one higher than the topic's last message and
// the header Nats-Expected-Last-Subject-Sequence naming that last message.
// If a publisher on another node appended first, the server rejects the
// append, and Publish reads the topic's last message and retries; the
// publishes of one node to one topic wait for each other, so they never
// conflict among themselves. Seqs are therefore assigned once each,
// without holes, in the order the stream stores the messages. A per-topic
// stream or key-value counter would need a second write per publish that
// is not atomic with the message, and a stream per topic does not scale to
// many topics.
//
// To save the read, a node remembers the last message of each topic that
// it published or received live, and appends after it directly; a stale
// memory costs one rejected append. Stream sequences start again at 1 when
// a stream is deleted and created again, so the node forgets all of it
// when the server announces that one of its streams was deleted or
// created (JetStream advisories, which the account must be allowed to
// receive), after a reconnect, and when a stream turns out to be missing.
//
// The epoch is chosen at random by the publish that finds the topic without
// messages and is carried by every later message of the topic. So whenever
// a topic's messages are all gone — expired, purged by [Backplane.Delete]
// or after a final message, or the stream was deleted — its next message
// starts a new epoch at Seq 1, and a client's old position is recognised
// as foreign. A position is never handed out twice in one epoch.
//
// A stream can also come back older than it was: restored from a backup,
// or from files that an OS crash left unsynced (JetStream syncs every two
// minutes by default). Its topics' last messages are then behind what
// nodes and clients saw, and appending after them would hand out their
// Seqs again. So every message carries the storage's incarnation (header
// Fanout-Incarnation): a random name kept in the stream S_LIVE, which
// JetStream holds in memory, so that no restart brings it back together
// with older files. A server that restarts comes back with S_LIVE empty,
// the first node to find it so names a new incarnation (a node reads it
// once per connection), and a publish that finds its topic's last message
// from another incarnation starts a new epoch, continuing the numbering:
// clients that resume are told that history does not reach back
// (recovered=false, then the snapshot). This holds however far publishes
// go past the old head before a node notices, and for nodes that never
// saw the lost messages. The cost: after every restart of a standalone
// server, lossless or not, each topic's next publish starts a new epoch,
// so resuming clients reload once; and a header of 34 bytes per message.
// Replicated streams ([Options.Replicas] 3) keep S_LIVE, like the data,
// across the restart of a minority of servers: no reset then. Besides,
// each node remembers the latest position it saw stored for each topic (at
// most 4096 topics; reconnects do not clear it), and a publish that finds
// the topic's last message older than that, in the same epoch, starts a
// new epoch too.
//
// What remains: messages acknowledged and then lost by storage are lost
// (clients that received them live keep them); and in a cluster with
// streams of one replica, S_LIVE may sit on another server than the
// history, so the restart of the history's server from older files goes
// unnoticed by nodes that neither reconnect nor saw the lost messages.
// Run JetStream with sync_interval always and replicated streams where
// that matters; see docs/RELIABILITY.md.
//
// # Lifecycle
//
// A topic's stored state ends; nats-server 2.9 has no per-message TTL, so
// the server's stream limits do part of it and the nodes the rest:
//
//   - The history stream's MaxAge is [Options.HistoryAge]: the server
//     drops messages older than that, and a
//     topic silent for that long loses its position with its last
//     message. A client that resumes it then gets recovered=false and the
//     snapshot, and the next publish starts a new epoch. The position thus
//     lives HistoryAge, not IdleTTL: it is the topic's last message, and
//     keeping it longer would keep history longer.
//   - A topic expires as a whole [Options.IdleTTL] (default 24h) after its
//     last use: a publish, or a History or Snapshot that found it. A node
//     that uses a topic leaves a mark in the stream S_EXPIRE, at most once
//     per IdleTTL/8 per topic; a mark is due IdleTTL + IdleTTL/8 after it
//     was written, and the node that takes a due mark with no later mark
//     of its topic purges the topic's history, snapshot and idempotency
//     records. A client that resumes it then gets recovered=false and an
//     empty snapshot. Snapshot items have no age limit of their own, so an
//     item of a topic in use never expires however old it is.
//   - A final publish (one with the header [fanout.HeaderFinal], made by
//     [fanout.WithFinal]) leaves a final mark, due [Options.FinalTTL]
//     (default 10m) later: then the topic is purged, unless it was
//     published to since, which makes it live again. Reads of a final
//     topic leave no mark.
//   - [Backplane.Delete] purges the topic's history, then its snapshot,
//     idempotency records and marks. It is not atomic across the streams:
//     a publish that runs concurrently may leave its snapshot item.
//
// S_EXPIRE is a work queue that keeps the latest mark of each topic and
// kind, and that every node pulls from through one durable consumer per
// kind ("sweep_f", "sweep_i"): a mark is handled once, by one node, and a
// mark not yet due is handed back with a delay until it is. Marks are
// stored, so they outlive the node that wrote them. A mark that could not be written is
// written at the topic's next use; a topic used once and never again
// whose only mark failed keeps its snapshot until it is deleted.
//
// # Live delivery
//
// Stream S republishes each message it stores, and only those, to the
// topic's live subject. A node subscribes to that subject when its hub
// subscribes the topic, so only nodes with local subscribers receive a
// topic's messages. When publishers on several connections race on one
// topic, the server may republish two messages swapped (Seq 146 before
// 145): a node holds a message that arrives after a gap until the gap
// fills, for at most 100ms, and hands messages to the hub in Seq order; a
// gap that does not fill in time makes it call [fanout.Receiver.Resync]
// for the topic. Messages published
// while a node's connection was down, or dropped because the node fell
// behind (a slow consumer), are not redelivered: after a reconnect the node
// calls [fanout.Receiver.Resync] for every subscribed topic, and after a
// drop for that topic, and the hub fills the gap from history.
//
// While the connection is down, every operation fails at once with an
// error matching [fanout.ErrUnavailable], and operations in flight when it
// drops fail then. A publish that fails that way may still have been
// stored, as with any lost acknowledgement: publish with an idempotency key
// to retry safely.
//
// # Snapshots
//
// A keyed message is also written to S_KEYS, which keeps one message per
// topic and key, by compare-and-set so that a key never goes back to an
// older message. That second write is not atomic with the first; instead,
// before a publish appends after a keyed message, it makes sure that the
// keyed message is in S_KEYS. Hence S_KEYS always holds every keyed
// message of a topic except perhaps the topic's last one. Snapshot reads
// the topic's last message, then S_KEYS, then the history after that last
// message (what was published meanwhile), and merges the three: the items
// are exactly the state at the position of the newest message it read.
//
// # Idempotency
//
// A publish with an idempotency key carries Nats-Msg-Id, made of the topic,
// the epoch it continues and the key, so JetStream stores it once within
// [Options.IdempotencyWindow] (at most HistoryAge) and a key used before
// the topic expired or was deleted publishes again. A repeated publish
// gets the first one's stream sequence from the server and returns that
// message's position, read from history, or, when the message has left
// history already, from S_IDEM, which records the position of each
// idempotent publish for the window.
package nats
