package audit

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"runtime"
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
			s := newServiceAt(t, append([]Option{WithSQLite(path), WithLogger(testutil.Discard())}, mode.opts...)...)

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

			s2 := newServiceAt(t, WithSQLite(path), WithLogger(testutil.Discard()))
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
	s := newServiceAt(t, WithSQLite(testutil.TempDB(t)), WithLogger(testutil.Discard()))

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
		s := newServiceAt(t, WithSQLite(path), WithLogger(testutil.Discard()))
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

		s2 := newServiceAt(t, WithSQLite(path), WithLogger(testutil.Discard()))
		require.EqualValues(t, n, raceCount(t, s2, Filter{}))
		raceRequireVerified(t, s2, n)
	})

	t.Run("never-opened", func(t *testing.T) {
		path := testutil.TempDB(t)
		s := newServiceAt(t, WithSQLite(path), WithLogger(testutil.Discard()))
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
		s := newServiceAt(t, WithSQLite(path), WithLogger(logger))
		require.NoError(t, s.Record(ctx, raceEntry(0, 0)))
		require.NoError(t, s.Flush(ctx)) // opened, in WAL mode, one entry committed
		release := testutil.HoldWriteLock(t, path)
		for k := 1; k <= stuck; k++ {
			require.NoError(t, s.Record(ctx, raceEntry(0, k)))
		}
		over, cancel := context.WithCancel(ctx)
		cancel()
		errs := make([]error, callers)
		// Without the abort the writer would retry behind the lock for
		// ever; the bound only detects that hang (no timing goal).
		testutil.ReturnsWithin(t, testutil.HangBound, "Shutdown with its ctx over", func() {
			raceRelease(t, callers, func(i int) {
				errs[i] = s.Shutdown(over)
			})
		})
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
		s2 := newServiceAt(t, WithSQLite(path), WithLogger(testutil.Discard()))
		require.EqualValues(t, 1, raceCount(t, s2, Filter{}))
		raceRequireVerified(t, s2, 1)
	})
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
