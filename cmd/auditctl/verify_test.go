package main

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/cleveragents/audit"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestVerify(t *testing.T) {
	t.Run("an intact chain exits 0 and prints the report and head", func(t *testing.T) {
		path := makeDB(t, 10)
		head := entries(t, path)[9].Hash
		r := runCLI(t, "", "--db", path, "verify")
		require.Equal(t, 0, r.code, r)
		assert.Contains(t, r.stdout, "entries:  10\n")
		assert.Contains(t, r.stdout, "first ID: 1\n")
		assert.Contains(t, r.stdout, "last ID:  10\n")
		assert.Contains(t, r.stdout, "head:     "+head+"\n")
		assert.Contains(t, r.stdout, "OK")
		assert.Empty(t, r.stderr)
	})

	t.Run("the right --head exits 0, in either case", func(t *testing.T) {
		path := makeDB(t, 10)
		head := entries(t, path)[9].Hash
		for _, h := range []string{head, strings.ToUpper(head)} {
			r := runCLI(t, "", "--db", path, "verify", "--head", h)
			require.Equal(t, 0, r.code, r)
			assert.Contains(t, r.stdout, "its head is --head")
		}
	})

	t.Run("a wrong --head exits 1", func(t *testing.T) {
		path := makeDB(t, 10)
		r := runCLI(t, "", "--db", path, "verify", "--head", strings.Repeat("ab", 32))
		require.Equal(t, 1, r.code, r)
		assert.Contains(t, r.stderr, "head mismatch")
		assert.Contains(t, r.stdout, "HEAD MISMATCH")
	})

	t.Run("a --head published before later entries exits 0", func(t *testing.T) {
		path := makeDB(t, 10)
		published := entries(t, path)[6].Hash // entry 7's
		r := runCLI(t, "", "--db", path, "verify", "--head", published)
		require.Equal(t, 0, r.code, r)
		assert.Contains(t, r.stdout, "entry 7's hash; 3 entries were added after it")
	})

	t.Run("a truncated log verifies, but not against the --head published before", func(t *testing.T) {
		path := makeDB(t, 10)
		all := entries(t, path)
		published := all[9].Hash
		// Remove the newest two entries and rewrite the chain head to match.
		execSQL(t, path,
			`DELETE FROM audit_entries WHERE id > 8`,
			fmt.Sprintf(`UPDATE audit_chain_heads SET last_id = 8, last_hash = '%s'`, all[7].Hash),
			`UPDATE audit_tree_heads SET size = 8`, // and the tree's size, which Verify checks
		)
		r := runCLI(t, "", "--db", path, "verify")
		require.Equal(t, 0, r.code, r)
		r = runCLI(t, "", "--db", path, "verify", "--head", published)
		require.Equal(t, 1, r.code, r)
		assert.Contains(t, r.stderr, "head mismatch")
	})

	t.Run("a malformed --head is a usage error", func(t *testing.T) {
		path := makeDB(t, 1)
		r := runCLI(t, "", "--db", path, "verify", "--head", "xyz")
		require.Equal(t, 2, r.code, r)
		assert.Contains(t, r.stderr, "64 hex digits")
	})

	t.Run("a tampered entry exits 1 naming its ID", func(t *testing.T) {
		path := makeDB(t, 10)
		execSQL(t, path, `UPDATE audit_entries SET actor = 'mallory' WHERE id = 5`)
		r := runCLI(t, "", "--db", path, "verify")
		require.Equal(t, 1, r.code, r)
		assert.Contains(t, r.stderr, "ID 5")
		assert.Contains(t, r.stderr, "chain verification failed")
		assert.Contains(t, r.stdout, "TAMPERED: 4 entries checked")
	})

	t.Run("a deleted middle entry exits 1 naming the next ID", func(t *testing.T) {
		path := makeDB(t, 10)
		execSQL(t, path, `DELETE FROM audit_entries WHERE id = 6`)
		r := runCLI(t, "", "--db", path, "verify")
		require.Equal(t, 1, r.code, r)
		assert.Contains(t, r.stderr, "ID 7")
	})

	t.Run("an empty log verifies", func(t *testing.T) {
		path := makeDB(t, 0)
		r := runCLI(t, "", "--db", path, "verify")
		require.Equal(t, 0, r.code, r)
		assert.Contains(t, r.stdout, "entries:  0\n")
		assert.Contains(t, r.stdout, "(empty log)")
	})
}

func TestVerifyKeyFile(t *testing.T) {
	key := []byte("s3cret\x00key\n") // any bytes, a trailing newline included
	path := makeDB(t, 5, audit.WithChainKey(key))
	dir := t.TempDir()
	good := filepath.Join(dir, "good.key")
	require.NoError(t, os.WriteFile(good, key, 0o600))
	bad := filepath.Join(dir, "bad.key")
	require.NoError(t, os.WriteFile(bad, []byte("s3cret\x00key"), 0o600))

	t.Run("the right key verifies", func(t *testing.T) {
		r := runCLI(t, "", "--db", path, "verify", "--key-file", good)
		require.Equal(t, 0, r.code, r)
		assert.Contains(t, r.stdout, "entries:  5\n")
	})
	t.Run("as a global flag before the command too", func(t *testing.T) {
		r := runCLI(t, "", "--key-file", good, "--db", path, "verify")
		require.Equal(t, 0, r.code, r)
	})
	t.Run("a wrong key exits 1 at the first entry", func(t *testing.T) {
		r := runCLI(t, "", "--db", path, "verify", "--key-file", bad)
		require.Equal(t, 1, r.code, r)
		assert.Contains(t, r.stderr, "ID 1")
		assert.Contains(t, r.stderr, "check that --key-file holds the chain key")
	})
	t.Run("no key exits 1 with a hint", func(t *testing.T) {
		r := runCLI(t, "", "--db", path, "verify")
		require.Equal(t, 1, r.code, r)
		assert.Contains(t, r.stderr, "ID 1")
		assert.Contains(t, r.stderr, "pass the chain key with --key-file")
	})
	t.Run("a missing key file exits 2", func(t *testing.T) {
		r := runCLI(t, "", "--db", path, "verify", "--key-file", filepath.Join(dir, "nope"))
		require.Equal(t, 2, r.code, r)
		assert.Contains(t, r.stderr, "--key-file")
	})
}
