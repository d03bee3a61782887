package client

import "time"

// backoff returns the wait before reconnect attempt n (n >= 1) with "full
// jitter": uniform in [0, min(hi, lo*2^(n-1))]. rnd(k) returns a uniform
// integer in [0, k). Spreading the waits over the whole range keeps a
// crowd of clients that lost the same server from coming back in step.
func backoff(n int, lo, hi time.Duration, rnd func(int64) int64) time.Duration {
	if n < 1 || hi <= 0 {
		return 0
	}
	c := min(lo, hi)
	for i := 1; i < n && c < hi; i++ {
		if c > hi/2 {
			c = hi
			break
		}
		c *= 2
	}
	return time.Duration(rnd(int64(c) + 1))
}
