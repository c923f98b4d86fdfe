package audit

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/cleveragents/audit/internal/testutil"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// watchedService records n entries into a new file and returns the service,
// the file's path, the head it had then, and the service's log.
func watchedService(t *testing.T, n int) (*AuditService, string, VerifyReport, *testutil.LogBuffer) {
	t.Helper()
	ctx := context.Background()
	path := testutil.TempDB(t)
	logs := &testutil.LogBuffer{}
	s := newServiceAt(t, WithSQLite(path), WithLogger(logs.JSONLogger()))
	recordN(t, s, 0, n)
	rep, err := s.Verify(ctx)
	require.NoError(t, err)
	return s, path, rep, logs
}

// requireContinued checks the file at path: it holds exactly the entries
// recorded after the old head, and its chain continues from that head.
func requireContinued(t *testing.T, path string, old VerifyReport, n int) {
	t.Helper()
	ctx := context.Background()
	s := newServiceAt(t, WithSQLite(path))
	rep, err := s.Verify(ctx)
	require.NoError(t, err, "the new file verifies")
	assert.Equal(t, int64(n), rep.Entries)
	assert.Equal(t, old.LastID+1, rep.FirstID, "IDs continue")
	first, err := s.Get(ctx, rep.FirstID)
	require.NoError(t, err)
	assert.Equal(t, old.Head, first.PrevHash, "the chain continues from the old head")
	list, err := s.List(ctx, Filter{Limit: MaxListLimit})
	require.NoError(t, err)
	require.Len(t, list, n)
	for i, e := range list {
		assert.Equal(t, fmt.Sprintf("req-%d", 100+i), e.RequestID, "in order")
	}
}

func TestDeletedFileIsDetectedBeforeTheNextBatch(t *testing.T) {
	ctx := context.Background()
	s, path, old, logs := watchedService(t, 10)
	require.NoError(t, os.Remove(path)) // the -wal and -shm stay, as an operator's rm audit.db leaves them

	recordN(t, s, 100, 20)
	assert.Equal(t, uint64(1), s.Stats().Failures, "the replacement is counted")
	assert.Contains(t, logs.String(), "deleted or replaced")
	n, err := s.Count(ctx, Filter{})
	require.NoError(t, err)
	assert.Equal(t, int64(20), n, "the service reads the new file")
	requireContinued(t, path, old, 20)
}

func TestDeletedFileIsDetectedWhileIdle(t *testing.T) {
	s, path, old, logs := watchedService(t, 10)
	require.NoError(t, os.Remove(path))
	testutil.WaitFor(t, 3*fileCheckEvery, func() bool { return s.Stats().Failures == 1 }, "detection by the idle writer")
	assert.Contains(t, logs.String(), `"head_id":10`)

	recordN(t, s, 100, 5)
	requireContinued(t, path, old, 5)
}

func TestReplacedByAnEmptyFile(t *testing.T) {
	s, path, old, _ := watchedService(t, 10)
	empty := filepath.Join(t.TempDir(), "empty.db")
	require.NoError(t, os.WriteFile(empty, nil, 0o644))
	require.NoError(t, os.Rename(empty, path))

	recordN(t, s, 100, 7)
	requireContinued(t, path, old, 7)
}

func TestReplacedByAnotherLogIsRefused(t *testing.T) {
	ctx := context.Background()
	s, path, old, logs := watchedService(t, 10)

	// Another log, with a chain of its own, takes the path.
	foreign := filepath.Join(t.TempDir(), "foreign.db")
	f, err := New(WithSQLite(foreign))
	require.NoError(t, err)
	queueN(t, f, 0, 3)
	require.NoError(t, f.Close())
	require.NoError(t, os.Rename(foreign, path))

	queueN(t, s, 100, 4)
	testutil.WaitFor(t, 10*time.Second, func() bool { return s.Stats().Failures >= 3 }, "refused writes")
	assert.Contains(t, logs.String(), "holds another log")
	assert.Equal(t, 4, s.Stats().Queued, "the entries wait; none went to either file")

	// The operator removes the stranger: writing resumes, continuing the chain.
	require.NoError(t, os.Remove(path))
	fctx, cancel := context.WithTimeout(ctx, 15*time.Second)
	defer cancel()
	require.NoError(t, s.Flush(fctx))
	requireContinued(t, path, old, 4)
}
