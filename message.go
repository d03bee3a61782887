package fanout

import (
	"strconv"
	"sync"
	"sync/atomic"
	"time"
)

// Position is where a message stands in its topic's stream.
//
// Seq grows by exactly one per message of a topic, so a gap is a matter of
// arithmetic. Epoch names the lineage of the topic's history: when history is
// lost (a memory backplane restarted, a Redis flushed), the epoch changes and
// an old Seq means nothing in the new one. A topic that was never published to
// is at Seq 0; its Epoch may then be empty.
//
// It marshals to JSON with the wire protocol's names, {"epoch":...,"seq":N}.
type Position struct {
	Epoch string `json:"epoch"`
	Seq   uint64 `json:"seq"`
}

// String formats p as "epoch:seq".
func (p Position) String() string {
	return p.Epoch + ":" + strconv.FormatUint(p.Seq, 10)
}

// Message is one published message.
//
// A Message is immutable once a backplane has delivered it: many sessions
// read it concurrently, and its encodings are cached with it. Data and Header
// must not be modified after the message is handed to the hub.
//
// It marshals to JSON with the wire protocol's names; Data, any bytes, as
// base64 in "data64".
type Message struct {
	Topic    string   `json:"topic"`
	Position Position `json:"position"`
	// Key, when not empty, makes the message the topic's current state for
	// that key (see [Hub.Publish] and snapshots).
	Key    string            `json:"key,omitempty"`
	Data   []byte            `json:"data64"`
	Time   time.Time         `json:"time"`
	Header map[string]string `json:"header,omitempty"`

	enc [maxEncodings]atomic.Pointer[[]byte]
	// limits are the topic's history limits when its options set some.
	limits *TopicLimits
}

// maxEncodings bounds how many wire formats a process may register.
const maxEncodings = 8

// Encoding is a wire format for messages. Each message is encoded at most once
// per Encoding, however many sessions receive it. Create an Encoding once per
// wire format, at package initialisation, with [NewEncoding].
type Encoding struct {
	id     int
	name   string
	encode func(*Message) []byte
}

var (
	encodingsMu sync.Mutex // guards nEncodings
	nEncodings  int
)

// NewEncoding registers a wire format. encode must be deterministic and must
// not retain or modify the message. NewEncoding panics when more than eight
// encodings are registered in one process, which is a programming error.
func NewEncoding(name string, encode func(*Message) []byte) *Encoding {
	encodingsMu.Lock()
	defer encodingsMu.Unlock()
	if nEncodings == maxEncodings {
		panic("fanout: too many encodings registered")
	}
	e := &Encoding{id: nEncodings, name: name, encode: encode}
	nEncodings++
	return e
}

// Name returns the name the encoding was registered with.
func (e *Encoding) Name() string { return e.name }

// Encode returns m in the wire format e. The first call per format encodes and
// caches; later calls return the cached bytes, which the caller must not
// modify. Encode is safe for concurrent use.
func (m *Message) Encode(e *Encoding) []byte {
	if p := m.enc[e.id].Load(); p != nil {
		return *p
	}
	b := e.encode(m)
	if m.enc[e.id].CompareAndSwap(nil, &b) {
		return b
	}
	return *m.enc[e.id].Load()
}

// size is what the message costs in a session's queue, in bytes.
func (m *Message) size() int {
	return len(m.Data) + len(m.Topic) + len(m.Key) + 64
}
