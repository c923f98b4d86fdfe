package main

import (
	"context"
	"database/sql"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/cleveragents/audit"
	"github.com/cleveragents/audit/internal/testutil"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"gorm.io/driver/postgres"
)

func TestTail(t *testing.T) {
	path := makeDB(t, 25)
	tail := func(t *testing.T, args ...string) result {
		t.Helper()
		r := runCLI(t, "", append([]string{"--db", path, "tail"}, args...)...)
		require.Equal(t, 0, r.code, r)
		return r
	}
	tableIDs := func(t *testing.T, r result) []int64 {
		t.Helper()
		header, rows := tableRows(t, r.stdout)
		assert.Equal(t, "ID", strings.Fields(header)[0])
		return ids(t, rows)
	}

	t.Run("the last 10 entries, oldest first", func(t *testing.T) {
		assert.Equal(t, seq(16, 25), tableIDs(t, tail(t)))
	})
	t.Run("-n sets how many", func(t *testing.T) {
		assert.Equal(t, seq(23, 25), tableIDs(t, tail(t, "-n", "3")))
		assert.Equal(t, seq(1, 25), tableIDs(t, tail(t, "-n", "100")))
		r := tail(t, "-n", "0")
		assert.Empty(t, r.stdout)
		assert.Contains(t, r.stderr, "no entries match")
	})
	t.Run("--after prints exactly the entries after the ID", func(t *testing.T) {
		assert.Equal(t, seq(21, 25), tableIDs(t, tail(t, "--after", "20")))
		assert.Equal(t, seq(1, 25), tableIDs(t, tail(t, "--after", "0")))
		assert.Equal(t, seq(25, 25), tableIDs(t, tail(t, "--after", "24")))
		r := tail(t, "--after", "25")
		assert.Empty(t, r.stdout)
	})
	t.Run("--json prints list's objects", func(t *testing.T) {
		r := tail(t, "--json", "-n", "4")
		objs := jsonLines(t, r.stdout)
		require.Len(t, objs, 4)
		for k, obj := range objs {
			assertEntryJSON(t, 22+k, obj)
		}
		lr := runCLI(t, "", "--db", path, "list", "--json")
		require.Equal(t, 0, lr.code, lr)
		assert.True(t, strings.HasSuffix(lr.stdout, r.stdout), "the same lines as list --json")
	})
	t.Run("filters apply", func(t *testing.T) {
		// alice is entryFor(i)'s actor when i%4 == 0.
		assert.Equal(t, []int64{16, 20, 24}, tableIDs(t, tail(t, "--actor", "alice", "-n", "3")))
		assert.Equal(t, []int64{12, 16, 20, 24}, tableIDs(t, tail(t, "--actor", "alice", "--after", "9")))
		assert.Equal(t, []int64{20, 24}, tableIDs(t, tail(t, "--actor", "alice", "--outcome", "success", "-n", "2")))
	})
	t.Run("help", func(t *testing.T) {
		r := runCLI(t, "", "tail", "--help")
		require.Equal(t, 0, r.code, r)
		for _, w := range []string{"--follow", "--after", "--lines", "--json", "--actor", "--since", "immutable", "Ctrl-C"} {
			assert.Contains(t, r.stdout, w)
		}
		r = runCLI(t, "", "verify", "--help")
		require.Equal(t, 0, r.code, r)
		assert.Contains(t, r.stdout, "--jsonl")
	})
	t.Run("usage errors", func(t *testing.T) {
		for _, args := range [][]string{{"-n", "-1"}, {"-n", "3", "--after", "4"}, {"--after", "-2"}, {"--lines", "x"}} {
			r := runCLI(t, "", append([]string{"--db", path, "tail"}, args...)...)
			assert.Equal(t, exitUsage, r.code, "%v: %s", args, r)
		}
	})
}

// startFollow runs auditctl tail --follow with args on the SQLite file at
// path until the returned stop is called; stop returns its result.
func startFollow(t *testing.T, path string, args ...string) (stdout *testutil.LogBuffer, stop func() result) {
	t.Helper()
	return startFollowOn(t, []string{"--db", path}, args...)
}

// startFollowOn is startFollow on the log that the global flags name.
func startFollowOn(t *testing.T, global []string, args ...string) (stdout *testutil.LogBuffer, stop func() result) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	var out, errOut testutil.LogBuffer
	code := make(chan int, 1)
	go func() {
		code <- run(ctx, append(append(global, "tail", "--follow"), args...), strings.NewReader(""), &out, &errOut)
	}()
	stopped := false
	stop = func() result {
		if !stopped {
			stopped = true
			cancel()
		}
		c := <-code
		return result{stdout: out.String(), stderr: errOut.String(), code: c}
	}
	t.Cleanup(func() {
		if !stopped {
			stop()
		}
	})
	return &out, stop
}

// waitLines waits until out holds n complete lines.
func waitLines(t *testing.T, out *testutil.LogBuffer, n int) {
	t.Helper()
	testutil.WaitFor(t, 30*time.Second, func() bool { return strings.Count(out.String(), "\n") >= n },
		"tail to print "+strconv.Itoa(n)+" lines")
}

func TestTailFollow(t *testing.T) {
	// A log in rollback-journal mode with no writer at work has no -wal
	// and no -journal, and a writer that starts later switches it to WAL;
	// a WAL log whose writer closed has no -wal either. WithSQLite with
	// WithReadOnly opens both immutable, and this test then times out
	// waiting for the first new entry, in both modes (checked by making
	// sqliteOption return WithSQLite).
	for _, mode := range []string{"delete", "wal"} {
		t.Run(mode, func(t *testing.T) {
			path := makeDB(t, 5)
			execSQL(t, path, "PRAGMA journal_mode = "+mode)
			for _, side := range []string{"-wal", "-journal"} {
				require.NoFileExists(t, path+side)
			}
			out, stop := startFollow(t, path, "--json", "-n", "2")
			waitLines(t, out, 2) // entries 4 and 5

			w, err := audit.New(audit.WithSQLite(path))
			require.NoError(t, err)
			defer w.Close()
			ctx := context.Background()
			for round, last := range []int{20, 60} {
				for i := 6 + round*15; i <= last; i++ {
					require.NoError(t, w.Record(ctx, entryFor(i)))
				}
				require.NoError(t, w.Flush(ctx))
				waitLines(t, out, last-3)
			}

			r := stop()
			assert.Equal(t, exitInterrupted, r.code, r)
			assert.Contains(t, r.stderr, "auditctl: interrupted")
			objs := jsonLines(t, r.stdout)
			require.Len(t, objs, 57, "every new entry once")
			for k, obj := range objs {
				assertEntryJSON(t, 4+k, obj)
			}
		})
	}
}

func TestTailFollowFilters(t *testing.T) {
	path := makeDB(t, 8)
	out, stop := startFollow(t, path, "--actor", "alice", "--after", "0")
	waitLines(t, out, 3) // the header, entries 4 and 8

	w, err := audit.New(audit.WithSQLite(path))
	require.NoError(t, err)
	defer w.Close()
	ctx := context.Background()
	for i := 9; i <= 40; i++ {
		require.NoError(t, w.Record(ctx, entryFor(i)))
	}
	require.NoError(t, w.Flush(ctx))
	waitLines(t, out, 11) // and 12, 16, ..., 40

	r := stop()
	require.Equal(t, exitInterrupted, r.code, r)
	header, rows := tableRows(t, r.stdout)
	assert.Equal(t, []string{"ID", "TIME", "EVENT", "TYPE", "ACTOR", "RESOURCE", "OUTCOME"}, strings.Fields(header))
	assert.Equal(t, []int64{4, 8, 12, 16, 20, 24, 28, 32, 36, 40}, ids(t, rows))
	for _, row := range rows {
		assert.Equal(t, "alice", row[3])
	}
}

// TestTailFollowSkipsUnreadable checks that an entry that cannot be read
// is named and stepped over, not retried for ever: Tail alone would yield
// its error again after each backoff.
func TestTailFollowSkipsUnreadable(t *testing.T) {
	path := makeDB(t, 12)
	execSQL(t, path,
		`UPDATE audit_entries SET details = '{"i":' WHERE id = 3`,
		`UPDATE audit_entries SET time = 'not a time' WHERE id = 12`, // the last: nothing after it yet
	)
	out, stop := startFollow(t, path, "--json", "--after", "0")
	waitLines(t, out, 10)

	w, err := audit.New(audit.WithSQLite(path))
	require.NoError(t, err)
	defer w.Close()
	ctx := context.Background()
	for i := 13; i <= 15; i++ {
		require.NoError(t, w.Record(ctx, entryFor(i)))
	}
	require.NoError(t, w.Flush(ctx))
	waitLines(t, out, 13)

	r := stop()
	require.Equal(t, exitInterrupted, r.code, r)
	var got []int
	for _, obj := range jsonLines(t, r.stdout) {
		got = append(got, int(obj["id"].(float64)))
	}
	assert.Equal(t, []int{1, 2, 4, 5, 6, 7, 8, 9, 10, 11, 13, 14, 15}, got)
	assert.Contains(t, r.stderr, "auditctl: entry 3 cannot be read, skipped: ")
	assert.Contains(t, r.stderr, "auditctl: entry 12 cannot be read, skipped: ")
}

func TestTailFollowPostgres(t *testing.T) {
	dsn := os.Getenv(postgresDSNEnv)
	if dsn == "" {
		t.Skip("needs a PostgreSQL server: set " + postgresDSNEnv)
	}
	table := fmt.Sprintf("auditctl_tail_%d", time.Now().UnixNano())
	w, err := audit.New(audit.WithDialector(postgres.Open(dsn)), audit.WithTable(table))
	require.NoError(t, err)
	t.Cleanup(func() {
		raw, err := sql.Open("pgx", dsn)
		require.NoError(t, err)
		defer raw.Close()
		_, _ = raw.Exec(`DROP TABLE IF EXISTS "` + table + `"`)
		_, _ = raw.Exec(`DELETE FROM audit_chain_heads WHERE table_name = $1`, table)
	})
	defer w.Close()
	ctx := context.Background()
	for i := 1; i <= 3; i++ {
		require.NoError(t, w.Record(ctx, entryFor(i)))
	}
	require.NoError(t, w.Flush(ctx))

	pg := []string{"--driver", "postgres", "--dsn", dsn, "--table", table}
	out, stop := startFollowOn(t, pg, "--json")
	waitLines(t, out, 3)
	for i := 4; i <= 30; i++ {
		require.NoError(t, w.Record(ctx, entryFor(i)))
	}
	require.NoError(t, w.Flush(ctx))
	waitLines(t, out, 30)
	r := stop()
	require.Equal(t, exitInterrupted, r.code, r)
	objs := jsonLines(t, r.stdout)
	require.Len(t, objs, 30)
	for k, obj := range objs {
		assertEntryJSON(t, k+1, obj)
	}

	// Its export verifies as a copy too.
	file := filepath.Join(t.TempDir(), "pg.jsonl")
	r = runCLI(t, "", append(pg, "export", "--out", file)...)
	require.Equal(t, 0, r.code, r)
	r = runCLI(t, "", "verify", "--jsonl", file)
	require.Equal(t, 0, r.code, r)
	assert.Contains(t, r.stdout, "entries:  30")
}
