package audit

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"runtime"
	"runtime/debug"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/cleveragents/audit/internal/testutil"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"
)

// The tests of this file release many goroutines at once (they park on a
// start channel that is closed only when every one of them runs) and then
// assert exact outcomes: counts, open calls, the IDs and links of the chain.
// None synchronises with time.Sleep; testutil.WaitFor polls only for background
// effects.

// raceRelease runs fn(0) through fn(n-1) in n goroutines, parks them until
// every one has started, releases them together by closing one channel and
// waits until all have returned. A panic in fn fails the test instead of
// the binary.
func raceRelease(tb testing.TB, n int, fn func(i int)) {
	tb.Helper()
	var ready, done sync.WaitGroup
	start := make(chan struct{})
	ready.Add(n)
	done.Add(n)
	for i := 0; i < n; i++ {
		go func() {
			defer done.Done()
			defer func() {
				if r := recover(); r != nil {
					tb.Errorf("goroutine %d panicked: %v\n%s", i, r, debug.Stack())
				}
			}()
			ready.Done()
			<-start
			fn(i)
		}()
	}
	ready.Wait()
	close(start)
	done.Wait()
}

// raceService starts a service with exactly opts. Its cleanup shuts it
// down with a deadline, so that a writer that never drains fails the test
// instead of hanging it.
func raceService(tb testing.TB, opts ...Option) *AuditService {
	tb.Helper()
	s, err := New(opts...)
	require.NoError(tb, err)
	tb.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		_ = s.Shutdown(ctx)
	})
	return s
}

// raceCtx returns the context of a test's calls: a deadline turns a hang
// into a failure.
func raceCtx(tb testing.TB) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	tb.Cleanup(cancel)
	return ctx
}

// raceEntry returns a valid entry of goroutine g's k-th Record: the actor
// names g, the request ID names g and k, so every entry is unique.
func raceEntry(g, k int) Entry {
	e := sampleEntry(k)
	e.Actor = raceActor(g)
	e.RequestID = fmt.Sprintf("race-g%d-k%d", g, k)
	e.Details = map[string]any{"g": float64(g), "k": float64(k)}
	return e
}

func raceActor(g int) string { return fmt.Sprintf("race-actor-%d", g) }

// raceAllEntries lists every committed entry in ID order, page by page.
func raceAllEntries(tb testing.TB, s *AuditService) []Entry {
	tb.Helper()
	var all []Entry
	var after int64
	for {
		page, err := s.List(context.Background(), Filter{AfterID: after, Limit: MaxListLimit})
		require.NoError(tb, err)
		all = append(all, page...)
		if len(page) < MaxListLimit {
			return all
		}
		after = page[len(page)-1].ID
	}
}

// raceRequireChain checks that all holds IDs 1..len(all) in order, each
// linked to the one before it: the chain has neither gaps nor forks.
func raceRequireChain(tb testing.TB, all []Entry) {
	tb.Helper()
	prev := ""
	for i, e := range all {
		require.EqualValues(tb, i+1, e.ID, "IDs must be contiguous from 1")
		require.Equal(tb, prev, e.PrevHash, "entry %d must link to entry %d", e.ID, e.ID-1)
		require.NotEmpty(tb, e.Hash)
		prev = e.Hash
	}
}

// raceRequireVerified runs Verify and checks that it covers exactly n
// entries, 1..n.
func raceRequireVerified(tb testing.TB, s *AuditService, n int) VerifyReport {
	tb.Helper()
	rep, err := s.Verify(context.Background())
	require.NoError(tb, err)
	require.EqualValues(tb, n, rep.Entries)
	require.EqualValues(tb, n, rep.LastID)
	if n > 0 {
		require.EqualValues(tb, 1, rep.FirstID)
		require.NotEmpty(tb, rep.Head)
	}
	return rep
}

// raceCount returns Count(f) and fails the test on an error.
func raceCount(tb testing.TB, s *AuditService, f Filter) int64 {
	tb.Helper()
	n, err := s.Count(context.Background(), f)
	require.NoError(tb, err)
	return n
}

// TestRaceLazyOpenExactlyOnce proves the lazy session opens the database
// exactly once (one Dialector.Initialize) when 64 goroutines make their
// first call together, whatever that call is (Record, which the writer
// serves, or Count and List, which open it themselves), and that every
// call succeeds and every Record is committed. It repeats on fresh
// services, alternately async and sync.
func TestRaceLazyOpenExactlyOnce(t *testing.T) {
	const rounds, workers = 6, 64
	ctx := raceCtx(t)
	for round := 0; round < rounds; round++ {
		async := round%2 == 0
		t.Run(fmt.Sprintf("round%d/async=%v", round, async), func(t *testing.T) {
			d := newCountingDialector(testutil.TempDB(t), 0)
			s := raceService(t, WithDialector(d), WithAsync(async), WithLogger(testutil.Discard()))
			require.Zero(t, d.opens.Load(), "New must not open the database")

			var records atomic.Int64
			errs := make([]error, workers)
			raceRelease(t, workers, func(i int) {
				switch i % 3 {
				case 0:
					if errs[i] = s.Record(ctx, raceEntry(i, 0)); errs[i] == nil {
						records.Add(1)
					}
				case 1:
					_, errs[i] = s.Count(ctx, Filter{})
				case 2:
					_, errs[i] = s.List(ctx, Filter{Limit: 10})
				}
			})
			for i, err := range errs {
				require.NoError(t, err, "goroutine %d", i)
			}
			require.EqualValues(t, 1, d.opens.Load(), "exactly one open however many goroutines arrive together")
			require.EqualValues(t, (workers+2)/3, records.Load())

			require.NoError(t, s.Flush(ctx))
			require.Equal(t, records.Load(), raceCount(t, s, Filter{}))
			st := s.Stats()
			assert.EqualValues(t, records.Load(), st.Written)
			assert.Zero(t, st.Queued)
			assert.Zero(t, st.Failures)
			assert.EqualValues(t, 1, d.opens.Load(), "later calls reuse the session")
		})
	}
}

// TestRaceFailedOpenIsRetried proves a failed open is counted and not
// cached: with the first 3 opens failing and 64 goroutines arriving
// together, exactly 3 calls fail with the injected error, Stats.Failures
// is 3, the next caller opens the database, and it is opened successfully
// exactly once (4 opens in all). When the writer is the one opening, it
// retries by itself and loses nothing.
func TestRaceFailedOpenIsRetried(t *testing.T) {
	const workers, failFirst = 64, 3
	ctx := raceCtx(t)

	t.Run("readers", func(t *testing.T) {
		d := newCountingDialector(testutil.TempDB(t), failFirst)
		s := raceService(t, WithDialector(d), WithLogger(testutil.Discard()))
		errs := make([]error, workers)
		raceRelease(t, workers, func(i int) {
			_, errs[i] = s.Count(ctx, Filter{})
		})
		failed := 0
		for i, err := range errs {
			if err != nil {
				require.ErrorIs(t, err, errInjectedOpen, "goroutine %d failed otherwise", i)
				failed++
			}
		}
		require.Equal(t, failFirst, failed, "every failed open fails exactly its own caller")
		require.EqualValues(t, failed, s.Stats().Failures, "Stats.Failures counts the failed opens")
		require.EqualValues(t, failed+1, d.opens.Load(), "one successful open after the failures")

		// The session is open now: no call opens again.
		require.NoError(t, s.Record(ctx, raceEntry(0, 0)))
		require.NoError(t, s.Flush(ctx))
		require.EqualValues(t, 1, raceCount(t, s, Filter{}))
		require.EqualValues(t, failed+1, d.opens.Load())
		require.EqualValues(t, failed, s.Stats().Failures)
	})

	for _, async := range []bool{true, false} {
		t.Run(fmt.Sprintf("writer/async=%v", async), func(t *testing.T) {
			d := newCountingDialector(testutil.TempDB(t), failFirst)
			s := raceService(t, WithDialector(d), WithAsync(async), WithLogger(testutil.Discard()))
			errs := make([]error, workers)
			raceRelease(t, workers, func(i int) {
				errs[i] = s.Record(ctx, raceEntry(i, 0))
			})
			for i, err := range errs {
				require.NoError(t, err, "goroutine %d: a failed open must not fail an accepted Record", i)
			}
			require.NoError(t, s.Flush(ctx))
			require.EqualValues(t, workers, raceCount(t, s, Filter{}))
			st := s.Stats()
			require.EqualValues(t, failFirst, st.Failures)
			require.EqualValues(t, workers, st.Written)
			require.Zero(t, st.Queued)
			require.EqualValues(t, failFirst+1, d.opens.Load())
			raceRequireVerified(t, s, workers)
		})
	}
}

// TestRaceRecordVsShutdown proves that Shutdown racing with Records loses
// nothing and refuses cleanly: every Record returns nil or ErrClosed (no
// panic, no other error); after a reopen of the same file, exactly the
// entries whose Record returned nil are there, each goroutine's in its
// order, with an unbroken chain. It covers async mode, async mode with a
// tiny queue (senders blocked on a full queue when Shutdown begins) and
// sync mode.
func TestRaceRecordVsShutdown(t *testing.T) {
	modes := []struct {
		name string
		opts []Option
	}{
		{"async", nil},
		{"async-small-queue", []Option{WithQueueSize(4), WithBatchSize(3)}},
		{"sync", []Option{WithAsync(false)}},
	}
	const recorders, threshold, maxPer = 8, 40, 5000
	ctx := raceCtx(t)
	for _, mode := range modes {
		t.Run(mode.name, func(t *testing.T) {
			path := testutil.TempDB(t)
			s := raceService(t, append([]Option{WithSQLite(path), WithLogger(testutil.Discard())}, mode.opts...)...)

			var (
				mu       sync.Mutex
				accepted = map[string]bool{}
				refused  int
				others   []error
			)
			var acceptedN, live atomic.Int64
			live.Store(recorders)
			enough := make(chan struct{}) // Shutdown waits for it: Records are under way
			var enoughOnce sync.Once
			signal := func() { enoughOnce.Do(func() { close(enough) }) }
			var shutdownErr error

			raceRelease(t, recorders+1, func(i int) {
				if i == recorders {
					<-enough
					shutdownErr = s.Shutdown(ctx)
					return
				}
				defer func() {
					if live.Add(-1) == 0 {
						signal() // never leave Shutdown waiting
					}
				}()
				for k := 0; k < maxPer; k++ {
					e := raceEntry(i, k)
					err := s.Record(ctx, e)
					switch {
					case err == nil:
						mu.Lock()
						accepted[e.RequestID] = true
						mu.Unlock()
						if acceptedN.Add(1) == threshold {
							signal()
						}
					case errors.Is(err, ErrClosed):
						mu.Lock()
						refused++
						mu.Unlock()
						return
					default:
						mu.Lock()
						others = append(others, err)
						mu.Unlock()
						return
					}
				}
			})
			t.Logf("%d Records accepted, %d refused with ErrClosed", len(accepted), refused)
			require.Empty(t, others, "Record may only return nil or ErrClosed")
			require.NoError(t, shutdownErr)
			require.GreaterOrEqual(t, len(accepted), threshold)
			st := s.Stats()
			require.EqualValues(t, len(accepted), st.Written, "Shutdown commits everything accepted")
			require.Zero(t, st.Queued)
			require.EqualValues(t, refused, st.Rejected, "every ErrClosed counts as rejected")
			require.ErrorIs(t, s.Record(ctx, raceEntry(99, 0)), ErrClosed)

			s2 := raceService(t, WithSQLite(path), WithLogger(testutil.Discard()))
			require.EqualValues(t, len(accepted), raceCount(t, s2, Filter{}))
			all := raceAllEntries(t, s2)
			require.Len(t, all, len(accepted))
			raceRequireChain(t, all)
			lastK := map[float64]float64{}
			for _, e := range all {
				require.True(t, accepted[e.RequestID], "%s was committed but its Record did not return nil", e.RequestID)
				delete(accepted, e.RequestID)
				g, k := e.Details["g"].(float64), e.Details["k"].(float64)
				if prev, ok := lastK[g]; ok {
					require.Equal(t, prev+1, k, "goroutine %v's entries must be committed in order, without gaps", g)
				} else {
					require.Zero(t, k, "goroutine %v's first entry must come first", g)
				}
				lastK[g] = k
			}
			require.Empty(t, accepted, "accepted entries missing after Shutdown")
			raceRequireVerified(t, s2, len(all))
		})
	}
}

// TestRaceFlushVsRecord proves read-your-writes through Flush under
// concurrency: each of several goroutines records a burst under its own
// actor, flushes, and at once sees every entry it recorded (an exact Count
// by actor, its last entry by request ID), while other goroutines record
// and flush around it.
func TestRaceFlushVsRecord(t *testing.T) {
	const flushers, rounds, noise, noiseMax = 6, 8, 2, 1000
	ctx := raceCtx(t)
	s := raceService(t, WithSQLite(testutil.TempDB(t)), WithLogger(testutil.Discard()))

	var left atomic.Int64
	left.Store(flushers)
	stop := make(chan struct{})
	var recorded atomic.Int64
	raceRelease(t, flushers+noise+1, func(i int) {
		switch {
		case i < flushers:
			defer func() {
				if left.Add(-1) == 0 {
					close(stop)
				}
			}()
			mine := 0
			for r := 0; r < rounds; r++ {
				burst := 1 + (i*7+r*5)%23
				for k := 0; k < burst; k++ {
					if !assert.NoError(t, s.Record(ctx, raceEntry(i, mine))) {
						return
					}
					mine++
					recorded.Add(1)
				}
				if !assert.NoError(t, s.Flush(ctx)) {
					return
				}
				n, err := s.Count(ctx, Filter{Actor: raceActor(i)})
				if !assert.NoError(t, err) {
					return
				}
				assert.EqualValues(t, mine, n, "goroutine %d round %d: Flush returned before its entries were visible", i, r)
				last := raceEntry(i, mine-1)
				got, err := s.List(ctx, Filter{RequestID: last.RequestID})
				if assert.NoError(t, err) && assert.Len(t, got, 1) {
					assert.Equal(t, last.Actor, got[0].Actor)
				}
			}
		case i < flushers+noise:
			for k := 0; k < noiseMax; k++ {
				select {
				case <-stop:
					return
				default:
				}
				if !assert.NoError(t, s.Record(ctx, raceEntry(i, k))) {
					return
				}
				recorded.Add(1)
			}
		default:
			for {
				select {
				case <-stop:
					return
				default:
				}
				if !assert.NoError(t, s.Flush(ctx)) {
					return
				}
				runtime.Gosched() // Flush returns at once when nothing is queued
			}
		}
	})
	require.NoError(t, s.Flush(ctx))
	require.Equal(t, recorded.Load(), raceCount(t, s, Filter{}))
	raceRequireChain(t, raceAllEntries(t, s))
	raceRequireVerified(t, s, int(recorded.Load()))
}

// TestRaceConcurrentShutdown proves Shutdown and Close are idempotent and
// safe to call together: 16 callers get the first call's result, nothing
// accepted is lost, and afterwards every method but Stats returns
// ErrClosed. When the first call's ctx is already over and the writer is
// stuck behind another connection's write lock, all 16 get the same error,
// which counts the entries not committed.
func TestRaceConcurrentShutdown(t *testing.T) {
	const callers = 16
	ctx := raceCtx(t)

	requireAllClosed := func(t *testing.T, s *AuditService) {
		t.Helper()
		require.ErrorIs(t, s.Record(ctx, raceEntry(0, 0)), ErrClosed)
		_, err := s.Get(ctx, 1)
		require.ErrorIs(t, err, ErrClosed)
		_, err = s.List(ctx, Filter{})
		require.ErrorIs(t, err, ErrClosed)
		_, err = s.Count(ctx, Filter{})
		require.ErrorIs(t, err, ErrClosed)
		require.ErrorIs(t, s.Flush(ctx), ErrClosed)
		_, err = s.Prune(ctx, time.Now())
		require.ErrorIs(t, err, ErrClosed)
		_, err = s.Verify(ctx)
		require.ErrorIs(t, err, ErrClosed)
	}

	t.Run("drained", func(t *testing.T) {
		const n = 300
		path := testutil.TempDB(t)
		s := raceService(t, WithSQLite(path), WithLogger(testutil.Discard()))
		for k := 0; k < n; k++ {
			require.NoError(t, s.Record(ctx, raceEntry(0, k)))
		}
		errs := make([]error, callers)
		raceRelease(t, callers, func(i int) {
			if i%2 == 0 {
				errs[i] = s.Shutdown(ctx)
			} else {
				errs[i] = s.Close()
			}
		})
		for i, err := range errs {
			require.NoError(t, err, "caller %d", i)
		}
		st := s.Stats()
		require.EqualValues(t, n, st.Written, "Shutdown drains the queue")
		require.Zero(t, st.Queued)
		requireAllClosed(t, s)
		st = s.Stats()
		require.EqualValues(t, n, st.Written, "Stats works after Close")
		require.EqualValues(t, 1, st.Rejected, "the Record after Close")
		require.NoError(t, s.Shutdown(ctx))
		require.NoError(t, s.Close())

		s2 := raceService(t, WithSQLite(path), WithLogger(testutil.Discard()))
		require.EqualValues(t, n, raceCount(t, s2, Filter{}))
		raceRequireVerified(t, s2, n)
	})

	t.Run("never-opened", func(t *testing.T) {
		path := testutil.TempDB(t)
		s := raceService(t, WithSQLite(path), WithLogger(testutil.Discard()))
		errs := make([]error, callers)
		raceRelease(t, callers, func(i int) {
			if i%2 == 0 {
				errs[i] = s.Shutdown(ctx)
			} else {
				errs[i] = s.Close()
			}
		})
		for i, err := range errs {
			require.NoError(t, err, "caller %d", i)
		}
		requireAllClosed(t, s)
		_, err := os.Stat(path)
		require.ErrorIs(t, err, os.ErrNotExist, "nothing needed the database: Shutdown must not create it")
	})

	t.Run("aborted", func(t *testing.T) {
		const stuck = 10
		path := testutil.TempDB(t)
		var logBuf testutil.LogBuffer
		logger := slog.New(slog.NewJSONHandler(&logBuf, nil))
		s := raceService(t, WithSQLite(path), WithLogger(logger))
		require.NoError(t, s.Record(ctx, raceEntry(0, 0)))
		require.NoError(t, s.Flush(ctx)) // opened, in WAL mode, one entry committed
		release := testutil.HoldWriteLock(t, path)
		for k := 1; k <= stuck; k++ {
			require.NoError(t, s.Record(ctx, raceEntry(0, k)))
		}
		over, cancel := context.WithCancel(ctx)
		cancel()
		errs := make([]error, callers)
		begin := time.Now()
		raceRelease(t, callers, func(i int) {
			errs[i] = s.Shutdown(over)
		})
		require.Less(t, time.Since(begin), 3*time.Second, "Shutdown must give up promptly once its ctx is over (the contract says within a second)")
		require.Error(t, errs[0])
		require.ErrorIs(t, errs[0], context.Canceled)
		require.Contains(t, errs[0].Error(), fmt.Sprintf("%d entries not committed", stuck))
		for i, err := range errs {
			require.True(t, err == errs[0], "caller %d got %v, caller 0 got %v", i, err, errs[0])
		}
		require.True(t, s.Shutdown(ctx) == errs[0], "a later call returns the first call's result")
		st := s.Stats()
		require.EqualValues(t, 1, st.Written)
		require.Zero(t, st.Queued)
		requireAllClosed(t, s)
		require.Equal(t, stuck, strings.Count(logBuf.String(), `"msg":"audit: entry not committed"`),
			"every entry not committed is logged")

		release()
		s2 := raceService(t, WithSQLite(path), WithLogger(testutil.Discard()))
		require.EqualValues(t, 1, raceCount(t, s2, Filter{}))
		raceRequireVerified(t, s2, 1)
	})
}

// TestRaceReadersDuringWrites proves readers never fail or see an
// inconsistent log while writers commit: Count never decreases, the newest
// entry's ID is at least the count read before it, Get returns what List
// returned, and Verify passes on every snapshot, in async and sync mode. At
// the end the counts are exact.
func TestRaceReadersDuringWrites(t *testing.T) {
	modes := []struct {
		async     bool
		perWriter int
	}{{true, 250}, {false, 40}}
	const writers, readers = 4, 3
	ctx := raceCtx(t)
	for _, mode := range modes {
		t.Run(fmt.Sprintf("async=%v", mode.async), func(t *testing.T) {
			s := raceService(t, WithSQLite(testutil.TempDB(t)), WithAsync(mode.async), WithLogger(testutil.Discard()))
			var left atomic.Int64
			left.Store(writers)
			writersDone := make(chan struct{})
			var reads atomic.Int64
			raceRelease(t, writers+readers, func(i int) {
				if i < writers {
					defer func() {
						if left.Add(-1) == 0 {
							close(writersDone)
						}
					}()
					for k := 0; k < mode.perWriter; k++ {
						if !assert.NoError(t, s.Record(ctx, raceEntry(i, k))) {
							return
						}
					}
					return
				}
				var lastCount, lastVerified int64
				for iter := 0; ; iter++ {
					select {
					case <-writersDone:
						if iter > 0 {
							return
						}
					default:
					}
					reads.Add(1)
					n, err := s.Count(ctx, Filter{})
					if !assert.NoError(t, err) {
						return
					}
					assert.GreaterOrEqual(t, n, lastCount, "Count went backwards")
					lastCount = n
					list, err := s.List(ctx, Filter{Desc: true, Limit: 20})
					if !assert.NoError(t, err) {
						return
					}
					for j := 1; j < len(list); j++ {
						assert.Equal(t, list[j-1].ID-1, list[j].ID, "List must return contiguous IDs, newest first")
					}
					if len(list) > 0 {
						assert.GreaterOrEqual(t, list[0].ID, n, "the newest ID is at least the count read before it")
						got, err := s.Get(ctx, list[0].ID)
						if assert.NoError(t, err) {
							assert.Equal(t, list[0], got)
						}
					}
					g := i % writers
					if _, err := s.Count(ctx, Filter{Actor: raceActor(g), Outcome: "success"}); !assert.NoError(t, err) {
						return
					}
					rep, err := s.Verify(ctx)
					if !assert.NoError(t, err, "Verify during writes") {
						return
					}
					assert.GreaterOrEqual(t, rep.Entries, lastVerified)
					assert.Equal(t, rep.Entries, rep.LastID)
					lastVerified = rep.Entries
				}
			})
			total := writers * mode.perWriter
			require.NoError(t, s.Flush(ctx))
			require.EqualValues(t, total, raceCount(t, s, Filter{}))
			for g := 0; g < writers; g++ {
				require.EqualValues(t, mode.perWriter, raceCount(t, s, Filter{Actor: raceActor(g)}))
			}
			raceRequireChain(t, raceAllEntries(t, s))
			raceRequireVerified(t, s, total)
			st := s.Stats()
			require.EqualValues(t, total, st.Written)
			require.Zero(t, st.Queued)
			require.Zero(t, st.Failures)
			require.Positive(t, reads.Load())
		})
	}
}

// TestRaceStatsConsistency proves the counters stay coherent under
// concurrent Record and Flush: while they run, Queued is never negative and
// Written and Batches never go backwards nor Written past the Records
// begun; at the end Written is exactly the number accepted, Queued is 0,
// and Batches lies between Written/BatchSize (rounded up) and Written.
func TestRaceStatsConsistency(t *testing.T) {
	const workers, perWorker, flushEvery, batchSize = 6, 150, 25, 8
	ctx := raceCtx(t)
	for _, async := range []bool{true, false} {
		t.Run(fmt.Sprintf("async=%v", async), func(t *testing.T) {
			s := raceService(t, WithSQLite(testutil.TempDB(t)), WithAsync(async), WithBatchSize(batchSize), WithLogger(testutil.Discard()))
			var begun, accepted atomic.Int64
			var left atomic.Int64
			left.Store(workers)
			done := make(chan struct{})
			raceRelease(t, workers+1, func(i int) {
				if i == workers { // the sampler
					var last Stats
					for {
						st := s.Stats()
						started := begun.Load()
						assert.GreaterOrEqual(t, st.Queued, 0, "Queued went negative")
						assert.GreaterOrEqual(t, st.Written, last.Written, "Written went backwards")
						assert.GreaterOrEqual(t, st.Batches, last.Batches, "Batches went backwards")
						assert.LessOrEqual(t, int64(st.Written), started, "Written counts more than was recorded")
						last = st
						select {
						case <-done:
							return
						default:
							runtime.Gosched()
						}
					}
				}
				defer func() {
					if left.Add(-1) == 0 {
						close(done)
					}
				}()
				for k := 0; k < perWorker; k++ {
					begun.Add(1)
					if !assert.NoError(t, s.Record(ctx, raceEntry(i, k))) {
						return
					}
					accepted.Add(1)
					if k%flushEvery == flushEvery-1 && !assert.NoError(t, s.Flush(ctx)) {
						return
					}
				}
			})
			require.NoError(t, s.Flush(ctx))
			st := s.Stats()
			require.EqualValues(t, workers*perWorker, accepted.Load())
			require.EqualValues(t, accepted.Load(), st.Written)
			require.Zero(t, st.Queued)
			require.Zero(t, st.Rejected)
			require.Zero(t, st.Failures)
			require.GreaterOrEqual(t, st.Batches, uint64(1))
			require.GreaterOrEqual(t, st.Batches, (st.Written+batchSize-1)/batchSize, "a batch holds at most BatchSize entries")
			require.LessOrEqual(t, st.Batches, st.Written)
			require.EqualValues(t, st.Written, raceCount(t, s, Filter{}))
		})
	}

	// Entries that pile up while the writer waits for the write lock are
	// committed in full batches once it is free: the count of batches is
	// then known to within one.
	t.Run("piled-up", func(t *testing.T) {
		const recorders, perRecorder = 10, 10
		const piled = recorders * perRecorder
		path := testutil.TempDB(t)
		s := raceService(t, WithSQLite(path), WithBatchSize(batchSize), WithLogger(testutil.Discard()))
		require.NoError(t, s.Record(ctx, raceEntry(0, 0)))
		require.NoError(t, s.Flush(ctx)) // open, WAL, one batch of one
		release := testutil.HoldWriteLock(t, path)
		finished := make(chan struct{})
		defer func() { release(); <-finished }() // even when a require fails first

		var recorded sync.WaitGroup
		recorded.Add(recorders)
		go func() {
			defer close(finished)
			raceRelease(t, recorders, func(i int) {
				ok := true
				for k := 1; k <= perRecorder && ok; k++ {
					ok = assert.NoError(t, s.Record(ctx, raceEntry(i, k)))
				}
				recorded.Done()
				if ok {
					assert.NoError(t, s.Flush(ctx)) // returns only once the lock is released
				}
			})
		}()
		recorded.Wait()
		st := s.Stats()
		require.EqualValues(t, piled, st.Queued, "everything recorded behind the lock is queued")
		require.EqualValues(t, 1, st.Written)
		release()
		<-finished

		st = s.Stats()
		require.EqualValues(t, 1+piled, st.Written)
		require.Zero(t, st.Queued)
		require.Zero(t, st.Failures)
		// The batch stuck at the lock holds 1 to batchSize entries; the rest
		// were all queued when the lock went, so they fill whole batches.
		lo := uint64((piled + batchSize - 1) / batchSize)
		require.GreaterOrEqual(t, st.Batches-1, lo, "at most BatchSize entries a batch")
		require.LessOrEqual(t, st.Batches-1, lo+1, "queued entries must share batches (group commit)")
		raceRequireVerified(t, s, 1+piled)
	})
}

// TestRaceTwoServicesOneFile proves two services of one process writing
// one SQLite file together (each with its own pool and writer, starting on
// a fresh file) never fork the chain: after both Flush, both count the sum,
// both Verify the same head, and the IDs are exactly 1..N, each entry
// linked to the one before it.
func TestRaceTwoServicesOneFile(t *testing.T) {
	modes := []struct {
		async     bool
		perWorker int
	}{{true, 150}, {false, 30}}
	const perService, batchSize = 4, 16 // small batches: many transactions contend
	ctx := raceCtx(t)
	for _, mode := range modes {
		t.Run(fmt.Sprintf("async=%v", mode.async), func(t *testing.T) {
			path := testutil.TempDB(t)
			svcs := [2]*AuditService{
				raceService(t, WithSQLite(path), WithAsync(mode.async), WithBatchSize(batchSize), WithLogger(testutil.Discard())),
				raceService(t, WithSQLite(path), WithAsync(mode.async), WithBatchSize(batchSize), WithLogger(testutil.Discard())),
			}
			raceRelease(t, 2*perService, func(i int) {
				s := svcs[i%2]
				for k := 0; k < mode.perWorker; k++ {
					if !assert.NoError(t, s.Record(ctx, raceEntry(i, k))) {
						return
					}
				}
			})
			for _, s := range svcs {
				require.NoError(t, s.Flush(ctx))
			}
			total := 2 * perService * mode.perWorker
			var heads [2]string
			for j, s := range svcs {
				require.EqualValues(t, total, raceCount(t, s, Filter{}), "service %d", j)
				require.EqualValues(t, perService*mode.perWorker, s.Stats().Written, "service %d", j)
				heads[j] = raceRequireVerified(t, s, total).Head
				all := raceAllEntries(t, s)
				raceRequireChain(t, all)
				require.Equal(t, all[len(all)-1].Hash, heads[j])
			}
			require.Equal(t, heads[0], heads[1], "both services see one chain")
			for i := 0; i < 2*perService; i++ {
				require.EqualValues(t, mode.perWorker, raceCount(t, svcs[0], Filter{Actor: raceActor(i)}))
			}
		})
	}
}

// TestRaceNoGoroutineAfterShutdown proves Shutdown ends every goroutine
// the service started (writer, retention loop, database pool), whether or
// not the database was ever opened: the goroutines after Shutdown are the
// ones there were before New.
func TestRaceNoGoroutineAfterShutdown(t *testing.T) {
	cases := []struct {
		name string
		opts []Option
		use  bool
	}{
		{"never-opened", nil, false},
		{"never-opened-retention", []Option{WithRetention(time.Hour)}, false},
		{"async", nil, true},
		{"sync", []Option{WithAsync(false)}, true},
		{"retention", []Option{WithRetention(time.Hour)}, true},
	}
	ctx := raceCtx(t)
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			path := testutil.TempDB(t)
			ignore := goleak.IgnoreCurrent()
			before := runtime.NumGoroutine()
			s, err := New(append([]Option{WithSQLite(path), WithLogger(testutil.Discard())}, tc.opts...)...)
			require.NoError(t, err)
			require.Greater(t, runtime.NumGoroutine(), before, "New starts the writer")
			if tc.use {
				raceRelease(t, 16, func(i int) {
					assert.NoError(t, s.Record(ctx, raceEntry(i, 0)))
					_, err := s.Count(ctx, Filter{})
					assert.NoError(t, err)
				})
				require.NoError(t, s.Flush(ctx))
				raceRequireVerified(t, s, 16)
			}
			require.NoError(t, s.Shutdown(ctx))
			goleak.VerifyNone(t, ignore)
			testutil.WaitFor(t, 5*time.Second, func() bool { return runtime.NumGoroutine() <= before },
				"the goroutine count to return to its level before New")
		})
	}
}

// TestRaceQueriesVsShutdown proves that a query racing with Shutdown
// either succeeds or fails with ErrClosed, as every method but Stats must
// once Close has begun, never with the closed pool's own error ("sql:
// database is closed"), so that callers can tell a shutdown with
// errors.Is(err, ErrClosed). Readers of every kind (Get, List, Count,
// Verify, Prune, Flush) run in a loop while Shutdown is called.
func TestRaceQueriesVsShutdown(t *testing.T) {
	const rounds, readers, threshold, maxPer = 5, 12, 60, 100000
	ctx := raceCtx(t)
	for round := 0; round < rounds; round++ {
		t.Run(fmt.Sprintf("round%d", round), func(t *testing.T) {
			s := raceService(t, WithSQLite(testutil.TempDB(t)), WithLogger(testutil.Discard()))
			require.NoError(t, s.Record(ctx, raceEntry(0, 0)))
			require.NoError(t, s.Flush(ctx))
			old := time.Date(2000, 1, 1, 0, 0, 0, 0, time.UTC) // prunes nothing

			var calls, live atomic.Int64
			live.Store(readers)
			enough := make(chan struct{})
			var enoughOnce sync.Once
			signal := func() { enoughOnce.Do(func() { close(enough) }) }
			var (
				mu     sync.Mutex
				others []string
			)
			raceRelease(t, readers+1, func(i int) {
				if i == readers {
					<-enough
					assert.NoError(t, s.Shutdown(ctx))
					return
				}
				defer func() {
					if live.Add(-1) == 0 {
						signal()
					}
				}()
				for k := 0; k < maxPer; k++ {
					var err error
					op := (i + k) % 6
					switch op {
					case 0:
						_, err = s.Count(ctx, Filter{})
					case 1:
						_, err = s.List(ctx, Filter{Limit: 5})
					case 2:
						_, err = s.Get(ctx, 1)
					case 3:
						_, err = s.Verify(ctx)
					case 4:
						_, err = s.Prune(ctx, old)
					case 5:
						err = s.Flush(ctx)
					}
					if calls.Add(1) == threshold {
						signal()
					}
					if err != nil {
						if !errors.Is(err, ErrClosed) {
							mu.Lock()
							others = append(others, err.Error())
							mu.Unlock()
						}
						return
					}
				}
			})
			require.Empty(t, others, "a call racing with Shutdown may only succeed or fail with ErrClosed")
		})
	}
}

// TestRaceTwoServicesOpenTogether proves two services can make their first
// call on one new SQLite file at the same moment: the one that finds the
// file busy waits for it (the busy timeout), so both calls succeed and
// neither counts a failure. Two services of one process, or two processes,
// starting together is the ordinary case of a shared file.
func TestRaceTwoServicesOpenTogether(t *testing.T) {
	const rounds = 25
	ctx := raceCtx(t)
	for round := 0; round < rounds; round++ {
		t.Run(fmt.Sprintf("round%d", round), func(t *testing.T) {
			path := testutil.TempDB(t)
			var logs [2]testutil.LogBuffer
			svcs := [2]*AuditService{
				raceService(t, WithSQLite(path), WithLogger(logs[0].Logger())),
				raceService(t, WithSQLite(path), WithLogger(logs[1].Logger())),
			}
			errs := make([]error, 2)
			raceRelease(t, 2, func(i int) {
				_, errs[i] = svcs[i].Count(ctx, Filter{})
			})
			for j, s := range svcs {
				require.NoError(t, errs[j], "service %d's first call; its log:\n%s", j, logs[j].String())
				require.Zero(t, s.Stats().Failures, "service %d; its log:\n%s", j, logs[j].String())
			}
		})
	}
}
