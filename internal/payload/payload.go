// Package payload decodes the payload of a publish in the JSON protocol and
// in the HTTP publish body: a "data" JSON value or a "data64" base64 string.
// It imports nothing of fanout so that the root package can use it.
package payload

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
)

// Decode returns the bytes to publish; exactly one of data and data64 must
// be given. A JSON value is compacted, so that it travels as "data" again
// (the encoder sends JSON with line breaks or surrounding space as data64).
// Errors describe the bad input; callers wrap them as bad requests.
func Decode(data json.RawMessage, data64 *string) ([]byte, error) {
	switch {
	case data != nil && data64 != nil:
		return nil, errors.New("give data or data64, not both")
	case data64 != nil:
		b, err := base64.StdEncoding.DecodeString(*data64)
		if err != nil {
			return nil, fmt.Errorf("data64: %v", err)
		}
		return b, nil
	case data != nil:
		var c bytes.Buffer
		if err := json.Compact(&c, data); err != nil {
			return nil, fmt.Errorf("data: %v", err)
		}
		return c.Bytes(), nil
	}
	return nil, errors.New("publish needs data or data64")
}
