package audit

import (
	"context"
	"crypto/sha256"
	"database/sql"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/cleveragents/audit/internal/testutil"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// fileSum returns the SHA-256 of the file at path.
func fileSum(t *testing.T, path string) [32]byte {
	t.Helper()
	b, err := os.ReadFile(path)
	require.NoError(t, err)
	return sha256.Sum256(b)
}

// A read-only service reads a log in either journal mode, on a 0444 file
// in a 0555 directory, and leaves the file byte for byte as it was, with
// no -wal or -shm file made beside it.
func TestReadOnlyTouchesNothing(t *testing.T) {
	for _, mode := range []string{"wal", "delete"} {
		t.Run(mode, func(t *testing.T) {
			ctx := context.Background()
			dir := filepath.Join(t.TempDir(), "logs")
			require.NoError(t, os.Mkdir(dir, 0o755))
			path := filepath.Join(dir, "audit.db")
			w := newServiceAt(t, WithSQLite(path))
			recordN(t, w, 0, 5)
			require.NoError(t, w.Close())
			if mode == "delete" {
				db, err := sql.Open("sqlite3", path)
				require.NoError(t, err)
				var got string
				require.NoError(t, db.QueryRow("PRAGMA journal_mode = DELETE").Scan(&got))
				require.Equal(t, "delete", got)
				require.NoError(t, db.Close())
			}
			for _, side := range []string{"-wal", "-shm", "-journal"} {
				require.NoFileExists(t, path+side)
			}
			before := fileSum(t, path)
			require.NoError(t, os.Chmod(path, 0o444))
			require.NoError(t, os.Chmod(dir, 0o555))
			t.Cleanup(func() { _ = os.Chmod(dir, 0o755) })

			r := newServiceAt(t, WithSQLite(path), WithReadOnly())
			require.NoError(t, r.Ping(ctx))
			n, err := r.Count(ctx, Filter{})
			require.NoError(t, err)
			assert.Equal(t, int64(5), n)
			got, err := r.List(ctx, Filter{})
			require.NoError(t, err)
			assert.Len(t, got, 5)
			rep, err := r.Verify(ctx)
			require.NoError(t, err)
			assert.Equal(t, int64(5), rep.Entries)
			assert.ErrorIs(t, r.Record(ctx, sampleEntry(9)), ErrReadOnly)
			_, err = r.Prune(ctx, time.Now())
			assert.ErrorIs(t, err, ErrReadOnly)
			require.NoError(t, r.Close())

			assert.Equal(t, before, fileSum(t, path), "the file is byte-identical")
			for _, side := range []string{"-wal", "-shm", "-journal"} {
				assert.NoFileExists(t, path+side, "reading made a %s file", side)
			}
		})
	}
}

// A read-only service creates no missing table: it says what is missing.
func TestReadOnlyMissingTable(t *testing.T) {
	path := testutil.TempDB(t)
	db, err := sql.Open("sqlite3", path)
	require.NoError(t, err)
	_, err = db.Exec("CREATE TABLE other (x)")
	require.NoError(t, err)
	require.NoError(t, db.Close())
	before := fileSum(t, path)

	r := newServiceAt(t, WithSQLite(path), WithReadOnly())
	_, err = r.Count(context.Background(), Filter{})
	require.Error(t, err)
	assert.Contains(t, err.Error(), `the log has no "audit_entries" table`)
	assert.Contains(t, err.Error(), path)
	require.NoError(t, r.Close())
	assert.Equal(t, before, fileSum(t, path), "nothing was created")
}

func TestReadOnlyRefusesRetention(t *testing.T) {
	_, err := New(WithSQLite(testutil.TempDB(t)), WithReadOnly(), WithRetention(time.Hour))
	require.Error(t, err)
	assert.Contains(t, err.Error(), "WithReadOnly")
}
