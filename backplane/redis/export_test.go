package redis

import (
	"strconv"
	"time"

	"github.com/gofanout/fanout"
)

// DecodeRecord and AppendRecord expose the record codec to the fuzz tests.
var DecodeRecord = decodeRecord

func AppendRecord(dst []byte, m *fanout.Message) []byte {
	dst = append(dst, m.Position.Epoch...)
	dst = append(dst, ' ')
	dst = strconv.AppendUint(dst, m.Position.Seq, 10)
	dst = append(dst, ' ')
	return appendBody(dst, m)
}

// SetRetryWindow shortens how long the retry IDs of publishes without an
// idempotency key are kept; call it before the node's first publish.
func SetRetryWindow(b *Backplane, d time.Duration) { b.pub.header[hdrRetryWindow] = ms(d) }

// SetMaxQueued sets how many publishes may wait for a batch; call it
// before the node's first publish.
func SetMaxQueued(b *Backplane, n int) { b.pub.maxQueued = n }

// DefaultIdempotencyWindow is Options.IdempotencyWindow's default.
const DefaultIdempotencyWindow = defaultIdempotencyWindow

// SetPipelines sets how many senders may run; call it before the node's
// first publish.
func SetPipelines(b *Backplane, n int) { b.pub.pipelines = n }

// Waiting returns how many publishes wait for a sender, and how many
// senders wait for publishes.
func Waiting(b *Backplane) (queued, idle int) {
	b.pub.mu.Lock()
	defer b.pub.mu.Unlock()
	return len(b.pub.queue), b.pub.idle
}
