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
	"gorm.io/driver/sqlite"
	"gorm.io/gorm"
)

func TestMissingDirectoryRecovered(t *testing.T) {
	ctx := context.Background()
	dir := filepath.Join(t.TempDir(), "later")
	s := newServiceAt(t, WithSQLite(filepath.Join(dir, "audit.db")), WithLogger(testutil.Discard()))
	queueN(t, s, 0, 20)
	testutil.WaitFor(t, 5*time.Second, func() bool { return s.Stats().Failures >= 2 }, "failed opens")
	assert.Equal(t, 20, s.Stats().Queued, "entries stay queued")
	_, err := os.Stat(dir)
	require.True(t, os.IsNotExist(err), "the library does not create directories")

	require.NoError(t, os.Mkdir(dir, 0o755))
	fctx, cancel := context.WithTimeout(ctx, 15*time.Second)
	defer cancel()
	require.NoError(t, s.Flush(fctx))
	list, err := s.List(ctx, Filter{})
	require.NoError(t, err)
	require.Len(t, list, 20)
	for i, e := range list {
		assert.Equal(t, fmt.Sprintf("req-%d", i), e.RequestID, "order kept")
	}
	_, err = s.Verify(ctx)
	require.NoError(t, err)
}

func TestWithDBIsNotClosed(t *testing.T) {
	ctx := context.Background()
	db, err := gorm.Open(sqlite.Open(testutil.TempDB(t)), &gorm.Config{})
	require.NoError(t, err)
	sqlDB, err := db.DB()
	require.NoError(t, err)
	defer sqlDB.Close()

	s, err := New(WithDB(db))
	require.NoError(t, err)
	require.NoError(t, s.Record(ctx, sampleEntry(0)))
	require.NoError(t, s.Close())

	var n int64
	require.NoError(t, db.Table(DefaultTable).Count(&n).Error, "the caller's db still works")
	assert.Equal(t, int64(1), n)
}

func TestOpeningAnExistingLogOnlyReads(t *testing.T) {
	ctx := context.Background()
	forEachBackend(t, func(t *testing.T, st *backend) {
		seed := st.service(t)
		recordAll(t, seed, sampleEntry(0))

		// With the write lock held elsewhere, a new service still opens and
		// reads at once: it finds the schema and creates nothing.
		release := st.holdWriteLock(t)
		defer release()
		s := st.service(t)
		qctx, cancel := context.WithTimeout(ctx, 2*time.Second)
		defer cancel()
		n, err := s.Count(qctx, Filter{})
		require.NoError(t, err)
		assert.Equal(t, int64(1), n)
		_, err = s.Verify(qctx)
		require.NoError(t, err)
	})
}

func TestReadOnlyDatabase(t *testing.T) {
	ctx := context.Background()
	s, path := newService(t)
	queueN(t, s, 0, 3)
	require.NoError(t, s.Close())

	ro := newServiceAt(t, WithDialector(sqlite.Open("file:"+path+"?mode=ro")))
	n, err := ro.Count(ctx, Filter{})
	require.NoError(t, err, "a read-only log can be queried")
	assert.Equal(t, int64(3), n)
	rep, err := ro.Verify(ctx)
	require.NoError(t, err)
	assert.Equal(t, int64(3), rep.Entries)
}
