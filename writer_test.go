//go:build cgo

package audit

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/cleveragents/audit/internal/testutil"
	"github.com/mattn/go-sqlite3"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"gorm.io/driver/sqlite"
)

// Batch semantics, as the Kubernetes audit buffered backend's tests prove
// them for its own writer: a batch never exceeds BatchSize, a lone entry
// does not wait for a batch to fill, Shutdown waits for the transaction in
// flight, and Record after Shutdown enqueues nothing.

// batchRecorder observes, from inside SQLite, how many entries each
// committed transaction inserted. It is the honest way to see a batch: the
// table has no per-batch marker, and Stats only counts batches.
type batchRecorder struct {
	table string
	mu    sync.Mutex // guards sizes
	sizes []int      // rows inserted into table by each committed transaction, in commit order
}

var batchDriverSeq atomic.Int64

// batchObserved returns a service on a new SQLite file whose connections
// report every commit to the returned recorder, and the file's path. The
// service writes through a go-sqlite3 driver registered for this test,
// whose connect hook installs SQLite's update, commit and rollback hooks.
func batchObserved(t *testing.T, opts ...Option) (*AuditService, *batchRecorder, string) {
	t.Helper()
	rec := &batchRecorder{table: DefaultTable}
	name := "sqlite3_batch_" + strconv.FormatInt(batchDriverSeq.Add(1), 10)
	sql.Register(name, &sqlite3.SQLiteDriver{ConnectHook: func(c *sqlite3.SQLiteConn) error {
		rows := 0 // this connection's uncommitted inserts; a connection serves one goroutine at a time
		c.RegisterUpdateHook(func(op int, _, table string, _ int64) {
			if op == sqlite3.SQLITE_INSERT && strings.EqualFold(table, rec.table) {
				rows++
			}
		})
		c.RegisterCommitHook(func() int {
			if rows > 0 {
				rec.mu.Lock()
				rec.sizes = append(rec.sizes, rows)
				rec.mu.Unlock()
			}
			rows = 0
			return 0 // let the commit proceed
		})
		c.RegisterRollbackHook(func() { rows = 0 })
		return nil
	}})
	path := testutil.TempDB(t)
	dsn, _ := sqliteDSN(path)
	s := newServiceAt(t, append([]Option{WithDialector(sqlite.New(sqlite.Config{DriverName: name, DSN: dsn}))}, opts...)...)
	return s, rec, path
}

func (r *batchRecorder) batches() []int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]int(nil), r.sizes...)
}

func batchSum(sizes []int) int {
	n := 0
	for _, x := range sizes {
		n += x
	}
	return n
}

func TestBatchNeverExceedsBatchSize(t *testing.T) {
	ctx := context.Background()
	for _, tc := range []struct{ batch, n int }{
		{1, 20},
		{7, 100},   // the last batch is partial
		{10, 100},  // k*b
		{300, 700}, // more than one INSERT statement (insertChunk) per transaction
	} {
		t.Run(strconv.Itoa(tc.batch)+"x"+strconv.Itoa(tc.n), func(t *testing.T) {
			s, rec, path := batchObserved(t, WithBatchSize(tc.batch))
			_, err := s.Count(ctx, Filter{}) // open, so that the lock below is the only obstacle
			require.NoError(t, err)

			release := testutil.HoldWriteLock(t, path)
			queueN(t, s, 0, tc.n)
			// The writer holds its first batch, blocked on the lock: still queued.
			st := s.Stats()
			assert.Equal(t, tc.n, st.Queued, "in-flight batch included")
			assert.Zero(t, st.Written)
			assert.Empty(t, rec.batches())
			release()
			require.NoError(t, s.Flush(ctx))

			sizes := rec.batches()
			st = s.Stats()
			require.NotEmpty(t, sizes)
			for i, size := range sizes {
				assert.LessOrEqual(t, size, tc.batch, "batch %d of %v", i, sizes)
			}
			assert.Equal(t, tc.n, batchSum(sizes), "every entry in exactly one observed transaction")
			assert.Equal(t, uint64(tc.n), st.Written)
			assert.Equal(t, uint64(len(sizes)), st.Batches, "Stats.Batches counts the transactions SQLite saw")
			assert.GreaterOrEqual(t, st.Batches, uint64((tc.n+tc.batch-1)/tc.batch))
			// Greedy: everything was queued when the first batch committed,
			// so every batch after it but the last is full.
			for i := 1; i < len(sizes)-1; i++ {
				assert.Equal(t, tc.batch, sizes[i], "batch %d of %v is not full", i, sizes)
			}
			assert.LessOrEqual(t, len(sizes), 1+(tc.n-1+tc.batch-1)/tc.batch, "batches %v", sizes)
			assert.Zero(t, st.Queued)
		})
	}

	t.Run("sync callers share batches up to the size", func(t *testing.T) {
		const batch, callers, each = 4, 32, 5
		s, rec, path := batchObserved(t, WithBatchSize(batch), WithAsync(false))
		_, err := s.Count(ctx, Filter{})
		require.NoError(t, err)
		release := testutil.HoldWriteLock(t, path)
		var wg sync.WaitGroup
		errs := make(chan error, callers*each)
		for g := 0; g < callers; g++ {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for k := 0; k < each; k++ {
					errs <- s.Record(ctx, raceEntry(g, k))
				}
			}()
		}
		// Every caller's first entry is queued or in flight before the lock goes.
		testutil.WaitFor(t, 10*time.Second, func() bool { return s.Stats().Queued == callers }, "all callers waiting")
		release()
		wg.Wait()
		close(errs)
		for err := range errs {
			require.NoError(t, err)
		}
		sizes := rec.batches()
		for i, size := range sizes {
			assert.LessOrEqual(t, size, batch, "batch %d of %v", i, sizes)
		}
		assert.Equal(t, callers*each, batchSum(sizes))
		assert.Contains(t, sizes, batch, "32 waiting callers fill at least one batch: %v", sizes)
		assert.Equal(t, uint64(len(sizes)), s.Stats().Batches)
	})

	// The same bound where no hook can see the transactions (PostgreSQL):
	// only Stats tells, so the claim is the weaker one it supports.
	t.Run("on every backend", func(t *testing.T) {
		forEachBackend(t, func(t *testing.T, st *backend) {
			const batch, n = 10, 95
			s := st.service(t, WithBatchSize(batch))
			require.NoError(t, s.Flush(ctx))
			_, err := s.Count(ctx, Filter{}) // open, so the lock below is the only obstacle
			require.NoError(t, err)
			release := st.holdWriteLock(t)
			queueN(t, s, 0, n)
			release()
			require.NoError(t, s.Flush(ctx))
			stats := s.Stats()
			assert.Equal(t, uint64(n), stats.Written)
			assert.GreaterOrEqual(t, stats.Batches, uint64((n+batch-1)/batch))
		})
	})
}

func TestBatchLoneEntryIsWrittenAtOnce(t *testing.T) {
	// A bound, not a sleep: a writer that waited for a full batch (or for a
	// timer to fill one) would miss it.
	const bound = time.Second
	t.Run("async", func(t *testing.T) {
		ctx := context.Background()
		s, rec, _ := batchObserved(t, WithBatchSize(512))
		_, err := s.Count(ctx, Filter{})
		require.NoError(t, err)
		require.NoError(t, s.Record(ctx, sampleEntry(0)))
		fctx, cancel := context.WithTimeout(ctx, bound)
		defer cancel()
		require.NoError(t, s.Flush(fctx), "a lone entry must not wait for 511 more")
		assert.Equal(t, []int{1}, rec.batches())
		n, err := s.Count(ctx, Filter{})
		require.NoError(t, err)
		assert.Equal(t, int64(1), n)
	})
	t.Run("sync", func(t *testing.T) {
		ctx := context.Background()
		s, rec, _ := batchObserved(t, WithBatchSize(512), WithAsync(false))
		_, err := s.Count(ctx, Filter{})
		require.NoError(t, err)
		rctx, cancel := context.WithTimeout(ctx, bound)
		defer cancel()
		require.NoError(t, s.Record(rctx, sampleEntry(0)))
		assert.Equal(t, []int{1}, rec.batches())
	})
	forEachBackend(t, func(t *testing.T, st *backend) {
		ctx := context.Background()
		s := st.service(t, WithBatchSize(512))
		_, err := s.Count(ctx, Filter{})
		require.NoError(t, err)
		for i := 0; i < 3; i++ { // each one alone, one after the other
			require.NoError(t, s.Record(ctx, sampleEntry(i)))
			fctx, cancel := context.WithTimeout(ctx, bound)
			require.NoError(t, s.Flush(fctx))
			cancel()
			assert.Equal(t, uint64(i+1), s.Stats().Batches)
		}
	})
}

func TestBatchShutdownWaitsForTransactionInFlight(t *testing.T) {
	forEachBackend(t, func(t *testing.T, st *backend) {
		ctx := context.Background()
		s, err := New(append(st.opts(), WithBatchSize(4), WithLogger(testutil.Discard()))...)
		require.NoError(t, err)
		t.Cleanup(func() { _ = s.Close() })
		_, err = s.Count(ctx, Filter{}) // open: the chain head row exists to be locked
		require.NoError(t, err)

		release := st.holdWriteLock(t)
		require.NoError(t, s.Record(ctx, sampleEntry(0)))
		// The writer has taken the entry off the queue: its transaction is
		// in flight, blocked on the lock.
		testutil.WaitFor(t, 10*time.Second, func() bool { return len(s.in.queue) == 0 }, "the writer to take the first entry")
		const n = 10
		queueN(t, s, 1, n-1)

		sctx, cancel := context.WithTimeout(ctx, 30*time.Second) // a guard against hanging, not a wait
		defer cancel()
		done := make(chan error, 1)
		go func() { done <- s.Shutdown(sctx) }()
		testutil.WaitFor(t, 10*time.Second, s.in.isClosed, "Shutdown to begin")

		require.ErrorIs(t, s.Record(ctx, sampleEntry(n)), ErrClosed, "Shutdown has begun")
		// Shutdown has not returned: nothing is committed while the lock is held.
		select {
		case err := <-done:
			t.Fatalf("Shutdown returned %v while a transaction was in flight", err)
		case <-time.After(100 * time.Millisecond): // the span of the observation, not a synchronisation
		}
		stats := s.Stats()
		assert.Zero(t, stats.Written, "nothing committed before the lock is released")
		assert.Equal(t, n, stats.Queued)

		release()
		select {
		case err := <-done:
			require.NoError(t, err, "Shutdown waits for the transaction in flight and drains the rest")
		case <-sctx.Done():
			t.Fatal("Shutdown did not return after the lock was released")
		}
		stats = s.Stats()
		assert.Equal(t, uint64(n), stats.Written)
		assert.Zero(t, stats.Queued)
		assert.Equal(t, uint64(1), stats.Rejected)

		s2 := st.service(t)
		got, err := s2.Count(ctx, Filter{})
		require.NoError(t, err)
		assert.Equal(t, int64(n), got, "everything accepted is committed, the refused one is not")
		list, err := s2.List(ctx, Filter{})
		require.NoError(t, err)
		for i, e := range list {
			assert.Equal(t, sampleEntry(i).RequestID, e.RequestID, "in order")
		}
		_, err = s2.Verify(ctx)
		require.NoError(t, err)
	})
}

func TestBatchRecordAfterShutdownEnqueuesNothing(t *testing.T) {
	for _, async := range []bool{true, false} {
		t.Run("async="+strconv.FormatBool(async), func(t *testing.T) {
			forEachBackend(t, func(t *testing.T, st *backend) {
				ctx := context.Background()
				s, err := New(append(st.opts(), WithAsync(async))...)
				require.NoError(t, err)
				t.Cleanup(func() { _ = s.Close() })
				queueN(t, s, 0, 5)
				require.NoError(t, s.Shutdown(ctx))
				before := s.Stats()
				require.Equal(t, uint64(5), before.Written)

				cancelled, cancel := context.WithCancel(ctx)
				cancel()
				// A bound, so that a Record that enqueued and waits fails fast.
				bounded, cancelBounded := context.WithTimeout(ctx, 5*time.Second)
				defer cancelBounded()
				const refused = 10
				for i := 0; i < refused; i++ {
					c := bounded
					if i%2 == 1 {
						c = cancelled // ErrClosed, not ctx's error: nothing waits
					}
					err := s.Record(c, sampleEntry(100+i))
					require.ErrorIs(t, err, ErrClosed)
					assert.False(t, errors.Is(err, context.Canceled), "%v", err)
				}
				require.ErrorIs(t, s.Flush(ctx), ErrClosed)
				after := s.Stats()
				assert.Zero(t, after.Queued, "nothing enqueued")
				assert.Equal(t, before.Written, after.Written)
				assert.Equal(t, before.Batches, after.Batches)
				assert.Equal(t, before.Rejected+refused, after.Rejected)
				assert.Zero(t, len(s.in.queue), "the queue holds nothing")
				require.NoError(t, s.Shutdown(ctx), "still the first call's result")

				s2 := st.service(t)
				n, err := s2.Count(ctx, Filter{})
				require.NoError(t, err)
				assert.Equal(t, int64(5), n, "only what was accepted before Shutdown")
			})
		})
	}
}

func TestWriteFailureRetriedInOrder(t *testing.T) {
	forEachBackend(t, func(t *testing.T, st *backend) {
		ctx := context.Background()
		s := st.service(t, WithLogger(testutil.Discard()))
		recordAll(t, s, sampleEntry(0))

		// A real fault: the table disappears under the writer.
		st.exec(t, `ALTER TABLE $TABLE RENAME TO $AWAY`)
		queueN(t, s, 1, 30)
		testutil.WaitFor(t, 5*time.Second, func() bool { return s.Stats().Failures >= 2 }, "failed writes")

		fctx, cancel := context.WithTimeout(ctx, 20*time.Millisecond)
		err := s.Flush(fctx)
		cancel()
		require.ErrorIs(t, err, context.DeadlineExceeded)
		assert.Contains(t, err.Error(), st.table, "Flush wraps the last write error, which names the missing table")

		st.exec(t, `ALTER TABLE $AWAY RENAME TO $TABLE`)
		fctx, cancel = context.WithTimeout(ctx, 15*time.Second)
		defer cancel()
		require.NoError(t, s.Flush(fctx))
		list, err := s.List(ctx, Filter{})
		require.NoError(t, err)
		require.Len(t, list, 31)
		for i, e := range list {
			assert.Equal(t, fmt.Sprintf("req-%d", i), e.RequestID)
		}
		_, err = s.Verify(ctx)
		require.NoError(t, err)
	})
}
