package audit

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestSyncModeCommitsBeforeReturning(t *testing.T) {
	forEachBackend(t, func(t *testing.T, st *backend) {
		ctx := context.Background()
		s := st.service(t, WithAsync(false))
		for i := 0; i < 5; i++ {
			require.NoError(t, s.Record(ctx, sampleEntry(i)))
			// Visible without Flush: Record waited for the commit.
			e, err := s.Get(ctx, int64(i+1))
			require.NoError(t, err)
			assert.Equal(t, fmt.Sprintf("req-%d", i), e.RequestID)
		}
	})
}

func TestSyncModeGroupCommit(t *testing.T) {
	forEachBackend(t, func(t *testing.T, st *backend) {
		ctx := context.Background()
		s := st.service(t, WithAsync(false))
		const callers, each = 64, 10
		start := make(chan struct{})
		var wg sync.WaitGroup
		errs := make(chan error, callers*each)
		for g := 0; g < callers; g++ {
			wg.Add(1)
			go func() {
				defer wg.Done()
				<-start
				for i := 0; i < each; i++ {
					errs <- s.Record(ctx, Entry{EventType: "e", Actor: fmt.Sprintf("g%d", g)})
				}
			}()
		}
		close(start)
		wg.Wait()
		close(errs)
		for err := range errs {
			require.NoError(t, err)
		}
		stats := s.Stats()
		assert.Equal(t, uint64(callers*each), stats.Written)
		assert.Less(t, stats.Batches, stats.Written, "concurrent sync callers share transactions")
		assert.Equal(t, 0, stats.Queued)
	})
}

func TestSyncRecordCtxEndsEntryStaysQueued(t *testing.T) {
	forEachBackend(t, func(t *testing.T, st *backend) {
		s := st.service(t, WithAsync(false))
		require.NoError(t, s.Record(context.Background(), sampleEntry(0)))
		release := st.holdWriteLock(t)
		ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
		defer cancel()
		err := s.Record(ctx, sampleEntry(1))
		require.ErrorIs(t, err, context.DeadlineExceeded)
		release()
		require.NoError(t, s.Flush(context.Background()))
		e, err := s.Get(context.Background(), 2)
		require.NoError(t, err, "the entry stayed queued and was committed")
		assert.Equal(t, "req-1", e.RequestID)
	})
}

func TestOverflowFail(t *testing.T) {
	forEachBackend(t, func(t *testing.T, st *backend) {
		ctx := context.Background()
		const queue, batch = 4, 2
		s := st.service(t, WithOverflow(OverflowFail), WithQueueSize(queue), WithBatchSize(batch))
		recordAll(t, s, sampleEntry(0))
		release := st.holdWriteLock(t)

		accepted := 1
		var full error
		for i := 1; i <= queue+batch+1; i++ {
			if err := s.Record(ctx, sampleEntry(i)); err != nil {
				full = err
				break
			}
			accepted++
		}
		require.ErrorIs(t, full, ErrQueueFull)
		// The writer holds at most one batch; the queue holds the rest.
		assert.LessOrEqual(t, accepted-1, queue+batch)
		assert.GreaterOrEqual(t, accepted-1, queue)
		assert.Equal(t, uint64(1), s.Stats().Rejected)

		release()
		require.NoError(t, s.Flush(ctx))
		n, err := s.Count(ctx, Filter{})
		require.NoError(t, err)
		assert.Equal(t, int64(accepted), n, "every accepted entry committed, none of the refused")
		_, err = s.Verify(ctx)
		require.NoError(t, err)
	})
}

func TestOverflowBlock(t *testing.T) {
	forEachBackend(t, func(t *testing.T, st *backend) {
		ctx := context.Background()
		const queue = 3
		s := st.service(t, WithQueueSize(queue), WithBatchSize(1))
		recordAll(t, s, sampleEntry(0))
		release := st.holdWriteLock(t)

		accepted := 1
		var blocked error
		for i := 1; i <= queue+2; i++ {
			tctx, cancel := context.WithTimeout(ctx, 100*time.Millisecond)
			err := s.Record(tctx, sampleEntry(i))
			cancel()
			if err != nil {
				blocked = err
				break
			}
			accepted++
		}
		require.ErrorIs(t, blocked, ErrQueueFull)
		require.ErrorIs(t, blocked, context.DeadlineExceeded)

		// A blocked Record goes through once the writer makes room.
		done := make(chan error, 1)
		go func() { done <- s.Record(ctx, Entry{EventType: "e", Actor: "late"}) }()
		release()
		require.NoError(t, <-done)
		require.NoError(t, s.Flush(ctx))
		n, err := s.Count(ctx, Filter{})
		require.NoError(t, err)
		assert.Equal(t, int64(accepted+1), n)
	})
}
