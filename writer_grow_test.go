//go:build cgo

package audit

import (
	"context"
	"testing"
	"time"

	"github.com/cleveragents/audit/internal/testutil"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// TestBatchesGrowWhileCommitsLag: without WithBatchSize, every full batch
// doubles the next one's limit (up to maxGrownBatch) and a batch less than
// half full halves it back towards DefaultBatchSize; WithBatchSize is a hard
// limit.
func TestBatchesGrowWhileCommitsLag(t *testing.T) {
	ctx := context.Background()
	const n = 5000
	t.Run("default grows", func(t *testing.T) {
		s, rec, path := batchObserved(t, WithQueueSize(2*n))
		require.NoError(t, s.Ping(ctx))
		release := testutil.HoldWriteLock(t, path)
		queueN(t, s, 0, n)
		release()
		require.NoError(t, s.Flush(ctx))
		// The first batch is whatever the writer held when the lock was
		// taken; the queue behind it comes in growing batches.
		sizes := rec.batches()
		require.NotEmpty(t, sizes)
		want := []int{sizes[0]}
		limit := DefaultBatchSize
		if sizes[0] == limit {
			limit *= 2
		}
		for left := n - sizes[0]; left > 0; limit = min(2*limit, maxGrownBatch) {
			want = append(want, min(limit, left))
			left -= want[len(want)-1]
		}
		assert.Equal(t, want, sizes)
		assert.Greater(t, len(sizes), 2, "several batches")
		assert.Less(t, len(sizes), n/DefaultBatchSize, "bigger batches than DefaultBatchSize")

		// The queue keeps up again: the limit halves after each small batch.
		assert.Equal(t, 1024, s.growBatch(2048, 3))
		assert.Equal(t, DefaultBatchSize, s.growBatch(DefaultBatchSize, 1))
		assert.Equal(t, maxGrownBatch, s.growBatch(maxGrownBatch, maxGrownBatch))
	})
	t.Run("WithBatchSize is the limit", func(t *testing.T) {
		s, rec, path := batchObserved(t, WithQueueSize(2*n), WithBatchSize(DefaultBatchSize))
		require.NoError(t, s.Ping(ctx))
		release := testutil.HoldWriteLock(t, path)
		queueN(t, s, 0, n)
		release()
		require.NoError(t, s.Flush(ctx))
		sizes := rec.batches()
		require.GreaterOrEqual(t, len(sizes), (n+DefaultBatchSize-1)/DefaultBatchSize)
		for _, size := range sizes {
			assert.LessOrEqual(t, size, DefaultBatchSize)
		}
	})
}

// TestTransactionTakesWhatArrivesMeanwhile: a write transaction given a
// refill appends what it returns after its own entries, in the same
// transaction (none of them is visible to another connection until all
// are), IDs and the chain continuous, the tree over all of them (Verify
// checks both), in sets of any size (SQLite: a short one carried over into
// the next full INSERT, a lone entry, several full chunks, a short chunk
// that goes in when nothing more is queued; PostgreSQL: a COPY, or an
// INSERT, per set).
func TestTransactionTakesWhatArrivesMeanwhile(t *testing.T) {
	forEachBackend(t, func(t *testing.T, st *backend) {
		ctx := context.Background()
		s := st.service(t)
		require.NoError(t, s.Ping(ctx))
		sess, err := s.st.session(ctx)
		require.NoError(t, err)
		recs := func(from, n int) []*record {
			out := make([]*record, n)
			for i := range out {
				e := sampleEntry(from + i)
				out[i], err = s.newRecord(&e)
				require.NoError(t, err)
			}
			return out
		}
		committed := func() int {
			var n int
			require.NoError(t, st.raw.QueryRowContext(ctx, "SELECT COUNT(*) FROM "+quote(st.table)).Scan(&n))
			return n
		}
		// What each refill returns. A transaction ends at the first
		// refill that finds nothing queued right after an INSERT ran.
		// SQLite's INSERTs are of rowsPer-row chunks: there the first 0
		// comes while a short chunk waits, which then goes in, and the
		// transaction goes on with what arrived meanwhile (the 1); the
		// last 0 too comes while a short chunk waits, and the transaction
		// ends at the refill after it went in (nil: nothing left). On
		// PostgreSQL every set goes in as it comes: the first 0 ends it.
		rows := sqliteInsertRows
		sizes := []int{rows/2 + 3, 0, 1, 3*rows + 5, rows - 1, 0}
		wantCalls, wantTotal := 2, 10+sizes[0]
		if st.kind == "sqlite" {
			wantCalls, wantTotal = len(sizes)+1, 10
			for _, n := range sizes {
				wantTotal += n
			}
		}
		var seen []int
		var tx execer // the transaction, which sees its own rows
		inTx := func() int {
			var n int
			require.NoError(t, tx.QueryRowContext(ctx, "SELECT COUNT(*) FROM "+quote(st.table)).Scan(&n))
			return n
		}
		given, refills, empty := 10, sizes, false
		more := func(next int64) []*record {
			assert.Equal(t, int64(given+1), next, "refill %d is told the ID its first entry gets", len(seen))
			seen = append(seen, committed())
			if empty || len(refills) == 0 || st.kind != "sqlite" {
				// A refill after an empty one, and the last, come after
				// an INSERT of everything taken (on PostgreSQL, each).
				assert.Equal(t, given, inTx(), "refill %d: entries inserted in the transaction", len(seen))
			}
			if len(refills) == 0 {
				return nil
			}
			n := refills[0]
			refills = refills[1:]
			given += n
			empty = n == 0
			return recs(given-n, n)
		}
		require.NoError(t, s.st.writeTx(ctx, sess, func(t execer) error {
			tx = t
			return s.appendChain(ctx, sess, t, recs(0, 10), more)
		}))

		total := given
		assert.Equal(t, wantCalls, len(seen), "refills")
		assert.Equal(t, wantTotal, total, "entries taken")
		assert.Equal(t, make([]int, len(seen)), seen, "nothing committed before the transaction's end")
		assert.Equal(t, total, committed(), "all of it at the end")
		report, err := s.Verify(ctx)
		require.NoError(t, err)
		assert.Equal(t, int64(total), report.Entries)
		for _, id := range []int64{1, 10, 11, int64(total)} {
			e, err := s.Get(ctx, id)
			require.NoError(t, err)
			assert.Equal(t, sampleEntry(int(id-1)).Resource, e.Resource, "entry %d", id)
		}
	})
}

// TestRefillTakesWhatIsQueued: the refill takes the queue's items in order
// (Flush barriers too) up to the batch's limit and batchCap, returns at
// once when the queue is empty, and takes nothing once the transaction may
// not grow (a retry writes what it holds).
func TestRefillTakesWhatIsQueued(t *testing.T) {
	s := &AuditService{in: newIntake(64), cfg: defaultConfig()}
	for range 40 {
		s.in.queue <- item{rec: &record{}}
	}
	barrier := item{done: make(chan error, 1)}
	s.in.queue <- barrier
	s.in.queue <- item{rec: &record{}}
	b := &inflight{limit: 30, grow: true, items: make([]item, 10), recs: make([]*record, 10)}
	for i := range b.recs {
		b.recs[i] = &record{}
	}
	got := s.refill(b)(11)
	assert.Len(t, got, 20, "up to the limit")
	assert.Len(t, b.recs, 30)
	assert.Len(t, b.items, 30)

	b.limit = 100
	got = s.refill(b)(31)
	assert.Len(t, got, 21, "the rest")
	assert.Len(t, b.items, 52, "and the barrier, in its place")
	assert.Nil(t, b.items[50].rec)
	assert.NotNil(t, b.items[50].done)
	assert.Empty(t, s.refill(b)(52), "nothing queued: at once")

	s.in.queue <- item{rec: &record{}}
	b.grow = false
	assert.Empty(t, s.refill(b)(52))
	assert.Len(t, s.in.queue, 1, "left queued")

	// Without WithBatchSize, a long log's batch stops at batchCap.
	b.grow, b.limit, b.recs = true, maxGrownBatch, make([]*record, batchCap(1e9)-1)
	assert.Len(t, s.refill(b)(1e9), 1)
	assert.Len(t, b.recs, batchCap(1e9))
}

// TestBatchCap: the grown batch's cap falls as the log grows, from
// maxGrownBatch to a floor that the page cache holds however long the log.
func TestBatchCap(t *testing.T) {
	prev := maxGrownBatch
	for _, size := range []int64{0, 1_000, 100_000, 200_000, 300_000, 1_000_000, 1e8, 1e12} {
		c := batchCap(size)
		assert.LessOrEqual(t, c, prev, "size %d", size)
		assert.GreaterOrEqual(t, c, 4096, "size %d", size)
		prev = c
	}
	assert.Equal(t, maxGrownBatch, batchCap(100_000))
	assert.Less(t, batchCap(1_000_000), maxGrownBatch)
}

// TestSyncCallersJoinTheTransactionInProgress: entries recorded while a
// transaction is under way, however few, go into it before it commits:
// one sync caller's entry is taken, its transaction waits for the write
// lock that another connection holds, five more sync callers record
// meanwhile, and once the lock is let go all six commit in one
// transaction (before, the five made a second one).
func TestSyncCallersJoinTheTransactionInProgress(t *testing.T) {
	forEachBackend(t, func(t *testing.T, st *backend) {
		ctx := context.Background()
		s := st.service(t, WithAsync(false))
		require.NoError(t, s.Ping(ctx))
		before := s.Stats().Batches
		release := st.holdWriteLock(t)
		errs := make(chan error, 6)
		record := func(i int) { errs <- s.Record(ctx, sampleEntry(i)) }
		go record(0)
		// The writer took the first entry: its transaction waits for the lock.
		testutil.WaitFor(t, 10*time.Second, func() bool { return s.Stats().Queued == 1 && len(s.in.queue) == 0 }, "the writer takes the first entry")
		for i := 1; i <= 5; i++ {
			go record(i)
		}
		// All six accepted: in the writer's hands (its batch may have taken
		// some of the five too, as it took the first) or queued.
		testutil.WaitFor(t, 10*time.Second, func() bool { return s.Stats().Queued == 6 }, "six entries accepted")
		release()
		for range 6 {
			require.NoError(t, <-errs)
		}
		assert.Equal(t, before+1, s.Stats().Batches, "one transaction")
		n, err := s.Count(ctx, Filter{})
		require.NoError(t, err)
		assert.Equal(t, int64(6), n)
	})
}
