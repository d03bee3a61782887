package wire

import (
	"fmt"
	"strconv"
	"time"

	"github.com/gofanout/fanout/internal/payload"
)

// FrameExpiry is the frame that tells a client when its credentials
// expire.
const FrameExpiry = "expiry"

// MaxTokenLength bounds the token of an auth or refresh command, in bytes
// (the WebSocket read limit bounds the command as a whole).
const MaxTokenLength = 16 << 10

// Field names of the credential commands and frames.
const (
	fieldToken   = "token"
	fieldExpires = "expires"
)

// checkToken checks the fields of an auth or refresh command, and that no
// other command carries a token. others tells whether fields of other
// commands were given.
func checkToken(c Command, given, others bool) error {
	switch c.Type {
	case CmdAuth, CmdRefresh:
	default:
		if given {
			return badRequest(fmt.Errorf("%q belongs to %s and %s", fieldToken, CmdAuth, CmdRefresh))
		}
		return nil
	}
	switch {
	case others:
		return badRequest(fmt.Errorf("%s has no fields but %q, %q and %q", c.Type, fieldID, fieldType, fieldToken))
	case !given:
		return badRequest(fmt.Errorf("%s needs %q", c.Type, fieldToken))
	case len(c.Token) > MaxTokenLength:
		return badRequest(fmt.Errorf("%q longer than %d bytes", fieldToken, MaxTokenLength))
	}
	return nil
}

// appendExpires appends the "expires" field of t, in milliseconds since
// the Unix epoch, unless t is zero.
func appendExpires(b []byte, t time.Time) []byte {
	if t.IsZero() {
		return b
	}
	b = append(b, `,"expires":`...)
	return strconv.AppendInt(b, t.UnixMilli(), 10)
}

// appendExpiry appends an expiry frame.
func appendExpiry(b []byte, t time.Time) []byte {
	b = append(b, `{"type":"expiry"`...)
	b = appendExpires(b, t)
	return append(b, '}')
}

// parseExpires decodes an "expires" field.
func parseExpires(name string, v []byte) (time.Time, error) {
	ms, err := payload.Int(name, v)
	if err != nil {
		return time.Time{}, err
	}
	return time.UnixMilli(ms), nil
}

// parseExpiry decodes an expiry frame.
func parseExpiry(ms []payload.Member, strict bool) (Frame, error) {
	var f Frame
	var err error
	for _, m := range ms {
		switch m.Name {
		case fieldType:
		case fieldExpires:
			f.Expires, err = parseExpires(m.Name, m.Value)
		default:
			if strict {
				err = payload.Unknown(m.Name)
			}
		}
		if err != nil {
			return Frame{}, err
		}
	}
	if f.Expires.IsZero() {
		return Frame{}, fmt.Errorf("missing %q", fieldExpires)
	}
	return f, nil
}
