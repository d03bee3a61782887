package periodic

import (
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"
)

func TestLoop(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		var l Loop
		var n atomic.Int32
		l.Start(time.Second, func(<-chan struct{}) { n.Add(1) })
		l.Start(time.Second, func(<-chan struct{}) { t.Error("a second Start ran") })
		time.Sleep(3500 * time.Millisecond)
		synctest.Wait()
		if got := n.Load(); got != 3 {
			t.Errorf("ran %d times in 3.5 intervals, want 3", got)
		}
		l.Stop()()
		time.Sleep(2 * time.Second)
		synctest.Wait()
		if got := n.Load(); got != 3 {
			t.Errorf("ran %d times, want 3: it ran after Stop", got)
		}
		l.Start(time.Second, func(<-chan struct{}) { t.Error("Start after Stop ran") })
		time.Sleep(2 * time.Second)
	})
}

func TestStopBeforeStart(t *testing.T) {
	var l Loop
	l.Stop()() // nothing to wait for
	l.Start(time.Millisecond, func(<-chan struct{}) { t.Error("Start after Stop ran") })
}
