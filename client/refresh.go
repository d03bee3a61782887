package client

import "time"

// tokenResult is what Options.Token returned for a refresh.
type tokenResult struct {
	token string
	err   error
}

// expires schedules the refresh of credentials that expire at t (zero:
// never, no refresh).
func (l *loop) expires(t time.Time) {
	l.refresh.Stop()
	if t.IsZero() || l.c.opts.Token == nil {
		return
	}
	l.refresh.Reset(refreshDelay(time.Until(t), l.c.opts.RefreshMargin))
}

// refreshDelay is how long to wait before refreshing credentials that
// expire in left: until margin before, or half-way when less than twice
// the margin is left.
func refreshDelay(left, margin time.Duration) time.Duration {
	left = max(left, 0)
	return left - min(margin, left/2)
}

// fetchToken calls Options.Token in a goroutine of the client, which may
// take its time, and hands the result to the loop through out (buffered:
// the goroutine never waits for a loop that has moved on).
func (l *loop) fetchToken(out chan<- tokenResult) {
	c := l.c
	c.wg.Add(1)
	go func() {
		defer c.wg.Done()
		tok, err := c.opts.Token(c.ctx)
		select {
		case out <- tokenResult{token: tok, err: err}:
		default:
		}
	}()
}
