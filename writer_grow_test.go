//go:build cgo

package audit

import (
	"context"
	"testing"

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
