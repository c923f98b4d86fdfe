package main

import (
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestStats(t *testing.T) {
	t.Run("a log with entries", func(t *testing.T) {
		path := makeDB(t, 10)
		all := entries(t, path)
		r := runCLI(t, "", "--db", path, "stats")
		require.Equal(t, 0, r.code, r)
		assert.Contains(t, r.stdout, "entries: 10\n")
		assert.Contains(t, r.stdout, "first:   ID 1 at 2020-01-01T00:01:00Z\n")
		assert.Contains(t, r.stdout, "last:    ID 10 at 2020-01-01T00:10:00Z\n")
		assert.Contains(t, r.stdout, "head:    "+all[9].Hash+"\n")
		assert.Regexp(t, `size:    [0-9.]+ [KMG]?i?B \(database [1-9][0-9]* \+ wal [0-9]+ bytes\)`, r.stdout)
	})

	t.Run("after a prune, the first entry moves", func(t *testing.T) {
		path := makeDB(t, 10)
		require.Equal(t, 0, runCLI(t, "", "--db", path, "prune", "--before", "2020-01-01T00:03:30Z", "--yes").code)
		r := runCLI(t, "", "--db", path, "stats")
		require.Equal(t, 0, r.code, r)
		assert.Contains(t, r.stdout, "entries: 7\n")
		assert.Contains(t, r.stdout, "first:   ID 4 at 2020-01-01T00:04:00Z\n")
	})

	t.Run("an empty log", func(t *testing.T) {
		path := makeDB(t, 0)
		r := runCLI(t, "", "--db", path, "stats")
		require.Equal(t, 0, r.code, r)
		assert.Contains(t, r.stdout, "entries: 0\n")
		assert.Contains(t, r.stdout, "first:   -\n")
		assert.Contains(t, r.stdout, "head:    - (empty log)\n")
	})

	t.Run("a missing database exits 2", func(t *testing.T) {
		r := runCLI(t, "", "--db", filepath.Join(t.TempDir(), "nope.db"), "stats")
		require.Equal(t, 2, r.code, r)
		assert.Contains(t, r.stderr, "does not exist")
	})
}

func TestHumanBytes(t *testing.T) {
	for n, want := range map[int64]string{0: "0 B", 1023: "1023 B", 1024: "1.0 KiB", 1536: "1.5 KiB", 5 << 20: "5.0 MiB", 3 << 30: "3.0 GiB"} {
		assert.Equal(t, want, humanBytes(n), n)
	}
}
