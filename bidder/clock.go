package bidder

import (
	"sync"
	"sync/atomic"
	"time"
)

// Clock gives the current time in Unix milliseconds. Implementations must be
// safe for concurrent use and cheap: the service reads it once per event and
// once per request.
type Clock interface {
	NowMs() int64
}

// CachedClock is a Clock updated by one ticker, so a read is a single atomic
// load instead of a time.Now call. Its resolution is the tick interval.
type CachedClock struct {
	now    atomic.Int64
	stop   chan struct{}
	done   chan struct{}
	closer sync.Once
}

// NewCachedClock starts a clock that ticks every tick (1ms when tick <= 0).
// Call Stop to release its goroutine.
func NewCachedClock(tick time.Duration) *CachedClock {
	if tick <= 0 {
		tick = time.Millisecond
	}
	c := &CachedClock{stop: make(chan struct{}), done: make(chan struct{})}
	c.now.Store(time.Now().UnixMilli())
	go func() {
		defer close(c.done)
		t := time.NewTicker(tick)
		defer t.Stop()
		for {
			select {
			case <-c.stop:
				return
			case now := <-t.C:
				c.now.Store(now.UnixMilli())
			}
		}
	}()
	return c
}

// NowMs returns the time of the last tick in Unix milliseconds.
func (c *CachedClock) NowMs() int64 { return c.now.Load() }

// Stop stops the ticker goroutine; NowMs keeps returning the last tick.
func (c *CachedClock) Stop() {
	c.closer.Do(func() { close(c.stop) })
	<-c.done
}

// ManualClock is a Clock that moves only when told to; tests use it.
type ManualClock struct {
	now atomic.Int64
}

// NewManualClock returns a clock set to ms.
func NewManualClock(ms int64) *ManualClock {
	c := &ManualClock{}
	c.now.Store(ms)
	return c
}

// NowMs returns the clock's time in Unix milliseconds.
func (c *ManualClock) NowMs() int64 { return c.now.Load() }

// Set sets the clock to ms.
func (c *ManualClock) Set(ms int64) { c.now.Store(ms) }

// Advance moves the clock forward by d.
func (c *ManualClock) Advance(d time.Duration) { c.now.Add(d.Milliseconds()) }
