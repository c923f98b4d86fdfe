package audit

import (
	"context"
	"os"
	"testing"
	"time"

	"github.com/cleveragents/audit/internal/testutil"
	"github.com/stretchr/testify/require"
)

// TestWALCheckpointedBesideTheWriter: after walCheckpointEntries entries,
// far fewer than SQLite's autocheckpoint threshold of the writer's
// connection needs, the WAL's pages reach the database file, copied by the
// writer's background checkpoint, while the service runs.
func TestWALCheckpointedBesideTheWriter(t *testing.T) {
	ctx := context.Background()
	s, path := newService(t, WithLogger(testutil.Discard()))
	require.NoError(t, s.Ping(ctx))
	size := func(p string) int64 {
		fi, err := os.Stat(p)
		if err != nil {
			return 0
		}
		return fi.Size()
	}
	before := size(path)
	recordN(t, s, 0, walCheckpointEntries/2)
	wal := size(path + "-wal")
	require.Greater(t, wal, int64(1<<20), "the entries are in the WAL")
	require.Less(t, wal, int64(sqliteCheckpointPages)*4096, "below the autocheckpoint threshold")
	require.Equal(t, before, size(path), "not checkpointed yet")

	recordN(t, s, walCheckpointEntries/2, walCheckpointEntries)
	testutil.WaitFor(t, 30*time.Second, func() bool { return size(path) > before+wal/2 },
		"the background checkpoint copies the WAL into the database")
	n, err := s.Count(ctx, Filter{})
	require.NoError(t, err)
	require.EqualValues(t, walCheckpointEntries*3/2, n)
	require.NoError(t, s.Close())
}
