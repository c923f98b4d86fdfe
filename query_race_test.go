package audit

import (
	"fmt"
	"runtime"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/cleveragents/audit/internal/testutil"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

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
			s := newServiceAt(t, WithSQLite(testutil.TempDB(t)), WithAsync(mode.async), WithLogger(testutil.Discard()))
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
			s := newServiceAt(t, WithSQLite(testutil.TempDB(t)), WithAsync(async), WithBatchSize(batchSize), WithLogger(testutil.Discard()))
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
		s := newServiceAt(t, WithSQLite(path), WithBatchSize(batchSize), WithLogger(testutil.Discard()))
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
