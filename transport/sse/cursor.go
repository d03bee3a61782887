package sse

import (
	"encoding/base64"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"slices"

	"github.com/gofanout/fanout"
)

// ErrInvalidCursor is returned for a cursor (a Last-Event-ID header or a
// since parameter) that is corrupt, of an unknown version, or made for
// another set of topics.
var ErrInvalidCursor = errors.New("sse: invalid cursor")

// Cursor format, version 1 (docs/PROTOCOL.md is normative): the unpadded
// base64url encoding of
//
//	version  1 byte, 1
//	checksum 4 bytes, big-endian CRC-32 (IEEE) of the stream's topics,
//	         sorted, each followed by "\n", then of every byte after the
//	         checksum
//	nEpochs  uvarint, then nEpochs times: uvarint length, epoch bytes
//	per topic, in sorted order: uvarint e; 0 means no position (the
//	         topic is subscribed afresh); otherwise the topic is at epoch
//	         number e (from 1) and a uvarint seq follows
//
// Version 2 is version 1 followed by a bit set of the topics that ended
// (delivered their final message): ceil(topics/8) bytes, bit i%8 of byte
// i/8 for the i-th topic in sorted order; a topic that ended has a
// position, and the unused high bits of the last byte are zero. A stream
// writes version 2 only once one of its topics ended, so that the cursors
// of streams without final messages stay version 1.
const (
	cursorVersion      = 1
	cursorVersionEnded = 2
	// maxCursorLen bounds the text of a cursor. A cursor needs about four
	// bytes per topic, plus its epochs.
	maxCursorLen = 16 << 10
	// maxEpochLen bounds one epoch name in a cursor.
	maxEpochLen = 1024
)

// cursorState is a stream's position in each of its topics, in sorted topic
// order, with an epoch table so that a cursor names each epoch once. It is
// owned by one goroutine.
type cursorState struct {
	topics []string // sorted, unique
	index  map[string]int
	set    []bool
	pos    []fanout.Position
	ended  []bool // the topic delivered its final message; set implies set[i]
	open   int    // topics that have not ended

	sum    uint32   // CRC-32 of the topics, each followed by "\n"
	epochs []string // distinct epochs of the set positions
	epochN []int    // per topic: index in epochs, valid when set
	bin    []byte   // scratch for encoding
}

// newCursorState returns the state for a stream of topics, which must be
// sorted and unique, with no positions.
func newCursorState(topics []string) *cursorState {
	c := &cursorState{
		topics: topics,
		index:  make(map[string]int, len(topics)),
		set:    make([]bool, len(topics)),
		pos:    make([]fanout.Position, len(topics)),
		ended:  make([]bool, len(topics)),
		open:   len(topics),
		epochN: make([]int, len(topics)),
	}
	for i, t := range topics {
		c.index[t] = i
		c.sum = crc32.Update(c.sum, crc32.IEEETable, []byte(t))
		c.sum = crc32.Update(c.sum, crc32.IEEETable, []byte{'\n'})
	}
	return c
}

// sortTopics returns topics sorted, without duplicates.
func sortTopics(topics []string) []string {
	s := slices.Clone(topics)
	slices.Sort(s)
	return slices.Compact(s)
}

// setPos records the position of topic i.
func (c *cursorState) setPos(i int, p fanout.Position) {
	if c.set[i] && c.pos[i].Epoch == p.Epoch {
		c.pos[i].Seq = p.Seq
		return
	}
	c.set[i], c.pos[i] = true, p
	if n := slices.Index(c.epochs, p.Epoch); n >= 0 {
		c.epochN[i] = n
		return
	}
	// A new epoch (rare: a first position, or history was lost): rebuild
	// the table so that it holds only the epochs in use.
	c.epochs = c.epochs[:0]
	for j := range c.topics {
		if !c.set[j] {
			continue
		}
		n := slices.Index(c.epochs, c.pos[j].Epoch)
		if n < 0 {
			n = len(c.epochs)
			c.epochs = append(c.epochs, c.pos[j].Epoch)
		}
		c.epochN[j] = n
	}
}

// end records that topic i, which has a position, delivered its final
// message.
func (c *cursorState) end(i int) {
	if !c.ended[i] {
		c.ended[i] = true
		c.open--
	}
}

// appendCursor appends the cursor of the current positions.
func (c *cursorState) appendCursor(b []byte) []byte {
	version := byte(cursorVersion)
	if c.open < len(c.topics) {
		version = cursorVersionEnded
	}
	bin := append(c.bin[:0], version, 0, 0, 0, 0)
	bin = binary.AppendUvarint(bin, uint64(len(c.epochs)))
	for _, e := range c.epochs {
		bin = binary.AppendUvarint(bin, uint64(len(e)))
		bin = append(bin, e...)
	}
	for i := range c.topics {
		if !c.set[i] {
			bin = append(bin, 0)
			continue
		}
		bin = binary.AppendUvarint(bin, uint64(c.epochN[i]+1))
		bin = binary.AppendUvarint(bin, c.pos[i].Seq)
	}
	if version == cursorVersionEnded {
		n := len(bin)
		bin = append(bin, make([]byte, (len(c.topics)+7)/8)...)
		for i, e := range c.ended {
			if e {
				bin[n+i/8] |= 1 << (i % 8)
			}
		}
	}
	binary.BigEndian.PutUint32(bin[1:5], crc32.Update(c.sum, crc32.IEEETable, bin[5:]))
	c.bin = bin
	return base64.RawURLEncoding.AppendEncode(b, bin)
}

// decode sets the positions from cursor s, which must be a cursor of the
// same topics. On error the state is unchanged.
func (c *cursorState) decode(s string) error {
	if len(s) > maxCursorLen {
		return fmt.Errorf("%w: longer than %d bytes", ErrInvalidCursor, maxCursorLen)
	}
	bin, err := base64.RawURLEncoding.DecodeString(s)
	if err != nil {
		return fmt.Errorf("%w: not unpadded base64url", ErrInvalidCursor)
	}
	if len(bin) < 5 {
		return fmt.Errorf("%w: too short", ErrInvalidCursor)
	}
	if bin[0] != cursorVersion && bin[0] != cursorVersionEnded {
		return fmt.Errorf("%w: unknown version %d", ErrInvalidCursor, bin[0])
	}
	if binary.BigEndian.Uint32(bin[1:5]) != crc32.Update(c.sum, crc32.IEEETable, bin[5:]) {
		return fmt.Errorf("%w: checksum mismatch: the cursor is corrupt or belongs to another set of topics", ErrInvalidCursor)
	}
	r := bin[5:]
	uvarint := func(what string) (uint64, error) {
		v, n := binary.Uvarint(r)
		if n <= 0 {
			return 0, fmt.Errorf("%w: truncated or overlong %s", ErrInvalidCursor, what)
		}
		r = r[n:]
		return v, nil
	}
	ne, err := uvarint("epoch count")
	if err != nil {
		return err
	}
	if ne > uint64(len(c.topics)) {
		return fmt.Errorf("%w: %d epochs for %d topics", ErrInvalidCursor, ne, len(c.topics))
	}
	epochs := make([]string, ne)
	for i := range epochs {
		l, err := uvarint("epoch length")
		if err != nil {
			return err
		}
		if l > maxEpochLen || l > uint64(len(r)) {
			return fmt.Errorf("%w: epoch of %d bytes", ErrInvalidCursor, l)
		}
		epochs[i] = string(r[:l])
		r = r[l:]
	}
	set := make([]bool, len(c.topics))
	pos := make([]fanout.Position, len(c.topics))
	for i := range c.topics {
		e, err := uvarint("epoch number")
		if err != nil {
			return err
		}
		if e == 0 {
			continue
		}
		if e > ne {
			return fmt.Errorf("%w: epoch number %d of %d", ErrInvalidCursor, e, ne)
		}
		seq, err := uvarint("seq")
		if err != nil {
			return err
		}
		set[i], pos[i] = true, fanout.Position{Epoch: epochs[e-1], Seq: seq}
	}
	ended := make([]bool, len(c.topics))
	if bin[0] == cursorVersionEnded {
		n := (len(c.topics) + 7) / 8
		if len(r) < n {
			return fmt.Errorf("%w: truncated ended topics", ErrInvalidCursor)
		}
		if pad := len(c.topics) % 8; pad != 0 && r[n-1]>>pad != 0 {
			return fmt.Errorf("%w: ended bits beyond the topics", ErrInvalidCursor)
		}
		found := false
		for i := range c.topics {
			if r[i/8]&(1<<(i%8)) == 0 {
				continue
			}
			if !set[i] {
				return fmt.Errorf("%w: a topic without a position ended", ErrInvalidCursor)
			}
			ended[i], found = true, true
		}
		if !found {
			return fmt.Errorf("%w: version 2 without an ended topic", ErrInvalidCursor)
		}
		r = r[n:]
	}
	if len(r) != 0 {
		return fmt.Errorf("%w: %d trailing bytes", ErrInvalidCursor, len(r))
	}
	for i := range c.topics {
		if set[i] {
			c.setPos(i, pos[i])
		}
		if ended[i] {
			c.end(i)
		}
	}
	return nil
}

// EncodeCursor returns the cursor of a stream of topics, the value that the
// stream's events carry in their id field, with each topic at its position
// in pos. A topic missing from pos has no position: a stream resumed from the
// cursor subscribes to it afresh. A server can hand a cursor to a page, which
// passes it as the since parameter to continue exactly after the state it
// rendered. The order of topics does not matter; duplicates count once.
func EncodeCursor(topics []string, pos map[string]fanout.Position) string {
	c := newCursorState(sortTopics(topics))
	for i, t := range c.topics {
		if p, ok := pos[t]; ok {
			c.setPos(i, p)
		}
	}
	return string(c.appendCursor(nil))
}

// DecodeCursor returns the positions held by a cursor of a stream of
// topics; topics without a position are absent from the map. Whether a
// topic ended (a cursor of version 2) is not reported: the topic is at the
// position of its final message. It fails with
// an error matching [ErrInvalidCursor] when the cursor is corrupt or was
// made for another set of topics.
func DecodeCursor(cursor string, topics []string) (map[string]fanout.Position, error) {
	c := newCursorState(sortTopics(topics))
	if err := c.decode(cursor); err != nil {
		return nil, err
	}
	m := make(map[string]fanout.Position, len(c.topics))
	for i, t := range c.topics {
		if c.set[i] {
			m[t] = c.pos[i]
		}
	}
	return m, nil
}
