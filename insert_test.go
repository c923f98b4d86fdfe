package audit

import (
	"context"
	"testing"

	"github.com/stretchr/testify/require"
)

// TestPerfBigBatchesRoundTrip covers insertBatch's paths: batches of
// several full INSERT chunks (prepared once on SQLite) with a partial one
// after them, read back in order and verified, on every backend.
func TestPerfBigBatchesRoundTrip(t *testing.T) {
	ctx := context.Background()
	forEachBackend(t, func(t *testing.T, st *backend) {
		const batch, n = 3*insertChunk + 100, 2*(3*insertChunk+100) + 7
		s := st.service(t, WithBatchSize(batch))
		_, err := s.Count(ctx, Filter{}) // open, so that the lock below is the only obstacle
		require.NoError(t, err)
		release := st.holdWriteLock(t)
		queueN(t, s, 0, n)
		release()
		require.NoError(t, s.Flush(ctx))
		require.LessOrEqual(t, s.Stats().Batches, uint64(4), "the entries went in big batches")

		var got []Entry
		for f := (Filter{Limit: MaxListLimit}); ; {
			page, err := s.List(ctx, f)
			require.NoError(t, err)
			if len(page) == 0 {
				break
			}
			got = append(got, page...)
			f.AfterID = page[len(page)-1].ID
		}
		require.Len(t, got, n)
		for i, e := range got {
			want := sampleEntry(i)
			require.Equal(t, int64(i+1), e.ID)
			require.Equal(t, want.RequestID, e.RequestID, "entry %d in order", i)
			require.True(t, want.Time.Equal(e.Time))
		}
		rep, err := s.Verify(ctx)
		require.NoError(t, err)
		require.Equal(t, int64(n), rep.Entries)
	})
}
