package audit

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/cleveragents/audit/internal/testutil"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"gorm.io/driver/postgres"
)

// hangLimit bounds the waits of these tests: it detects a hang, and is no
// timing goal.
const hangLimit = 20 * time.Second

// TestShutdownBoundsCloseThatWaits makes the database unreachable, starts
// Close (which waits for it, for as long as it takes) and then calls
// Shutdown with a 100 ms deadline: Shutdown must return, with the count of
// the entries not committed, each of them logged as a JSON line, and the
// waiting Close must return the same result. On SQLite another connection
// holds the write lock; on PostgreSQL the server is stopped.
func TestShutdownBoundsCloseThatWaits(t *testing.T) {
	t.Run("sqlite write lock held", func(t *testing.T) {
		path := testutil.TempDB(t)
		requireShutdownBoundsClose(t, []Option{WithSQLite(path)}, func() { testutil.HoldWriteLock(t, path) })
	})
	t.Run("postgres server stopped", func(t *testing.T) {
		if testing.Short() {
			t.Skip("starts a PostgreSQL server")
		}
		srv := startPostgres(t)
		requireShutdownBoundsClose(t, []Option{WithDialector(postgres.Open(srv.dsn()))}, func() { srv.stop(t) })
	})
}

func requireShutdownBoundsClose(t *testing.T, opts []Option, cut func()) {
	t.Helper()
	ctx := context.Background()
	logs := &testutil.LogBuffer{}
	s, err := New(append(opts, WithLogger(logs.JSONLogger()))...)
	require.NoError(t, err)
	t.Cleanup(func() {
		sctx, cancel := context.WithTimeout(ctx, time.Second)
		defer cancel()
		_ = s.Shutdown(sctx) // in case the test failed before its own
	})
	require.NoError(t, s.Record(ctx, sampleEntry(0)))
	require.NoError(t, s.Flush(ctx), "the database works before the cut")

	cut()
	const uncommitted = 5
	for i := 1; i <= uncommitted; i++ {
		require.NoError(t, s.Record(ctx, sampleEntry(i)))
	}
	closed := make(chan error, 1)
	go func() { closed <- s.Close() }()
	testutil.WaitFor(t, hangLimit, s.in.isClosed, "Close to begin")
	select {
	case err := <-closed:
		t.Fatalf("Close returned while the database is unreachable: %v", err)
	default:
	}

	sctx, cancel := context.WithTimeout(ctx, 100*time.Millisecond)
	defer cancel()
	shut := make(chan error, 1)
	go func() { shut <- s.Shutdown(sctx) }()
	var shutErr error
	select {
	case shutErr = <-shut:
	case <-time.After(hangLimit):
		t.Fatal("Shutdown with a 100 ms deadline did not return while an earlier Close waits")
	}
	require.Error(t, shutErr)
	assert.Contains(t, shutErr.Error(), fmt.Sprintf("audit: shutdown: %d entries not committed", uncommitted))
	assert.ErrorIs(t, shutErr, context.DeadlineExceeded)

	select {
	case err := <-closed:
		assert.Equal(t, shutErr, err, "the earlier Close returns the same result")
	case <-time.After(hangLimit):
		t.Fatal("Close did not return after Shutdown gave up the drain")
	}
	assert.Equal(t, 0, s.Stats().Queued)

	// Every uncommitted entry is one JSON line of the log.
	found := map[string]bool{}
	for _, line := range strings.Split(strings.TrimSpace(logs.String()), "\n") {
		var rec struct {
			Msg   string `json:"msg"`
			Entry string `json:"entry"`
		}
		require.NoError(t, json.Unmarshal([]byte(line), &rec), line)
		if rec.Msg != "audit: entry not committed" {
			continue
		}
		var e struct {
			RequestID string `json:"request_id"`
		}
		require.NoError(t, json.Unmarshal([]byte(rec.Entry), &e), rec.Entry)
		found[e.RequestID] = true
	}
	want := map[string]bool{}
	for i := 1; i <= uncommitted; i++ {
		want[fmt.Sprintf("req-%d", i)] = true
	}
	assert.Equal(t, want, found)
}
