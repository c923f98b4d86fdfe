package audit

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/cleveragents/audit/internal/testutil"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

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
			s := newServiceAt(t, WithDialector(d), WithAsync(async), WithLogger(testutil.Discard()))
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
// retries by itself and loses nothing. One caller at a time, on every
// backend, the failures are also logged through the service's logger and
// an open database is not opened again.
func TestRaceFailedOpenIsRetried(t *testing.T) {
	t.Run("one caller at a time", func(t *testing.T) {
		forEachBackend(t, func(t *testing.T, st *backend) {
			ctx := context.Background()
			d := countOpens(st.dialector(), 2)
			logs := &testutil.LogBuffer{}
			s := newServiceAt(t, WithDialector(d), WithTable(st.table), WithLogger(logs.JSONLogger()))
			for i := 1; i <= 2; i++ {
				_, err := s.Count(ctx, Filter{})
				require.ErrorIs(t, err, errInjectedOpen)
				assert.Equal(t, uint64(i), s.Stats().Failures)
			}
			n, err := s.Count(ctx, Filter{})
			require.NoError(t, err)
			assert.Zero(t, n)
			assert.Equal(t, int64(3), d.opens.Load())
			_, err = s.List(ctx, Filter{})
			require.NoError(t, err)
			assert.Equal(t, int64(3), d.opens.Load(), "an open database is not opened again")
			assert.Contains(t, logs.String(), "injected open failure", "failures are logged through the service's logger")
		})
	})

	const workers, failFirst = 64, 3
	ctx := raceCtx(t)

	t.Run("readers", func(t *testing.T) {
		d := newCountingDialector(testutil.TempDB(t), failFirst)
		s := newServiceAt(t, WithDialector(d), WithLogger(testutil.Discard()))
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
			s := newServiceAt(t, WithDialector(d), WithAsync(async), WithLogger(testutil.Discard()))
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
				newServiceAt(t, WithSQLite(path), WithAsync(mode.async), WithBatchSize(batchSize), WithLogger(testutil.Discard())),
				newServiceAt(t, WithSQLite(path), WithAsync(mode.async), WithBatchSize(batchSize), WithLogger(testutil.Discard())),
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
				newServiceAt(t, WithSQLite(path), WithLogger(logs[0].Logger())),
				newServiceAt(t, WithSQLite(path), WithLogger(logs[1].Logger())),
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
			s := newServiceAt(t, WithSQLite(testutil.TempDB(t)), WithLogger(testutil.Discard()))
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
