package main

import (
	"bytes"
	"context"
	"net"
	"os"
	"path/filepath"
	"syscall"
	"testing"
	"time"

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

// TestOpenNonRegular: --db on a named pipe, a device or a socket is refused
// at once, naming the path; opening a pipe would wait for a writer for
// ever. The 20 s bound catches that hang; it is not a timing goal.
func TestOpenNonRegular(t *testing.T) {
	dir := t.TempDir()
	fifo := filepath.Join(dir, "fifo.db")
	require.NoError(t, syscall.Mkfifo(fifo, 0o600))
	sock := filepath.Join(dir, "sock.db")
	l, err := net.Listen("unix", sock)
	require.NoError(t, err)
	defer l.Close()
	for _, tc := range []struct{ name, path, want string }{
		{"a named pipe", fifo, "is a named pipe (FIFO), not a SQLite file"},
		{"a character device", os.DevNull, "is a character device, not a SQLite file"},
		{"a socket", sock, "is a socket, not a SQLite file"},
	} {
		for _, cmd := range []string{"list", "count", "verify", "export", "stats"} {
			t.Run(tc.name+" "+cmd, func(t *testing.T) {
				done := make(chan result, 1)
				go func() { done <- runCtx(t, context.Background(), "", "--db", tc.path, cmd) }()
				select {
				case r := <-done:
					require.Equal(t, exitUsage, r.code, r)
					assert.Contains(t, r.stderr, "auditctl: database "+tc.path+" "+tc.want)
					assert.Empty(t, r.stdout)
				case <-time.After(20 * time.Second):
					t.Fatalf("auditctl --db %s %s hangs", tc.path, cmd)
				}
			})
		}
	}
}
