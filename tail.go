package audit

import (
	"context"
	"errors"
	"fmt"
	"iter"
	"sync"
	"time"
)

// Tail's timing.
const (
	// TailPollInterval is how often a waiting [AuditService.Tail] queries
	// the table for entries that other services or processes committed.
	// Commits of the tailing service itself wake it at once. Polling a
	// caught-up tail costs one indexed query (ID > last) that returns no
	// rows.
	TailPollInterval = 50 * time.Millisecond
	// DefaultTailPage is how many entries one query of a tail reads when
	// Filter.Limit is zero.
	DefaultTailPage = 1000

	tailBackoffMin = 50 * time.Millisecond
	tailBackoffMax = 5 * time.Second
)

// Tail yields the committed entries that f selects with an ID above
// f.AfterID, in ascending ID order, each once; once it has caught up it
// follows the log, yielding new entries as they commit, until ctx ends or
// the loop body stops. When ctx ends the sequence simply ends: to resume,
// start a new Tail with AfterID set to the ID of the last entry handled.
//
//	for e, err := range s.Tail(ctx, audit.Filter{AfterID: last}) {
//		if err != nil {
//			log.Print(err) // retried with backoff if the loop goes on
//			continue
//		}
//		handle(e)
//		last = e.ID
//	}
//
// f's other fields select as in [AuditService.List]; f.Limit is the size of
// each read (0 means [DefaultTailPage]); f.Desc and f.BeforeID are not
// allowed. Tail reads the table through the same queries as List, so it
// sees what every service and process writes to the log, and it holds no
// database connection and no lock while the loop body runs: a slow
// consumer delays only itself, never Record or the writer. A waiting tail
// queries the table every [TailPollInterval] and at once after each commit
// of this service.
//
// A failed read is yielded as an error (List's); if the loop goes on, Tail
// tries again after a backoff (50 ms doubling, capped at 5 s) from where it
// was. An invalid filter or a closed service ([ErrClosed]) is yielded
// once and ends the sequence. Entries pruned before the tail reached them
// are not yielded.
//
// No entry is ever skipped, on any backend, because an entry becomes
// visible only after every entry with a lower ID: each transaction of the
// writer reads the chain head and advances it under the database's write
// lock (SQLite) or the head row's lock (PostgreSQL), which the next writer,
// of any service or process, waits for, and the lock is released only once
// the transaction's commit is visible. So a transaction that takes IDs
// above N starts after the one that took N has committed, and a read that
// returns N also sees every committed ID below it. Tail can therefore keep
// its place as the last ID it yielded.
func (s *AuditService) Tail(ctx context.Context, f Filter) iter.Seq2[Entry, error] {
	return func(yield func(Entry, error) bool) {
		if err := f.checkTail(); err != nil {
			yield(Entry{}, opErr("tail", err))
			return
		}
		if f.Limit == 0 {
			f.Limit = DefaultTailPage
		}
		poll := time.NewTimer(TailPollInterval)
		defer poll.Stop()
		backoff := time.Duration(0)
		for ctx.Err() == nil {
			// Taken before the read: a commit during it wakes the wait below.
			woken := s.tails.wait()
			page, err := s.List(ctx, f)
			if err != nil {
				if ctx.Err() != nil {
					return
				}
				if !yield(Entry{}, err) || errors.Is(err, ErrClosed) || errors.Is(err, ErrInvalidFilter) {
					return
				}
				backoff = min(max(2*backoff, tailBackoffMin), tailBackoffMax)
				if !sleep(backoff, ctx.Done()) {
					return
				}
				continue
			}
			backoff = 0
			for _, e := range page {
				if ctx.Err() != nil || !yield(e, nil) {
					return
				}
				f.AfterID = e.ID
			}
			if len(page) == f.Limit {
				continue // more to read at once
			}
			poll.Reset(TailPollInterval)
			select {
			case <-ctx.Done():
				return
			case <-woken:
			case <-poll.C:
			}
		}
	}
}

// checkTail validates a Tail's filter: what List accepts, ascending.
func (f *Filter) checkTail() error {
	if f.Desc {
		return fmt.Errorf("%w: Desc is not allowed (Tail reads in ascending ID order)", ErrInvalidFilter)
	}
	if f.BeforeID != 0 {
		return fmt.Errorf("%w: BeforeID is not allowed (Tail follows the log upwards from AfterID)", ErrInvalidFilter)
	}
	return f.check(true)
}

// Waking tailers. The writer calls wakeTailers after each commit; a tail
// waiting in its poll then reads at once instead of at its next tick. The
// hubs live beside the service rather than in it, keyed by the service,
// and only while it has tailers, so that the writer pays one map lookup
// per commit and nothing else.
// tailHub wakes a service's waiting tailers: each wait returns the channel
// that the next wake closes. It allocates nothing while nobody waits.
type tailHub struct {
	mu      sync.Mutex    // protects changed
	changed chan struct{} // nil while nobody waits
}

// wait returns a channel that the next wake closes.
func (h *tailHub) wait() <-chan struct{} {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.changed == nil {
		h.changed = make(chan struct{})
	}
	return h.changed
}

func (h *tailHub) wake() {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.changed != nil {
		close(h.changed)
		h.changed = nil
	}
}

// wakeTailers wakes this service's waiting tailers, if it has any.
func (s *AuditService) wakeTailers() { s.tails.wake() }
