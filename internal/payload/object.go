package payload

import (
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"strconv"
	"unicode/utf8"
)

// Member is one member of a JSON object: its name, unescaped, and its raw
// value, a slice of the decoded input.
type Member struct {
	Name  string
	Value []byte
}

var errNotObject = errors.New("want a JSON object")

// Members appends to dst the members of b, which must hold one JSON object
// and nothing else but white space, in their order. Field names are
// compared exactly, as the protocol documents them: "TYPE" is not "type".
// A name given twice is an error, returned after the scan with every
// member but the repeated ones, so that the caller may still read the
// command's id. Values are checked to be JSON, not of which type: the
// helpers below do that.
func Members(dst []Member, b []byte) ([]Member, error) {
	if !json.Valid(b) {
		// Name the first problem as encoding/json does.
		var v any
		if err := json.Unmarshal(b, &v); err != nil {
			return dst, err
		}
		return dst, errors.New("not valid JSON")
	}
	i := skipSpace(b, 0)
	if b[i] != '{' {
		return dst, errNotObject
	}
	i = skipSpace(b, i+1)
	start := len(dst)
	var dup error
	if b[i] == '}' {
		return dst, nil
	}
	for {
		// b is valid JSON: a member is a string, a colon and a value.
		end := skipString(b, i)
		name, err := unquote(b[i:end])
		if err != nil {
			return dst, err
		}
		i = skipSpace(b, end)
		i = skipSpace(b, i+1) // the colon
		end = skipValue(b, i)
		v := b[i:end]
		if dup == nil {
			for _, m := range dst[start:] {
				if m.Name == name {
					dup = fmt.Errorf("%q given twice", name)
					break
				}
			}
			if dup == nil {
				dst = append(dst, Member{Name: name, Value: v})
			}
		}
		i = skipSpace(b, end)
		if b[i] == '}' {
			return dst, dup
		}
		i = skipSpace(b, i+1) // the comma
	}
}

func skipSpace(b []byte, i int) int {
	for i < len(b) && isSpace(b[i]) {
		i++
	}
	return i
}

// skipString returns the index after the string that starts at b[i].
func skipString(b []byte, i int) int {
	for i++; ; i++ {
		switch b[i] {
		case '\\':
			i++
		case '"':
			return i + 1
		}
	}
}

// skipValue returns the index after the value that starts at b[i].
func skipValue(b []byte, i int) int {
	switch b[i] {
	case '"':
		return skipString(b, i)
	case '{', '[':
		depth := 0
		for ; ; i++ {
			switch b[i] {
			case '"':
				i = skipString(b, i) - 1
			case '{', '[':
				depth++
			case '}', ']':
				depth--
				if depth == 0 {
					return i + 1
				}
			}
		}
	}
	for i < len(b) && !isSpace(b[i]) && b[i] != ',' && b[i] != '}' && b[i] != ']' {
		i++
	}
	return i
}

// unquote decodes the JSON string q, which is valid JSON.
func unquote(q []byte) (string, error) {
	plain := true
	for _, c := range q[1 : len(q)-1] {
		if c == '\\' {
			plain = false
			break
		}
	}
	if plain && utf8.Valid(q) {
		return string(q[1 : len(q)-1]), nil
	}
	var s string
	err := json.Unmarshal(q, &s)
	return s, err
}

// IsNull reports whether the raw value v is null, which the protocol
// takes as an absent optional field (except for "data", where null is a
// payload).
func IsNull(v []byte) bool { return string(v) == "null" }

// String decodes the raw value v of the field name as a string; null is
// "".
func String(name string, v []byte) (string, error) {
	if IsNull(v) {
		return "", nil
	}
	if len(v) == 0 || v[0] != '"' {
		return "", fmt.Errorf("%q must be a string", name)
	}
	return unquote(v)
}

// Bool decodes the raw value v of the field name as a boolean; null is
// false.
func Bool(name string, v []byte) (bool, error) {
	switch string(v) {
	case "true":
		return true, nil
	case "false", "null":
		return false, nil
	}
	return false, fmt.Errorf("%q must be true or false", name)
}

// Uint decodes the raw value v of the field name as an integer from 0 to
// 2^64-1, written without fraction or exponent.
func Uint(name string, v []byte) (uint64, error) {
	n, err := strconv.ParseUint(string(v), 10, 64)
	if err != nil {
		return 0, fmt.Errorf("%q must be an integer from 0 to %d", name, uint64(math.MaxUint64))
	}
	return n, nil
}

// Int decodes the raw value v of the field name as an integer that fits
// in 64 bits, written without fraction or exponent.
func Int(name string, v []byte) (int64, error) {
	n, err := strconv.ParseInt(string(v), 10, 64)
	if err != nil {
		return 0, fmt.Errorf("%q must be an integer", name)
	}
	return n, nil
}

// StringMap decodes the raw value v of the field name as an object of
// strings; null is a nil map. Member names follow the rules of [Members].
func StringMap(name string, v []byte) (map[string]string, error) {
	if IsNull(v) {
		return nil, nil
	}
	if len(v) == 0 || v[0] != '{' {
		return nil, fmt.Errorf("%q must be an object of strings", name)
	}
	ms, err := Members(nil, v)
	if err != nil {
		return nil, fmt.Errorf("%q: %w", name, err)
	}
	m := make(map[string]string, len(ms))
	for _, e := range ms {
		if len(e.Value) == 0 || e.Value[0] != '"' {
			return nil, fmt.Errorf("%q: %q must be a string", name, e.Name)
		}
		s, err := unquote(e.Value)
		if err != nil {
			return nil, err
		}
		m[e.Name] = s
	}
	return m, nil
}

// Unknown is the error for a field the protocol does not define.
func Unknown(name string) error { return fmt.Errorf("unknown field %q", name) }

// Elements returns the elements of the JSON array v, which is valid JSON,
// as slices of v.
func Elements(v []byte) ([][]byte, error) {
	if !json.Valid(v) {
		return nil, errors.New("not valid JSON")
	}
	i := skipSpace(v, 0)
	if v[i] != '[' {
		return nil, errors.New("want a JSON array")
	}
	var out [][]byte
	i = skipSpace(v, i+1)
	if v[i] == ']' {
		return out, nil
	}
	for {
		end := skipValue(v, i)
		out = append(out, v[i:end])
		i = skipSpace(v, end)
		if v[i] == ']' {
			return out, nil
		}
		i = skipSpace(v, i+1)
	}
}
