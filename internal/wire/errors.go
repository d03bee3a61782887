package wire

import "github.com/gofanout/fanout"

// Sentinel returns the fanout error whose wire code is code, the inverse
// of [fanout.ErrorCode], or nil for "internal" and codes it does not know
// (a newer server's). The codes come from the root package's one table.
func Sentinel(code string) error { return fanout.ErrorForCode(code) }
