//go:build !cgo

package audit

import (
	"context"
	"testing"
	"time"

	"github.com/cleveragents/audit/internal/testutil"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// Run with: CGO_ENABLED=0 go test -run NoCgo .

// TestNoCgoSQLiteOpenSaysCgoIsNeeded: built without cgo, mattn/go-sqlite3
// is a stub, and opening SQLite fails; the error says so and what to do,
// at once from Ping and from Flush, with mattn's own message kept.
func TestNoCgoSQLiteOpenSaysCgoIsNeeded(t *testing.T) {
	ctx := context.Background()
	s, err := New(WithSQLite(testutil.TempDB(t)), WithLogger(testutil.Discard()))
	require.NoError(t, err, "New does not touch the database")
	t.Cleanup(func() {
		sctx, cancel := context.WithTimeout(ctx, 100*time.Millisecond)
		defer cancel()
		_ = s.Shutdown(sctx) // the queued entry can never be written here
	})

	err = s.Ping(ctx)
	require.Error(t, err)
	for _, want := range []string{"SQLite needs cgo", "CGO_ENABLED=1", "WithSQLite", "go-sqlite3 requires cgo"} {
		assert.Contains(t, err.Error(), want)
	}
	assert.True(t, isPermanent(err))

	require.NoError(t, s.Record(ctx, sampleEntry(0)))
	fctx, cancel := context.WithTimeout(ctx, hangLimit)
	defer cancel()
	err = s.Flush(fctx)
	require.Error(t, err)
	assert.NotErrorIs(t, err, context.DeadlineExceeded, "Flush returns the permanent error, not its ctx's")
	assert.Contains(t, err.Error(), "CGO_ENABLED=1")
}
