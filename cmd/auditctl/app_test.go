package main

import (
	"bytes"
	"os"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestOpenErrors(t *testing.T) {
	dir := t.TempDir()
	missing := filepath.Join(dir, "missing.db")
	garbage := filepath.Join(dir, "garbage.db")
	require.NoError(t, os.WriteFile(garbage, bytes.Repeat([]byte("not a database "), 100), 0o600))
	path := makeDB(t, 1)

	for _, tc := range []struct {
		name string
		args []string
		want string
	}{
		{"a missing database", []string{"--db", missing, "verify"}, "does not exist"},
		{"a missing database for list", []string{"--db", missing, "list"}, "does not exist"},
		{"a directory", []string{"--db", dir, "count"}, "is a directory"},
		{"a file that is not a database", []string{"--db", garbage, "verify"}, "not a database"},
		{"a table that does not exist", []string{"--db", path, "--table", "audit_entires", "verify"}, `no table "audit_entires"`},
		{"an unknown driver", []string{"--driver", "mysql", "count"}, "want sqlite or postgres"},
		{"postgres without --dsn", []string{"--driver", "postgres", "count"}, "needs --dsn"},
		{"--dsn without postgres", []string{"--dsn", "host=x", "count"}, "--dsn needs --driver postgres"},
	} {
		t.Run(tc.name+" exits 2", func(t *testing.T) {
			r := runCLI(t, "", tc.args...)
			require.Equal(t, 2, r.code, r)
			assert.Contains(t, r.stderr, tc.want)
			assert.Empty(t, r.stdout)
		})
	}
	assert.NoFileExists(t, missing, "auditctl must not create a missing database")
	assert.Equal(t, 1, len(entries(t, path)), "nor touch an existing one's entries")
}

func TestUsageErrors(t *testing.T) {
	path := makeDB(t, 1)
	for _, tc := range []struct {
		name string
		args []string
		want string
	}{
		{"an unknown flag", []string{"--db", path, "list", "--bogus"}, "unknown flag: --bogus"},
		{"an unknown command", []string{"--db", path, "frobnicate"}, `unknown command "frobnicate"`},
		{"a stray argument", []string{"--db", path, "count", "extra"}, "unknown command"},
		{"no command", []string{"--db", path}, "missing command"},
		{"a bad --since", []string{"--db", path, "list", "--since", "yesterday"}, "--since"},
		{"a negative duration", []string{"--db", path, "count", "--until", "-5h"}, "must not be negative"},
		{"a negative --limit", []string{"--db", path, "list", "--limit", "-1"}, "--limit"},
		{"a non-numeric --limit", []string{"--db", path, "list", "--limit", "ten"}, "--limit"},
		{"an unknown export format", []string{"--db", path, "export", "--format", "xml"}, `--format "xml"`},
		{"prune without --before", []string{"--db", path, "prune", "--yes"}, `"before" not set`},
		{"a bad --before", []string{"--db", path, "prune", "--before", "soon", "--yes"}, "--before"},
	} {
		t.Run(tc.name+" exits 2", func(t *testing.T) {
			r := runCLI(t, "", tc.args...)
			require.Equal(t, 2, r.code, r)
			assert.Contains(t, r.stderr, tc.want)
		})
	}
	assert.Equal(t, 1, len(entries(t, path)), "prune --yes with a bad --before deletes nothing")
}
