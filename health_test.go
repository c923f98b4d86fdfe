package audit

import (
	"context"
	"testing"
	"time"

	"github.com/cleveragents/audit/internal/testutil"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"gorm.io/driver/postgres"
)

// Stats tells how the pipeline is doing: when it last committed and how
// long that took, how long the oldest waiting entry has waited, and the
// writer's last failure while it fails.
func TestStatsHealthFigures(t *testing.T) {
	ctx := context.Background()
	s, path := newService(t)
	require.Zero(t, s.Stats().LastCommit, "nothing committed yet")
	before := time.Now()
	recordN(t, s, 0, 3)
	st := s.Stats()
	assert.False(t, st.LastCommit.Before(before), "LastCommit is this run's")
	assert.Positive(t, st.CommitLatency)
	assert.Zero(t, st.OldestUncommitted, "nothing waits")
	assert.NoError(t, st.LastWriteError)
	require.NoError(t, s.Healthy(ctx))

	release := testutil.HoldWriteLock(t, path)
	accepted := time.Now()
	require.NoError(t, s.Record(ctx, sampleEntry(9)))
	testutil.WaitFor(t, 30*time.Second, func() bool { return s.Stats().LastWriteError != nil }, "the writer's first failure")
	st = s.Stats()
	assert.False(t, st.OldestUncommitted.IsZero())
	assert.False(t, st.OldestUncommitted.Before(accepted), "the waiting entry's acceptance")
	err := s.Healthy(ctx)
	require.Error(t, err, "unhealthy while the writer fails with an entry waiting")
	assert.Contains(t, err.Error(), "the writer is failing with 1 entries waiting")

	release()
	require.NoError(t, s.Flush(ctx))
	assert.NoError(t, s.Healthy(ctx), "healthy again once the writer commits")
	st = s.Stats()
	assert.Zero(t, st.OldestUncommitted)
	assert.NoError(t, st.LastWriteError)
}

// Healthy turns unhealthy when the database goes away and healthy again
// when it returns (a real server, stopped and started).
func TestHealthyFollowsTheDatabase(t *testing.T) {
	srv := startPostgres(t)
	s := newServiceAt(t, WithDialector(postgres.Open(srv.dsn())), WithLogger(testutil.Discard()))
	ctx := context.Background()
	require.NoError(t, s.Healthy(ctx))
	srv.stop(t)
	err := s.Healthy(ctx)
	require.Error(t, err, "the server is down")
	assert.Contains(t, err.Error(), "does not answer")
	srv.start(t)
	testutil.WaitFor(t, 30*time.Second, func() bool { return s.Healthy(ctx) == nil }, "healthy once the server is back")
}
