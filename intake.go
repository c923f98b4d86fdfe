package audit

import (
	"context"
	"fmt"
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
	senders gate // closed when Shutdown begins; idle once every sender that got in has sent or given up
}

// item is what the queue carries: an entry, a Flush barrier (rec nil), or
// both a sync entry and the channel its caller waits on.
type item struct {
	rec  *record
	done chan error // buffered, 1: answered once, never blocks the writer
}

func newIntake(size int) intake {
	return intake{queue: make(chan item, size), senders: newGate()}
}

// send puts it on the queue: at once, or waiting for room until ctx ends
// or abort is closed, unless failFast. An entry is counted in queued from
// before the send, so that the writer's decrement after its commit can
// never come first.
func (in *intake) send(ctx context.Context, it item, failFast bool, abort <-chan struct{}, queued *atomic.Int64) error {
	if !in.senders.enter() {
		return ErrClosed
	}
	defer in.senders.leave()
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

// take appends to items what the queue holds now, in order, without
// waiting, until they hold most entries (Flush barriers do not count), of
// which n are there already.
func (in *intake) take(items []item, n, most int) []item {
	for n < most {
		select {
		case it := <-in.queue:
			items = append(items, it)
			if it.rec != nil {
				n++
			}
		default:
			return items
		}
	}
	return items
}

// close stops the intake accepting; it reports whether this call did it
// (the first call), so that exactly one caller runs Shutdown's work.
func (in *intake) close() bool { return in.senders.close() }

// isClosed reports whether Shutdown has begun.
func (in *intake) isClosed() bool { return in.senders.isClosed() }

// closing is closed when Shutdown begins; idle once, after that, no
// sender is left, so the queue only shrinks.
func (in *intake) closing() <-chan struct{} { return in.senders.closed }
func (in *intake) idle() <-chan struct{}    { return in.senders.idle }
