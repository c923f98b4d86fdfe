package audit

import (
	"context"
	"fmt"
	"sync/atomic"
	"time"
)

// The service's counters and health (Stats, Healthy).

// lastError returns the writer's last failure, or nil.
func (c *counters) lastError() error {
	if p := c.lastErr.Load(); p != nil {
		return *p
	}
	return nil
}

// counters are the figures of Stats.
type counters struct {
	queued                               atomic.Int64
	written, batches, failures, rejected atomic.Uint64
	lastErr                              atomic.Pointer[error] // the writer's last failure; nil after a success
	oldest                               atomic.Int64          // Unix ns: acceptance of the in-flight batch's first entry; 0 when none
	lastCommit, commitNanos              atomic.Int64          // Unix ns of the last commit, and how long it took
	copied                               atomic.Uint64         // entries sent by COPY (pgcopy.go), committed or not; not in Stats
}

// Stats are counters of a service since New.
type Stats struct {
	Queued   int    // accepted and not yet committed, the writer's in-flight batch included
	Written  uint64 // entries committed by this service
	Batches  uint64 // transactions committed by the writer
	Failures uint64 // failed open or write attempts (each retried; see Reliability)
	Rejected uint64 // Record calls refused: invalid, queue full, closed

	LastCommit        time.Time     // when the writer last committed a batch; zero before
	CommitLatency     time.Duration // how long that batch's write transaction took
	OldestUncommitted time.Time     // when the oldest entry not yet committed was accepted; zero when none waits
	LastWriteError    error         // the writer's last failure; nil once a batch has committed after it
}

// Stats returns the service's counters. It is cheap and never fails, even
// after Close.
func (s *AuditService) Stats() Stats {
	st := &s.stats
	return Stats{
		Queued:   int(s.stats.queued.Load()),
		Written:  s.stats.written.Load(),
		Batches:  s.stats.batches.Load(),
		Failures: s.stats.failures.Load(),
		Rejected: s.stats.rejected.Load(),

		LastCommit:        unixTime(s.stats.lastCommit.Load()),
		CommitLatency:     time.Duration(s.stats.commitNanos.Load()),
		OldestUncommitted: unixTime(s.stats.oldest.Load()),
		LastWriteError:    st.lastError(),
	}
}

func unixTime(ns int64) time.Time {
	if ns == 0 {
		return time.Time{}
	}
	return time.Unix(0, ns)
}

// Healthy reports whether the service can do its work now, for a
// readiness probe: nil when the database answers a read within ctx (at most
// healthTimeout) and the writer is not failing with entries waiting.
// Otherwise it returns why. It opens the database on first use, like any
// other call, and writes nothing.
func (s *AuditService) Healthy(ctx context.Context) error {
	if ctx == nil {
		return opErr("healthy", errNilContext)
	}
	ctx, cancel := context.WithTimeout(ctx, healthTimeout)
	defer cancel()
	sess, done, err := s.use(ctx, "healthy")
	if err != nil {
		return err
	}
	defer done()
	if _, err := readHead(ctx, sess.sqlDB, sess); err != nil {
		return opErr("healthy", fmt.Errorf("%s does not answer: %w", s.cfg.databaseName(), err))
	}
	if last := s.stats.lastErr.Load(); last != nil && s.stats.queued.Load() > 0 {
		return opErr("healthy", fmt.Errorf("the writer is failing with %d entries waiting: %w", s.stats.queued.Load(), *last))
	}
	return nil
}

// healthTimeout bounds Healthy's read, so that a probe learns of a
// database that stopped answering within this long.
const healthTimeout = 4 * time.Second
