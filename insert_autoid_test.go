package audit

import (
	"context"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// TestInsertIDsFollowTheChainHead covers both INSERTs of appendChain on
// every backend: while the table's largest ID is the chain head's, and
// after Prune emptied the table, when the database would number new rows
// from 1 again and the writer names their IDs itself.
func TestInsertIDsFollowTheChainHead(t *testing.T) {
	ctx := context.Background()
	forEachBackend(t, func(t *testing.T, st *backend) {
		s := st.service(t)
		recordN(t, s, 0, 5)
		ids := func() []int64 {
			t.Helper()
			es, err := s.List(ctx, Filter{})
			require.NoError(t, err)
			out := make([]int64, len(es))
			for i, e := range es {
				out[i] = e.ID
			}
			return out
		}
		require.Equal(t, []int64{1, 2, 3, 4, 5}, ids())

		n, err := s.Prune(ctx, sampleEntry(0).Time.Add(time.Hour))
		require.NoError(t, err)
		require.EqualValues(t, 5, n)
		require.Empty(t, ids())

		recordN(t, s, 5, 3)
		require.Equal(t, []int64{6, 7, 8}, ids(), "IDs continue after the pruned ones")
		recordN(t, s, 8, 2)
		require.Equal(t, []int64{6, 7, 8, 9, 10}, ids())
		rep, err := s.Verify(ctx)
		require.NoError(t, err)
		require.EqualValues(t, 5, rep.Entries)
		require.EqualValues(t, 10, rep.LastID)
	})
}
