// Package payload holds the parts of the JSON protocol of docs/PROTOCOL.md
// that the root package needs as well as internal/wire: the rule for
// "data" and "data64", the strict decoding of a JSON object (exact field
// names, no member twice, nothing after the object), JSON strings, and the
// fields of a publish, which the publish command and the HTTP publish body
// share. It imports nothing of fanout, so that the root package can use it.
//
// Errors of this package describe the input in the client's terms (its
// field names, never a Go type); callers wrap them as bad requests.
package payload

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"unicode/utf8"
)

// The data/data64 rule, in both directions:
//
//   - A frame (server to client) carries a payload as "data" when it is
//     valid JSON in valid UTF-8 that a JSON decoder hands back byte for
//     byte as one line: no CR or LF (which separate frames) and no white
//     space around it. Anything else goes as "data64". See [AppendData].
//   - A publish (client to server) carries a payload as "data" when it is
//     compact JSON in valid UTF-8, since the server publishes a "data"
//     value as its compact text; anything else goes as "data64", so that
//     subscribers receive exactly the bytes published. See
//     [AppendPublishData] and [Decode].

// AppendData appends the payload of a frame as `,"data":<json>` or
// `,"data64":"<base64>"`, by the rule above. (encoding/json accepts invalid
// UTF-8 inside strings, which a WebSocket text message must not carry.)
func AppendData(b, data []byte) []byte {
	if IsFrameData(data) {
		b = append(b, `,"data":`...)
		return append(b, data...)
	}
	return appendData64(b, data)
}

// IsFrameData reports whether a frame carries data as "data".
func IsFrameData(data []byte) bool {
	return len(data) > 0 && !bytes.ContainsAny(data, "\n\r") && !isSpace(data[0]) && !isSpace(data[len(data)-1]) &&
		utf8.Valid(data) && json.Valid(data)
}

// AppendPublishData appends the payload of a publish as `,"data":<json>`
// or `,"data64":"<base64>"`, by the rule above.
func AppendPublishData(b, data []byte) []byte {
	if IsPublishData(data) {
		b = append(b, `,"data":`...)
		return append(b, data...)
	}
	return appendData64(b, data)
}

// IsPublishData reports whether a publish carries data as "data": whether
// the server's compaction leaves it as it is.
func IsPublishData(data []byte) bool {
	if !IsFrameData(data) {
		return false
	}
	var c bytes.Buffer
	c.Grow(len(data))
	return json.Compact(&c, data) == nil && bytes.Equal(c.Bytes(), data)
}

func appendData64(b, data []byte) []byte {
	b = append(b, `,"data64":"`...)
	b = base64.StdEncoding.AppendEncode(b, data)
	return append(b, '"')
}

func isSpace(c byte) bool { return c == ' ' || c == '\t' || c == '\n' || c == '\r' }

// Decode returns the payload of a publish from the raw JSON values of its
// "data" and "data64" members (nil when absent); exactly one must be given.
// A "data" value is compacted, so that it travels as "data" again.
func Decode(data, data64 []byte) ([]byte, error) {
	switch {
	case data != nil && data64 != nil:
		return nil, errors.New(`give "data" or "data64", not both`)
	case data64 != nil:
		s, err := String(FieldData64, data64)
		if err != nil {
			return nil, err
		}
		b, err := base64.StdEncoding.DecodeString(s)
		if err != nil {
			return nil, fmt.Errorf(`"data64" is not standard padded base64: %v`, err)
		}
		return b, nil
	case data != nil:
		var c bytes.Buffer
		if err := json.Compact(&c, data); err != nil {
			return nil, fmt.Errorf(`"data": %v`, err)
		}
		return c.Bytes(), nil
	}
	return nil, errors.New(`a publish needs "data" or "data64"`)
}

// DecodeData decodes the payload of a frame, given the raw JSON values of
// its "data" and "data64" members (nil when absent): a "data" value byte
// for byte, a "data64" string decoded.
func DecodeData(data, data64 []byte) ([]byte, error) {
	switch {
	case data != nil && data64 != nil:
		return nil, errors.New(`both "data" and "data64"`)
	case data64 != nil:
		s, err := String(FieldData64, data64)
		if err != nil {
			return nil, err
		}
		b, err := base64.StdEncoding.DecodeString(s)
		if err != nil {
			return nil, fmt.Errorf(`"data64": %v`, err)
		}
		return b, nil
	case data != nil:
		return bytes.Clone(data), nil
	}
	return nil, errors.New(`neither "data" nor "data64"`)
}
