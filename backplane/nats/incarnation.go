package nats

import (
	"context"

	"github.com/nats-io/nats.go/jetstream"
)

// A stream restored from older data (a backup, files an OS crash left
// unsynced) would let a node that never saw the lost messages append after
// the restored last message in the same epoch, handing out their Seqs
// again. So every message carries the storage's incarnation (header
// Fanout-Incarnation): a random name kept in the stream S_LIVE, which
// JetStream holds in memory, so that no restart brings it back together
// with older files. A server that restarts comes back with S_LIVE empty;
// the first node to find it so names a new incarnation, and a publish that
// finds its topic's last message from another incarnation starts a new
// epoch, continuing the numbering (see publishOnce). Replicated streams
// keep S_LIVE across the restart of a minority of servers, as they keep
// the data.

// hdrIncarnation names the incarnation of the storage that a message was
// appended in.
const hdrIncarnation = "Fanout-Incarnation"

// incarnation is the storage's incarnation as the node read it on the
// connection as it was after reconns reconnects.
type incarnation struct {
	name    string
	reconns uint64
}

// incarnation returns the storage's current incarnation: read from S_LIVE
// once per connection, and named by this node when S_LIVE has none.
func (b *Backplane) incarnation(ctx context.Context, ss *streamSet) (string, error) {
	rc := b.nc.Stats().Reconnects
	b.mu.Lock()
	inc := b.inc
	b.mu.Unlock()
	if inc.name != "" && inc.reconns == rc {
		return inc.name, nil
	}
	subj := b.subj.incarnation()
	for {
		raw, err := ss.live.GetLastMsgForSubject(ctx, subj)
		switch {
		case err == nil && len(raw.Data) > 0:
			b.mu.Lock()
			b.inc = incarnation{name: string(raw.Data), reconns: rc}
			b.mu.Unlock()
			return string(raw.Data), nil
		case err != nil && !msgNotFound(err):
			return "", err
		}
		// None yet: name one, unless another node does so first.
		_, err = b.js.Publish(ctx, subj, []byte(newEpoch()),
			jetstream.WithExpectLastSequencePerSubject(0), jetstream.WithRetryAttempts(0))
		if err != nil && !wrongLast(err) {
			return "", err
		}
	}
}

// liveStream is the configuration of S_LIVE.
func (b *Backplane) liveStream() jetstream.StreamConfig {
	o := b.opts
	return jetstream.StreamConfig{
		Name:              o.Stream + "_LIVE",
		Description:       "fanout: the storage's incarnation, in memory, to tell a restart from older data",
		Subjects:          []string{o.Prefix + ".e"},
		MaxMsgsPerSubject: 1,
		Storage:           jetstream.MemoryStorage,
		Replicas:          o.Replicas,
		Discard:           jetstream.DiscardOld,
	}
}
