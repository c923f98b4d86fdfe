package main

import (
	"fmt"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestPrune(t *testing.T) {
	cutoff := "2020-01-01T00:05:30Z" // after entries 1..5

	t.Run("--yes prunes without asking", func(t *testing.T) {
		path := makeDB(t, 10)
		r := runCLI(t, "", "--db", path, "prune", "--before", cutoff, "--yes")
		require.Equal(t, 0, r.code, r)
		assert.Equal(t, "pruned 5 entries before 2020-01-01T00:05:30Z\n", r.stdout)
		assert.NotContains(t, r.stderr, "[y/N]")
		left := entries(t, path)
		require.Len(t, left, 5)
		assert.Equal(t, int64(6), left[0].ID)
		r = runCLI(t, "", "--db", path, "verify")
		assert.Equal(t, 0, r.code, "pruning is not tampering: %s", r)
	})

	for _, answer := range []string{"y\n", "yes\n", "Y"} {
		t.Run(fmt.Sprintf("answering %q prunes", answer), func(t *testing.T) {
			path := makeDB(t, 10)
			r := runCLI(t, answer, "--db", path, "prune", "--before", cutoff)
			require.Equal(t, 0, r.code, r)
			assert.Contains(t, r.stderr, "Prune entries before 2020-01-01T00:05:30Z? [y/N]")
			assert.Contains(t, r.stdout, "pruned 5 entries")
			assert.Len(t, entries(t, path), 5)
		})
	}

	for _, answer := range []string{"n\n", "\n", "", "maybe\n"} {
		t.Run(fmt.Sprintf("answering %q prunes nothing and exits 1", answer), func(t *testing.T) {
			path := makeDB(t, 10)
			r := runCLI(t, answer, "--db", path, "prune", "--before", cutoff)
			require.Equal(t, 1, r.code, r)
			assert.Contains(t, r.stderr, "[y/N]")
			assert.Contains(t, r.stderr, "nothing deleted")
			assert.Empty(t, r.stdout)
			assert.Len(t, entries(t, path), 10)
		})
	}

	t.Run("a duration prunes relative to now", func(t *testing.T) {
		path := makeDB(t, 10) // all in 2020
		r := runCLI(t, "", "--db", path, "prune", "--before", "24h", "-y")
		require.Equal(t, 0, r.code, r)
		assert.Contains(t, r.stdout, "pruned 10 entries")
		assert.Empty(t, entries(t, path))
	})
}
