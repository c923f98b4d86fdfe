//go:build cgo

package audit

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/cleveragents/audit/internal/testutil"
	"github.com/stretchr/testify/require"
)

// Reliability (issue 3, items 1 and 2): what is acknowledged survives a
// SIGKILL, and while the process lives no accepted entry is lost through
// any database fault. This file has the load that the fault matrix
// (fault_test.go) and the chaos run share, and the chaos run; the crash
// tests are in crash_test.go.

// relService starts a service with opts (logging nowhere unless opts say
// otherwise) and shuts it down when the test ends, within a deadline, so
// that a fault left in place by a failed test cannot hang the run.
func relService(t *testing.T, opts ...Option) *AuditService {
	t.Helper()
	s := newServiceAt(t, append([]Option{WithLogger(testutil.Discard())}, opts...)...)
	t.Cleanup(func() { // runs before newServiceAt's, which gets the same result
		ctx, cancel := context.WithTimeout(context.Background(), cleanupWithin)
		defer cancel()
		if err := s.Shutdown(ctx); err != nil {
			t.Errorf("shutdown: %v", err)
		}
	})
	return s
}

// relLoad is relGoroutines goroutines recording into one service, each as
// its own Actor with sequential RequestIDs, until stopped (or perG each).
type relLoad struct {
	s        *AuditService
	name     string
	sync     bool
	stop     chan struct{}
	stopOnce sync.Once
	cancel   context.CancelFunc
	done     chan struct{} // closed when every goroutine has returned
	accepted [relGoroutines]atomic.Int64

	mu   sync.Mutex // guards errs
	errs []error
}

func (l *relLoad) actor(g int) string { return l.name + "-g" + strconv.Itoa(g) }

func (l *relLoad) reqID(g, k int) string { return fmt.Sprintf("%s-g%d-%07d", l.name, g, k) }

func (l *relLoad) total() int64 {
	var n int64
	for g := range l.accepted {
		n += l.accepted[g].Load()
	}
	return n
}

// relStartLoad starts the load. In async mode an entry is accepted when
// Record returns nil; stopping cancels the ctx of a Record blocked on a
// full queue, which then returns an error and queues nothing. In sync mode
// Record's ctx is never cancelled while the test goes well (a sync Record
// that ends with its ctx may still be committed), so stopping waits for
// the Records in flight to commit.
func relStartLoad(t *testing.T, s *AuditService, name string, syncMode bool, perG int) *relLoad {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	l := &relLoad{s: s, name: name, sync: syncMode, stop: make(chan struct{}), cancel: cancel, done: make(chan struct{})}
	var wg sync.WaitGroup
	for g := range relGoroutines {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for k := 0; perG == 0 || k < perG; k++ {
				select {
				case <-l.stop:
					return
				default:
				}
				err := s.Record(ctx, Entry{
					EventType: "rel.fault", Actor: l.actor(g), RequestID: l.reqID(g, k),
					Outcome: "success", Details: map[string]any{"k": k},
				})
				if err != nil {
					if !syncMode && errors.Is(err, context.Canceled) && errors.Is(err, ErrQueueFull) {
						return // stopped while waiting for room: not accepted
					}
					l.mu.Lock()
					l.errs = append(l.errs, fmt.Errorf("%s: %w", l.reqID(g, k), err))
					l.mu.Unlock()
					return
				}
				l.accepted[g].Add(1)
			}
		}()
	}
	go func() {
		wg.Wait()
		close(l.done)
	}()
	// After a failed test: give up at once, whatever is in flight.
	t.Cleanup(func() {
		l.stopOnce.Do(func() { close(l.stop) })
		cancel()
		<-l.done
	})
	return l
}

// finish stops the load, waits for its goroutines and requires that no
// Record failed unexpectedly.
func (l *relLoad) finish(t *testing.T) {
	t.Helper()
	l.stopOnce.Do(func() { close(l.stop) })
	if !l.sync {
		l.cancel()
	}
	<-l.done
	l.cancel()
	l.mu.Lock()
	defer l.mu.Unlock()
	require.Empty(t, l.errs, "Records that failed")
}

// relCheck flushes s (within flushWithin) and requires the outcome of a
// fault scenario: Count == accepted (+ extra entries the scenario recorded
// itself), each goroutine's entries all there in its own order, Verify
// passing over contiguous IDs, and Written agreeing. It logs accepted /
// found / lost and the failures counted.
func relCheck(t *testing.T, s *AuditService, l *relLoad, extra int64, flushWithin time.Duration) {
	t.Helper()
	fctx, cancel := context.WithTimeout(context.Background(), flushWithin)
	defer cancel()
	require.NoError(t, s.Flush(fctx), "Flush after the fault cleared")
	ctx := context.Background()

	accepted := l.total()
	var found int64
	seqs := make([][]Entry, relGoroutines)
	for g := range relGoroutines {
		seqs[g] = relListActor(t, s, l.actor(g))
		found += int64(len(seqs[g]))
	}
	n, err := s.Count(ctx, Filter{})
	require.NoError(t, err)
	st := s.Stats()
	t.Logf("%s: accepted %d, found %d, lost %d; Failures %d, Batches %d, Written %d",
		l.name, accepted, found, max(0, accepted-found), st.Failures, st.Batches, st.Written)

	for g, seq := range seqs {
		require.Len(t, seq, int(l.accepted[g].Load()), "goroutine %d: every accepted entry committed, once", g)
		for k, e := range seq {
			require.Equal(t, l.reqID(g, k), e.RequestID, "goroutine %d: its entries in its own order", g)
		}
	}
	require.Equal(t, accepted+extra, n, "Count == accepted")
	require.Equal(t, uint64(n), st.Written, "Stats.Written")
	require.Zero(t, st.Queued, "Stats.Queued after Flush")
	rep, err := s.Verify(ctx)
	require.NoError(t, err)
	require.Equal(t, VerifyReport{Entries: n, FirstID: 1, LastID: n, Head: rep.Head}, rep, "the chain, over contiguous IDs")
}

// relWaitWritten waits until the service has committed n more entries
// than it had.
func relWaitWritten(t *testing.T, s *AuditService, n uint64, within time.Duration, msg string) {
	t.Helper()
	from := s.Stats().Written
	testutil.WaitFor(t, within, func() bool { return s.Stats().Written >= from+n }, msg)
}

const (
	relChaosSeedEnv = "AUDIT_CHAOS_SEED"
	relChaosTotal   = 50000
)

// relChaosStats counts the faults the chaos run injected: renames that
// a write attempt found, and unbitten ones that the end of the load cut
// short.
type relChaosStats struct {
	locks, renames, unbitten, pauses int
	faulty                           time.Duration
}

// relAwait waits until cond holds (true) or loadDone is closed (cond's
// last answer).
func relAwait(loadDone <-chan struct{}, cond func() bool) bool {
	for !cond() {
		select {
		case <-loadDone:
			return cond()
		case <-time.After(time.Millisecond):
		}
	}
	return true
}

// relChaos switches faults on and off at random until loadDone is closed:
// another connection holding the write lock, or the table renamed away,
// each for 10–300 ms, between fault-free pauses as long.
func relChaos(rng *rand.Rand, raw *sql.DB, loadDone <-chan struct{}, st *relChaosStats, stats func() Stats) error {
	ctx := context.Background()
	conn, err := raw.Conn(ctx) // the faults' own connection
	if err != nil {
		return err
	}
	defer conn.Close()
	// inTx runs stmts as one write transaction, or (none) just holds the
	// write lock for hold.
	inTx := func(hold time.Duration, stmts ...string) error {
		if _, err := testutil.TakeWriteLock(ctx, conn); err != nil {
			return fmt.Errorf("take the write lock: %w", err)
		}
		for _, stmt := range stmts {
			if _, err := conn.ExecContext(ctx, stmt); err != nil {
				_, _ = conn.ExecContext(ctx, "ROLLBACK")
				return fmt.Errorf("%s: %w", stmt, err)
			}
		}
		if hold > 0 {
			<-time.After(hold) // the fault's length
		}
		end := "COMMIT"
		if len(stmts) == 0 {
			end = "ROLLBACK"
		}
		_, err := conn.ExecContext(ctx, end)
		return err
	}
	away := "ALTER TABLE " + quote(DefaultTable) + ` RENAME TO "rel_chaos_away"`
	back := `ALTER TABLE "rel_chaos_away" RENAME TO ` + quote(DefaultTable)
	for {
		select {
		case <-loadDone:
			return nil
		default:
		}
		d := time.Duration(10+rng.IntN(291)) * time.Millisecond
		switch rng.IntN(3) {
		case 0: // another connection holds the write lock
			if err := inTx(d); err != nil {
				return err
			}
			st.locks++
			st.faulty += d
		case 1: // the table is renamed away, and back
			before := stats().Failures
			if err := inTx(0, away); err != nil {
				return err
			}
			began := time.Now()
			<-time.After(d) // the fault's length, at least: it lasts until
			// the writer has found the table away (a failed write), or the
			// load has ended (the writer may have nothing left to write).
			bit := relAwait(loadDone, func() bool { return stats().Failures != before })
			written := stats().Written
			if err := inTx(0, back); err != nil {
				return err
			}
			// And no fault until the writer has written again: a fault
			// that lasts until a write fails, begun again at once, would
			// meet every retry.
			relAwait(loadDone, func() bool { return stats().Written != written })
			if bit {
				st.renames++
			} else {
				st.unbitten++
			}
			st.faulty += time.Since(began)
		default:
			<-time.After(d)
			st.pauses++
		}
	}
}

// TestChaos: 50k Records from relGoroutines goroutines (async,
// OverflowBlock) while faults come and go at random. The seed is logged;
// AUDIT_CHAOS_SEED replays the same fault schedule.
func TestChaos(t *testing.T) {
	seed := uint64(time.Now().UnixNano())
	if v := os.Getenv(relChaosSeedEnv); v != "" {
		var err error
		seed, err = strconv.ParseUint(v, 10, 64)
		require.NoError(t, err, relChaosSeedEnv)
	}
	t.Logf("chaos seed %d (replay the fault schedule with %s=%d)", seed, relChaosSeedEnv, seed)
	rng := rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15))

	ctx := context.Background()
	path := testutil.TempDB(t)
	s := relService(t, WithSQLite(path), WithOverflow(OverflowBlock))
	_, err := s.Count(ctx, Filter{}) // creates the table the faults act on
	require.NoError(t, err)
	raw := testutil.RawDB(t, path)

	began := time.Now()
	l := relStartLoad(t, s, "chaos", false, relChaosTotal/relGoroutines)
	var st relChaosStats
	chaosErr := make(chan error, 1)
	go func() { chaosErr <- relChaos(rng, raw, l.done, &st, s.Stats) }()
	<-l.done
	require.NoError(t, <-chaosErr)
	l.finish(t)
	recorded := time.Since(began)
	relCheck(t, s, l, 0, time.Minute)
	t.Logf("chaos: %d Records in %v; faults: %d write-lock holds, %d table renames that writes failed on (and %d the load's end cut short; %v faulty), %d fault-free pauses",
		l.total(), recorded.Round(time.Millisecond), st.locks, st.renames, st.unbitten, st.faulty.Round(time.Millisecond), st.pauses)
	require.Equal(t, int64(relChaosTotal), l.total(), "every Record accepted")
}
