package nats

import (
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"strings"
)

// A topic name becomes one subject token: bytes that are safe in a NATS
// token ([A-Za-z0-9] and "-_:/@=+") stay as they are; every other byte,
// including ".", and the escape character "~" itself, becomes "~" followed by
// its two upper-case hex digits. The mapping is reversible and keeps the
// topic readable in subjects: "orders.eu" becomes "orders~2Eeu".

// escapeTopic returns the subject token for a topic name.
func escapeTopic(topic string) string {
	n := 0
	for i := 0; i < len(topic); i++ {
		if !safeByte[topic[i]] {
			n++
		}
	}
	if n == 0 {
		return topic
	}
	var sb strings.Builder
	sb.Grow(len(topic) + 2*n)
	for i := 0; i < len(topic); i++ {
		c := topic[i]
		if safeByte[c] {
			sb.WriteByte(c)
			continue
		}
		sb.WriteByte('~')
		sb.WriteByte(hexDigits[c>>4])
		sb.WriteByte(hexDigits[c&0xf])
	}
	return sb.String()
}

// errBadToken reports a subject token that escapeTopic cannot have made.
var errBadToken = errors.New("nats backplane: malformed subject token")

// unescapeTopic reverses escapeTopic.
func unescapeTopic(token string) (string, error) {
	if !strings.Contains(token, "~") {
		for i := 0; i < len(token); i++ {
			if !safeByte[token[i]] {
				return "", errBadToken
			}
		}
		return token, nil
	}
	b := make([]byte, 0, len(token))
	for i := 0; i < len(token); i++ {
		c := token[i]
		switch {
		case c == '~':
			if i+2 >= len(token) {
				return "", errBadToken
			}
			hi, lo := unhex(token[i+1]), unhex(token[i+2])
			if hi < 0 || lo < 0 {
				return "", errBadToken
			}
			d := byte(hi<<4 | lo)
			if safeByte[d] { // escapeTopic never escapes a safe byte
				return "", errBadToken
			}
			b = append(b, d)
			i += 2
		case safeByte[c]:
			b = append(b, c)
		default:
			return "", errBadToken
		}
	}
	return string(b), nil
}

const hexDigits = "0123456789ABCDEF"

func unhex(c byte) int {
	switch {
	case '0' <= c && c <= '9':
		return int(c - '0')
	case 'A' <= c && c <= 'F':
		return int(c-'A') + 10
	}
	return -1
}

var safeByte = func() (t [256]bool) {
	for c := 'a'; c <= 'z'; c++ {
		t[c] = true
	}
	for c := 'A'; c <= 'Z'; c++ {
		t[c] = true
	}
	for c := '0'; c <= '9'; c++ {
		t[c] = true
	}
	for _, c := range "-_:/@=+" {
		t[c] = true
	}
	return t
}()

// maxPlainKey is the longest key that keyToken spells out; longer keys are
// hashed so that subjects stay short.
const maxPlainKey = 96

// keyToken returns the subject token for a snapshot key: its unpadded
// base64url encoding, or "~" and the hex SHA-256 of a key longer than
// maxPlainKey bytes. The message itself carries the key, so the token need
// not be reversible.
func keyToken(key string) string {
	if len(key) <= maxPlainKey {
		return base64.RawURLEncoding.EncodeToString([]byte(key))
	}
	sum := sha256.Sum256([]byte(key))
	return "~" + hex.EncodeToString(sum[:])
}

// idemToken returns the token naming an idempotency key within a topic.
func idemToken(key string) string {
	sum := sha256.Sum256([]byte(key))
	return hex.EncodeToString(sum[:16])
}

// subjects holds the subject names of one backplane configuration.
type subjects struct {
	prefix string
}

func (s subjects) history(topic string) string { return s.prefix + ".h." + escapeTopic(topic) }
func (s subjects) live(topic string) string    { return s.prefix + ".l." + escapeTopic(topic) }
func (s subjects) keys(topic string) string    { return s.prefix + ".k." + escapeTopic(topic) + ".*" }
func (s subjects) key(topic, key string) string {
	return s.prefix + ".k." + escapeTopic(topic) + "." + keyToken(key)
}
func (s subjects) idem(topic, key string) string {
	return s.prefix + ".i." + escapeTopic(topic) + "." + idemToken(key)
}
func (s subjects) idems(topic string) string { return s.prefix + ".i." + escapeTopic(topic) + ".*" }
func (s subjects) mark(kind, topic string) string {
	return s.prefix + ".x." + kind + "." + escapeTopic(topic)
}
func (s subjects) incarnation() string         { return s.prefix + ".e" }
func (s subjects) marksOf(topic string) string { return s.prefix + ".x.*." + escapeTopic(topic) }
func (s subjects) marks(kind string) string    { return s.prefix + ".x." + kind + ".*" }

// msgID is the Nats-Msg-Id of a publish with an idempotency key: JetStream
// deduplicates per stream, so the id names the topic too, and the epoch
// the publish continues, so that a key used before the topic was deleted
// or expired publishes again.
func msgID(topic, epoch, key string) string {
	return escapeTopic(topic) + "/" + epoch + "/" + idemToken(key)
}
