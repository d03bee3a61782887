package payload

import (
	"errors"
	"fmt"
)

// Field names of a publish, in the publish command and the HTTP publish
// body.
const (
	FieldTopic          = "topic"
	FieldData           = "data"
	FieldData64         = "data64"
	FieldKey            = "key"
	FieldIdempotencyKey = "idempotency_key"
	FieldHeader         = "header"
)

// Limits of a publish's fields. (The hub bounds the payload and checks the
// topic.)
const (
	// MaxIdempotencyKeyLength bounds an idempotency key, in bytes.
	MaxIdempotencyKeyLength = 256
	// MaxHeaders bounds the entries of a header.
	MaxHeaders = 32
	// MaxHeaderBytes bounds a header: the lengths of its names and values
	// added up.
	MaxHeaderBytes = 4 << 10
)

// Publish holds the fields of a publish. Set it member by member, then
// call Finish.
type Publish struct {
	Topic          string
	Data           []byte // set by Finish
	Key            string
	IdempotencyKey string
	Header         map[string]string

	data, data64 []byte // raw values
}

// Set sets the publish field name from its raw value v. It reports false,
// and sets nothing, when name is not a field of a publish.
func (p *Publish) Set(name string, v []byte) (bool, error) {
	var err error
	switch name {
	case FieldTopic:
		p.Topic, err = String(name, v)
	case FieldData:
		p.data = v
	case FieldData64:
		p.data64 = v
	case FieldKey:
		p.Key, err = String(name, v)
	case FieldIdempotencyKey:
		p.IdempotencyKey, err = String(name, v)
	case FieldHeader:
		p.Header, err = StringMap(name, v)
	default:
		return false, nil
	}
	return true, err
}

// Given reports whether any field but the topic was set: a command other
// than publish must have none.
func (p *Publish) Given() bool {
	return p.data != nil || p.data64 != nil || p.Key != "" || p.IdempotencyKey != "" || p.Header != nil
}

// Finish checks the limits of the fields and decodes the payload.
func (p *Publish) Finish() error {
	if len(p.IdempotencyKey) > MaxIdempotencyKeyLength {
		return fmt.Errorf("%q longer than %d bytes", FieldIdempotencyKey, MaxIdempotencyKeyLength)
	}
	if err := CheckHeader(p.Header); err != nil {
		return err
	}
	d, err := Decode(p.data, p.data64)
	if err != nil {
		return err
	}
	p.Data = d
	return nil
}

// CheckHeader checks h against [MaxHeaders] and [MaxHeaderBytes]; names
// must not be empty.
func CheckHeader(h map[string]string) error {
	if len(h) > MaxHeaders {
		return fmt.Errorf("%q has more than %d entries", FieldHeader, MaxHeaders)
	}
	n := 0
	for k, v := range h {
		if k == "" {
			return errors.New(`"header" has an empty name`)
		}
		n += len(k) + len(v)
	}
	if n > MaxHeaderBytes {
		return fmt.Errorf("%q larger than %d bytes", FieldHeader, MaxHeaderBytes)
	}
	return nil
}

// Append appends the fields of p as members of a JSON object, each after
// a comma, in the order topic, key, idempotency_key, header, data or
// data64; empty optional fields are left out. The payload is p.Data, by
// the rule of [AppendPublishData].
func (p *Publish) Append(b []byte) []byte {
	b = append(b, `,"topic":`...)
	b = AppendString(b, p.Topic)
	if p.Key != "" {
		b = append(b, `,"key":`...)
		b = AppendString(b, p.Key)
	}
	if p.IdempotencyKey != "" {
		b = append(b, `,"idempotency_key":`...)
		b = AppendString(b, p.IdempotencyKey)
	}
	if len(p.Header) > 0 {
		b = append(b, `,"header":`...)
		b = AppendStringMap(b, p.Header)
	}
	return AppendPublishData(b, p.Data)
}
