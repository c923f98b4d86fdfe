package audit

import (
	"context"
	"testing"
	"time"

	"github.com/cleveragents/audit/internal/testutil"
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

// TestInsertIDsOnAnAutoincrementTable: a table created beforehand with
// AUTOINCREMENT numbers rows after the highest ID it ever gave, not after
// the largest present. The first batch that gets IDs other than the
// chain's is rolled back and retried with the IDs named, as is every
// batch after it.
func TestInsertIDsOnAnAutoincrementTable(t *testing.T) {
	ctx := context.Background()
	path := testutil.TempDB(t)
	raw := testutil.RawDB(t, path)
	_, err := raw.Exec(`CREATE TABLE audit_entries (id INTEGER PRIMARY KEY AUTOINCREMENT, time TEXT NOT NULL,
		event_type TEXT NOT NULL, actor TEXT NOT NULL, resource TEXT NOT NULL DEFAULT '', outcome TEXT NOT NULL DEFAULT '',
		request_id TEXT NOT NULL DEFAULT '', details TEXT, prev_hash TEXT NOT NULL, hash TEXT NOT NULL)`)
	require.NoError(t, err)
	s := newServiceAt(t, WithSQLite(path), WithLogger(testutil.Discard()))
	recordN(t, s, 0, 3)
	_, err = raw.Exec(`UPDATE sqlite_sequence SET seq = 100 WHERE name = 'audit_entries'`)
	require.NoError(t, err)

	recordN(t, s, 3, 2)
	recordN(t, s, 5, 1)
	es, err := s.List(ctx, Filter{})
	require.NoError(t, err)
	var ids []int64
	for _, e := range es {
		ids = append(ids, e.ID)
	}
	require.Equal(t, []int64{1, 2, 3, 4, 5, 6}, ids)
	require.EqualValues(t, 1, s.Stats().Failures, "one batch was rolled back and retried")
	rep, err := s.Verify(ctx)
	require.NoError(t, err)
	require.EqualValues(t, 6, rep.Entries)
}
