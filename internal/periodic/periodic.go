// Package periodic runs a function at a fixed interval in one goroutine
// that starts when first needed and ends once: how a backplane node keeps
// its presence entries alive.
package periodic

import (
	"sync"
	"time"
)

// Loop runs one function periodically. The zero value is ready; its owner
// serialises Start and Stop (typically under its own lock).
type Loop struct {
	done bool          // started or stopped: Start does nothing
	stop chan struct{} // closed by Stop's wait; nil when not running
	wg   sync.WaitGroup
}

// Start runs f every interval from now on, in one goroutine, unless the
// loop started or stopped before. f gets a channel that is closed when the
// loop stops, to cut long work short.
func (l *Loop) Start(interval time.Duration, f func(stop <-chan struct{})) {
	if l.done {
		return
	}
	l.done = true
	stop := make(chan struct{})
	l.stop = stop
	l.wg.Add(1)
	go func() {
		defer l.wg.Done()
		t := time.NewTicker(interval)
		defer t.Stop()
		for {
			select {
			case <-stop:
				return
			case <-t.C:
				f(stop)
			}
		}
	}()
}

// Stop makes later Starts do nothing and returns wait, which ends the
// goroutine and waits for it. Call Stop where Start is serialised, and
// wait after releasing any lock that f takes.
func (l *Loop) Stop() (wait func()) {
	l.done = true
	stop := l.stop
	l.stop = nil
	return func() {
		if stop != nil {
			close(stop)
			l.wg.Wait()
		}
	}
}
