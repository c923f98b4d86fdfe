package main

import (
	"crypto/sha256"
	"database/sql"
	"os"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// The read commands open the log read-only: on a 0444 file in a 0555
// directory, in rollback-journal mode and in WAL mode, they work, and the
// file stays byte for byte as it was, with no -wal or -shm file made.
func TestReadersDoNotWrite(t *testing.T) {
	for _, mode := range []string{"delete", "wal"} {
		t.Run(mode, func(t *testing.T) {
			src := makeDB(t, 30)
			dir := filepath.Join(t.TempDir(), "ro")
			require.NoError(t, os.Mkdir(dir, 0o755))
			path := filepath.Join(dir, "audit.db")
			b, err := os.ReadFile(src)
			require.NoError(t, err)
			require.NoError(t, os.WriteFile(path, b, 0o644))
			db, err := sql.Open("sqlite3", path)
			require.NoError(t, err)
			var got string
			require.NoError(t, db.QueryRow("PRAGMA journal_mode = "+mode).Scan(&got))
			require.Equal(t, mode, got)
			require.NoError(t, db.Close())
			for _, side := range []string{"-wal", "-shm", "-journal"} {
				require.NoFileExists(t, path+side)
			}
			before, err := os.ReadFile(path)
			require.NoError(t, err)
			require.NoError(t, os.Chmod(path, 0o444))
			require.NoError(t, os.Chmod(dir, 0o555))
			t.Cleanup(func() { _ = os.Chmod(dir, 0o755) })

			out := filepath.Join(t.TempDir(), "export.jsonl")
			for _, args := range [][]string{
				{"list"}, {"count"}, {"verify"}, {"stats"}, {"export", "--format", "jsonl", "--out", out},
			} {
				r := runCLI(t, "", append([]string{"--db", path}, args...)...)
				require.Equal(t, 0, r.code, "%v: %s", args, r)
			}
			after, err := os.ReadFile(path)
			require.NoError(t, err)
			assert.Equal(t, sha256.Sum256(before), sha256.Sum256(after), "the log is byte-identical")
			for _, side := range []string{"-wal", "-shm", "-journal"} {
				assert.NoFileExists(t, path+side, "a reader made a %s file", side)
			}
		})
	}
}
