package audit

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"testing"

	"github.com/cleveragents/audit/internal/testutil"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// TestSQLitePathWithParameters uses WithSQLite with go-sqlite3 DSN
// parameters after the path: the service records, flushes and reads back
// through it, the file is the path before '?', and the file watch still
// notices that file being replaced, continuing the chain in the new one.
func TestSQLitePathWithParameters(t *testing.T) {
	for _, form := range []string{"%s?_cache_size=-8000", "file:%s?_cache_size=-8000&_foreign_keys=1"} {
		t.Run(form, func(t *testing.T) {
			ctx := context.Background()
			path := testutil.TempDB(t)
			logs := &testutil.LogBuffer{}
			s := newServiceAt(t, WithSQLite(fmt.Sprintf(form, path)), WithLogger(logs.JSONLogger()))
			queueN(t, s, 0, 10)
			require.NoError(t, s.Flush(ctx))
			list, err := s.List(ctx, Filter{})
			require.NoError(t, err)
			require.Len(t, list, 10)
			for i, e := range list {
				assert.Equal(t, fmt.Sprintf("req-%d", i), e.RequestID)
			}
			old, err := s.Verify(ctx)
			require.NoError(t, err)
			assert.Equal(t, int64(10), old.Entries)
			names, err := filepath.Glob(filepath.Join(filepath.Dir(path), "*"))
			require.NoError(t, err)
			for _, n := range names {
				assert.NotContains(t, n, "?", "no file is named after the parameters")
			}
			assert.Zero(t, s.Stats().Failures)

			// Replace the file: the watch stats the path, not the DSN.
			require.NoError(t, os.Remove(path))
			queueN(t, s, 100, 5)
			require.NoError(t, s.Flush(ctx))
			assert.Equal(t, uint64(1), s.Stats().Failures, "the replacement is noticed, once")
			assert.Contains(t, logs.String(), "deleted or replaced")
			requireContinued(t, path, old, 5)
		})
	}
}
