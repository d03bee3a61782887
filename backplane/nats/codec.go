package nats

import (
	"encoding/json"
	"errors"
	"net/url"
	"strconv"
	"time"

	"github.com/gofanout/fanout"
	"github.com/nats-io/nats.go"
)

// Headers that carry a message's metadata; the payload is the message's data
// as it is.
const (
	hdrEpoch  = "Fanout-Epoch"  // the topic's epoch
	hdrSeq    = "Fanout-Seq"    // the message's Seq, decimal
	hdrTime   = "Fanout-Time"   // publish time, Unix nanoseconds
	hdrKey    = "Fanout-Key"    // the snapshot key, query-escaped
	hdrHeader = "Fanout-Header" // the message's header map, as JSON
)

var errNotFanout = errors.New("nats backplane: message without fanout headers")

// encode returns the NATS message for m at pos on subject.
func encode(subject string, m *fanout.Message, pos fanout.Position) (*nats.Msg, error) {
	msg := &nats.Msg{Subject: subject, Data: m.Data, Header: make(nats.Header, 6)}
	msg.Header.Set(hdrEpoch, pos.Epoch)
	msg.Header.Set(hdrSeq, strconv.FormatUint(pos.Seq, 10))
	msg.Header.Set(hdrTime, strconv.FormatInt(m.Time.UnixNano(), 10))
	if m.Key != "" {
		msg.Header.Set(hdrKey, url.QueryEscape(m.Key))
	}
	if len(m.Header) > 0 {
		h, err := json.Marshal(m.Header)
		if err != nil {
			return nil, err
		}
		msg.Header.Set(hdrHeader, string(h))
	}
	return msg, nil
}

// decode rebuilds a message of topic from the headers and data that encode
// wrote.
func decode(topic string, h nats.Header, data []byte) (*fanout.Message, error) {
	seq, err := strconv.ParseUint(h.Get(hdrSeq), 10, 64)
	epoch := h.Get(hdrEpoch)
	if err != nil || seq == 0 || epoch == "" {
		return nil, errNotFanout
	}
	ns, err := strconv.ParseInt(h.Get(hdrTime), 10, 64)
	if err != nil {
		return nil, errNotFanout
	}
	m := &fanout.Message{
		Topic:    topic,
		Position: fanout.Position{Epoch: epoch, Seq: seq},
		Data:     data,
		Time:     time.Unix(0, ns),
	}
	if m.Data == nil {
		m.Data = []byte{}
	}
	if k := h.Get(hdrKey); k != "" {
		if m.Key, err = url.QueryUnescape(k); err != nil {
			return nil, errNotFanout
		}
	}
	if hh := h.Get(hdrHeader); hh != "" {
		if err := json.Unmarshal([]byte(hh), &m.Header); err != nil {
			return nil, errNotFanout
		}
	}
	return m, nil
}

// stored is a message as JetStream keeps it: the fanout message and where
// it sits in its stream.
type stored struct {
	msg       *fanout.Message
	streamSeq uint64
	at        time.Time // when the server stored it
	inc       string    // the storage's incarnation it was appended in
}
