package redis

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"strconv"
	"time"

	"github.com/gofanout/fanout"
)

// A message is stored in the stream and the snapshot hash, and published
// on the topic's channel, as one record:
//
//	epoch SP seq SP body
//
// The publish script writes epoch and seq, which only it knows; the body is
// encoded here:
//
//	flags     1 byte; bit 0: a time follows
//	key       uvarint length, bytes
//	time      varint Unix nanoseconds (when flag bit 0 is set)
//	headers   uvarint count, then per header: uvarint length, name,
//	          uvarint length, value
//	data      the rest
//
// A record carries the whole message, so a node that receives it on its
// channel needs no further read.

const flagTime = 1 << 0

// errRecord reports a record that does not decode.
var errRecord = errors.New("redis backplane: malformed record")

// appendBody appends the body of m's record to dst.
func appendBody(dst []byte, m *fanout.Message) []byte {
	var flags byte
	if !m.Time.IsZero() {
		flags |= flagTime
	}
	dst = append(dst, flags)
	dst = appendString(dst, m.Key)
	if flags&flagTime != 0 {
		dst = binary.AppendVarint(dst, m.Time.UnixNano())
	}
	dst = binary.AppendUvarint(dst, uint64(len(m.Header)))
	for k, v := range m.Header {
		dst = appendString(dst, k)
		dst = appendString(dst, v)
	}
	return append(dst, m.Data...)
}

func appendString(dst []byte, s string) []byte {
	dst = binary.AppendUvarint(dst, uint64(len(s)))
	return append(dst, s...)
}

// decodeRecord decodes a record of topic. The message keeps a reference to
// rec for its data: the caller must not modify rec afterwards.
func decodeRecord(topic string, rec []byte) (*fanout.Message, error) {
	epoch, rest, ok := bytes.Cut(rec, []byte{' '})
	if !ok {
		return nil, fmt.Errorf("%w: no epoch", errRecord)
	}
	seqText, body, ok := bytes.Cut(rest, []byte{' '})
	if !ok {
		return nil, fmt.Errorf("%w: no seq", errRecord)
	}
	seq, err := strconv.ParseUint(string(seqText), 10, 64)
	if err != nil || seq == 0 {
		return nil, fmt.Errorf("%w: bad seq %q", errRecord, seqText)
	}
	m := &fanout.Message{Topic: topic, Position: fanout.Position{Epoch: string(epoch), Seq: seq}}
	if err := decodeBody(m, body); err != nil {
		return nil, err
	}
	return m, nil
}

func decodeBody(m *fanout.Message, b []byte) error {
	if len(b) == 0 {
		return fmt.Errorf("%w: empty body", errRecord)
	}
	flags := b[0]
	if flags&^flagTime != 0 {
		return fmt.Errorf("%w: unknown flags %#x", errRecord, flags)
	}
	b = b[1:]
	var err error
	if m.Key, b, err = readString(b); err != nil {
		return err
	}
	if flags&flagTime != 0 {
		ns, n := binary.Varint(b)
		if n <= 0 {
			return fmt.Errorf("%w: bad time", errRecord)
		}
		m.Time = time.Unix(0, ns)
		b = b[n:]
	}
	count, n := binary.Uvarint(b)
	if n <= 0 || count > uint64(len(b)) { // each header takes at least 2 bytes
		return fmt.Errorf("%w: bad header count", errRecord)
	}
	b = b[n:]
	if count > 0 {
		m.Header = make(map[string]string, count)
		for range count {
			var k, v string
			if k, b, err = readString(b); err != nil {
				return err
			}
			if v, b, err = readString(b); err != nil {
				return err
			}
			m.Header[k] = v
		}
	}
	m.Data = b
	if m.Data == nil {
		m.Data = []byte{}
	}
	return nil
}

func readString(b []byte) (string, []byte, error) {
	l, n := binary.Uvarint(b)
	if n <= 0 || l > uint64(len(b)-n) {
		return "", nil, fmt.Errorf("%w: bad length", errRecord)
	}
	end := n + int(l)
	return string(b[n:end]), b[end:], nil
}
