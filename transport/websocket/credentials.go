package websocket

import (
	"encoding/base64"
	"fmt"
	"net/http"
	"strings"

	"github.com/gofanout/fanout"
)

// Protocol is the WebSocket subprotocol of fanout's JSON protocol. A
// client that sends its token in Sec-WebSocket-Protocol offers it next to
// the token's entry, and the server answers with it alone, so that the
// token is never echoed.
const Protocol = "fanout.v1"

// ProtocolBearerPrefix starts the Sec-WebSocket-Protocol entry that
// carries a bearer token: the prefix, then the token in unpadded base64url
// (RFC 4648 section 5), so that any token is a valid entry. Browsers can
// set this header, where they cannot set Authorization:
//
//	new WebSocket(url, ["fanout.v1", "bearer." + base64url(token)])
const ProtocolBearerPrefix = "bearer."

// maxProtocolToken bounds the decoded token of a Sec-WebSocket-Protocol
// entry, in bytes, as the auth command's token is bounded.
const maxProtocolToken = 16 << 10

// ProtocolBearer returns the Sec-WebSocket-Protocol entry that carries
// token, for clients that offer it with [Protocol].
func ProtocolBearer(token string) string {
	return ProtocolBearerPrefix + base64.RawURLEncoding.EncodeToString([]byte(token))
}

// protocolToken returns the token of a bearer entry among the offered
// subprotocols of h, or "" when there is none. An entry that does not
// decode, more than one, or one offered without [Protocol] (the server
// could answer with no other) is a bad request.
func protocolToken(h http.Header) (string, error) {
	var token string
	found, fanoutV1 := false, false
	for _, v := range h.Values("Sec-WebSocket-Protocol") {
		for p := range strings.SplitSeq(v, ",") {
			p = strings.TrimSpace(p)
			if p == Protocol {
				fanoutV1 = true
			}
			enc, ok := strings.CutPrefix(p, ProtocolBearerPrefix)
			if !ok {
				continue
			}
			if found {
				return "", fmt.Errorf("%w: more than one %s entry in Sec-WebSocket-Protocol", fanout.ErrBadRequest, ProtocolBearerPrefix)
			}
			found = true
			if base64.RawURLEncoding.DecodedLen(len(enc)) > maxProtocolToken {
				return "", fmt.Errorf("%w: the token of Sec-WebSocket-Protocol is longer than %d bytes", fanout.ErrBadRequest, maxProtocolToken)
			}
			b, err := base64.RawURLEncoding.Strict().DecodeString(enc)
			if err != nil {
				return "", fmt.Errorf("%w: the %s entry of Sec-WebSocket-Protocol is not unpadded base64url", fanout.ErrBadRequest, ProtocolBearerPrefix)
			}
			token = string(b)
		}
	}
	if found && !fanoutV1 {
		return "", fmt.Errorf("%w: offer %s with the %s entry of Sec-WebSocket-Protocol", fanout.ErrBadRequest, Protocol, ProtocolBearerPrefix)
	}
	return token, nil
}

// credentials returns the credentials of a handshake: the token of an
// "Authorization: Bearer" header, else of a Sec-WebSocket-Protocol entry,
// else of the token query parameter, else of the access_token cookie.
func credentials(r *http.Request) (*fanout.Credentials, error) {
	c := fanout.CredentialsFromHeader(r.Header, "websocket")
	c.Request = r
	if c.Token != "" {
		return c, nil
	}
	tok, err := protocolToken(r.Header)
	if err != nil || tok != "" {
		c.Token = tok
		return c, err
	}
	return fanout.CredentialsFromRequest(r, "websocket"), nil
}

// offersProtocol reports whether the client offered [Protocol].
func offersProtocol(h http.Header) bool {
	for _, v := range h.Values("Sec-WebSocket-Protocol") {
		for p := range strings.SplitSeq(v, ",") {
			if strings.TrimSpace(p) == Protocol {
				return true
			}
		}
	}
	return false
}
