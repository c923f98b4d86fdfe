package audit

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"
)

// intake is the bounded queue between the callers of Record and Flush and
// the writer, with the bookkeeping that lets Shutdown drain it safely.
//
// Nobody closes queue, so no send can panic: a sender registers under mu
// while closing is open, and Shutdown, once it has closed closing, lets the
// writer take its last batches only after idle is closed, when every
// registered sender has sent or given up. An accepted entry is never left
// behind, and none is accepted after.
type intake struct {
	queue   chan item
	closing chan struct{} // closed when Shutdown begins

	mu      sync.Mutex    // protects senders; a sender's check of closing and its registration are one step under it
	senders int           // registered senders still sending
	idle    chan struct{} // closed once closing is closed and senders is zero
}

// item is what the queue carries: an entry, a Flush barrier (rec nil), or
// both a sync entry and the channel its caller waits on.
type item struct {
	rec  *record
	done chan error // buffered, 1: answered once, never blocks the writer
}

func newIntake(size int) intake {
	return intake{queue: make(chan item, size), closing: make(chan struct{}), idle: make(chan struct{})}
}

// send puts it on the queue: at once, or waiting for room until ctx ends
// or abort is closed, unless failFast. An entry is counted in queued from
// before the send, so that the writer's decrement after its commit can
// never come first.
func (in *intake) send(ctx context.Context, it item, failFast bool, abort <-chan struct{}, queued *atomic.Int64) error {
	if !in.register() {
		return ErrClosed
	}
	defer in.unregister()
	if it.rec != nil {
		queued.Add(1)
	}
	select {
	case in.queue <- it:
		return nil
	default:
	}
	err := ErrQueueFull
	if !failFast {
		select {
		case in.queue <- it:
			return nil
		case <-ctx.Done():
			err = fmt.Errorf("%w: %w", ErrQueueFull, ctx.Err())
		case <-abort:
			err = ErrClosed
		}
	}
	if it.rec != nil {
		queued.Add(-1)
	}
	return err
}

func (in *intake) register() bool {
	in.mu.Lock()
	defer in.mu.Unlock()
	if in.isClosed() {
		return false
	}
	in.senders++
	return true
}

func (in *intake) unregister() {
	in.mu.Lock()
	defer in.mu.Unlock()
	in.senders--
	if in.senders == 0 && in.isClosed() {
		close(in.idle)
	}
}

// close stops the intake accepting; it reports whether this call did it
// (the first call), so that exactly one caller runs Shutdown's work.
func (in *intake) close() bool {
	in.mu.Lock()
	defer in.mu.Unlock()
	if in.isClosed() {
		return false
	}
	close(in.closing)
	if in.senders == 0 {
		close(in.idle)
	}
	return true
}

// isClosed reports whether Shutdown has begun.
func (in *intake) isClosed() bool {
	select {
	case <-in.closing:
		return true
	default:
		return false
	}
}
