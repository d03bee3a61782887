package wire

import "github.com/gofanout/fanout"

// sentinels are the errors whose codes the protocol names; their codes
// come from [fanout.ErrorCode].
var sentinels = []error{
	fanout.ErrInvalidTopic, fanout.ErrUnauthenticated, fanout.ErrForbidden,
	fanout.ErrAlreadySubscribed, fanout.ErrNotSubscribed, fanout.ErrTooManySubscriptions,
	fanout.ErrRateLimited, fanout.ErrTooLarge, fanout.ErrBadRequest,
	fanout.ErrUnavailable, fanout.ErrClosed,
}

// Sentinel returns the fanout error whose wire code is code, the inverse
// of [fanout.ErrorCode], or nil for "internal" and codes it does not know
// (a newer server's).
func Sentinel(code string) error {
	for _, s := range sentinels {
		if fanout.ErrorCode(s) == code {
			return s
		}
	}
	return nil
}
