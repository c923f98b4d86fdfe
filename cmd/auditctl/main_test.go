package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/cleveragents/audit"
	"github.com/cleveragents/audit/internal/testutil"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// result is what one run of auditctl did.
type result struct {
	stdout, stderr string
	code           int
}

func (r result) String() string {
	return fmt.Sprintf("exit %d\nstdout:\n%s\nstderr:\n%s", r.code, r.stdout, r.stderr)
}

// runCLI runs auditctl in-process with args, stdin as its standard input.
func runCLI(t *testing.T, stdin string, args ...string) result {
	t.Helper()
	return runCtx(t, context.Background(), stdin, args...)
}

// runCtx runs auditctl in-process under ctx. No error it prints holds the
// library's "audit: " prefix: auditctl prints its own.
func runCtx(t *testing.T, ctx context.Context, stdin string, args ...string) result {
	t.Helper()
	var stdout, stderr bytes.Buffer
	code := run(ctx, args, strings.NewReader(stdin), &stdout, &stderr)
	r := result{stdout: stdout.String(), stderr: stderr.String(), code: code}
	for _, line := range strings.Split(r.stderr, "\n") {
		if strings.HasPrefix(line, "auditctl: ") {
			assert.NotContains(t, line, libPrefix, "one prefix per error")
		}
	}
	return r
}

// base is the time of entry 0; entry i happens i minutes later.
var base = time.Date(2020, 1, 1, 0, 0, 0, 0, time.UTC)

var (
	eventTypes = []string{"user.login", "doc.read", "doc.delete"}
	actors     = []string{"alice", "bob", "carol", "dave"}
)

// entryFor is the i-th entry (1-based) of the test logs; every field
// derives from i.
func entryFor(i int) audit.Entry {
	outcome := "success"
	if i%2 == 1 {
		outcome = "failure"
	}
	return audit.Entry{
		Time:      base.Add(time.Duration(i) * time.Minute),
		EventType: eventTypes[i%3],
		Actor:     actors[i%4],
		Resource:  fmt.Sprintf("doc/%d", i%5),
		Outcome:   outcome,
		RequestID: fmt.Sprintf("req-%d", i),
		Details:   map[string]any{"i": i, "ip": "10.0.0.1"},
	}
}

// makeDB writes entryFor(1) through entryFor(n) to a new SQLite file with
// the library and returns its path.
func makeDB(t *testing.T, n int, opts ...audit.Option) string {
	t.Helper()
	entries := make([]audit.Entry, n)
	for i := range entries {
		entries[i] = entryFor(i + 1)
	}
	return makeDBWith(t, entries, opts...)
}

// makeDBWith writes entries, in order, to a new SQLite file and returns
// its path. The file exists, with the table, even for no entries.
func makeDBWith(t *testing.T, entries []audit.Entry, opts ...audit.Option) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "audit.db")
	svc, err := audit.New(append([]audit.Option{audit.WithSQLite(path)}, opts...)...)
	require.NoError(t, err)
	ctx := context.Background()
	_, err = svc.Count(ctx, audit.Filter{}) // opens it: creates the file and table
	require.NoError(t, err)
	for _, e := range entries {
		require.NoError(t, svc.Record(ctx, e))
	}
	require.NoError(t, svc.Flush(ctx))
	require.NoError(t, svc.Close())
	return path
}

// entries reads every entry of the log at path with the library.
func entries(t *testing.T, path string, opts ...audit.Option) []audit.Entry {
	t.Helper()
	svc, err := audit.New(append([]audit.Option{audit.WithSQLite(path)}, opts...)...)
	require.NoError(t, err)
	defer svc.Close()
	var all []audit.Entry
	f := audit.Filter{Limit: audit.MaxListLimit}
	for {
		page, err := svc.List(context.Background(), f)
		require.NoError(t, err)
		all = append(all, page...)
		if len(page) < f.Limit {
			return all
		}
		f.AfterID = page[len(page)-1].ID
	}
}

// execSQL runs statements on the SQLite file at path, as an intruder with
// the sqlite3 shell would.
func execSQL(t *testing.T, path string, stmts ...string) {
	t.Helper()
	db := testutil.RawDB(t, path)
	for _, s := range stmts {
		_, err := db.Exec(s)
		require.NoError(t, err, s)
	}
	require.NoError(t, db.Close())
}

// tableRows parses list's table: the header, then one []string of columns
// per row.
func tableRows(t *testing.T, out string) (header string, rows [][]string) {
	t.Helper()
	lines := strings.Split(strings.TrimRight(out, "\n"), "\n")
	require.NotEmpty(t, lines)
	for _, l := range lines[1:] {
		rows = append(rows, strings.Fields(l))
	}
	return lines[0], rows
}

func ids(t *testing.T, rows [][]string) []int64 {
	t.Helper()
	out := make([]int64, 0, len(rows))
	for _, r := range rows {
		id, err := strconv.ParseInt(r[0], 10, 64)
		require.NoError(t, err, r)
		out = append(out, id)
	}
	return out
}

func seq(from, to int64) []int64 {
	var out []int64
	if from <= to {
		for i := from; i <= to; i++ {
			out = append(out, i)
		}
	} else {
		for i := from; i >= to; i-- {
			out = append(out, i)
		}
	}
	return out
}

// jsonLines parses JSON lines into maps.
func jsonLines(t *testing.T, out string) []map[string]any {
	t.Helper()
	var objs []map[string]any
	for _, l := range strings.Split(strings.TrimRight(out, "\n"), "\n") {
		if l == "" {
			continue
		}
		var m map[string]any
		require.NoError(t, json.Unmarshal([]byte(l), &m), l)
		objs = append(objs, m)
	}
	return objs
}

// assertEntryJSON checks that obj is entry i of makeDB's log, with ID i.
func assertEntryJSON(t *testing.T, i int, obj map[string]any) {
	t.Helper()
	e := entryFor(i)
	assert.Equal(t, map[string]any{
		"id":         float64(i),
		"time":       e.Time.Format("2006-01-02T15:04:05.000000000Z"),
		"event_type": e.EventType,
		"actor":      e.Actor,
		"resource":   e.Resource,
		"outcome":    e.Outcome,
		"request_id": e.RequestID,
		"details":    map[string]any{"i": float64(i), "ip": "10.0.0.1"},
		"prev_hash":  obj["prev_hash"],
		"hash":       obj["hash"],
	}, obj)
	assert.Regexp(t, hashRE, obj["hash"])
}

// hashRE matches a hash as the library writes it.
var hashRE = regexp.MustCompile(`^[0-9a-f]{64}$`)

func TestErrorText(t *testing.T) {
	tampered := fmt.Errorf("%w at ID 100: Hash does not match", audit.ErrTampered)
	for _, tc := range []struct {
		name string
		err  error
		want string
	}{
		{"a library that repeats its prefix", fmt.Errorf("audit: verify: %w", tampered), "verify: chain verification failed at ID 100: Hash does not match"},
		{"a library that prefixes once", errors.New("audit: verify: chain verification failed at ID 100: Hash does not match"), "verify: chain verification failed at ID 100: Hash does not match"},
		{"wrapped by auditctl", fmt.Errorf("open the log: %w", fmt.Errorf("audit: list: %w", audit.ErrClosed)), "open the log: list: service closed"},
		{"auditctl's own error", errors.New("--out x exists: give --force to replace it"), "--out x exists: give --force to replace it"},
		{"audit inside a word or value stays", errors.New(`database /var/audit: x.db has no table "my audit: log"`), `database /var/audit: x.db has no table "my audit: log"`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			assert.Equal(t, tc.want, errorText(tc.err))
		})
	}
	assert.True(t, errors.Is(fmt.Errorf("audit: verify: %w", tampered), audit.ErrTampered), "the text changes, not the error")
}

func TestErrorPrefixOnce(t *testing.T) {
	path := makeDB(t, 10)
	execSQL(t, path, `UPDATE audit_entries SET actor = 'mallory' WHERE id = 5`)
	r := runCLI(t, "", "--db", path, "verify")
	require.Equal(t, exitFailure, r.code, r)
	assert.Regexp(t, `^auditctl: verify: chain verification failed at ID 5: \S`, r.stderr)
	assert.NotContains(t, r.stderr, "audit: ")
}

// TestInterrupted: every command stops when its context ends (Ctrl-C in
// main), and says so with status 130; prune deletes nothing.
func TestInterrupted(t *testing.T) {
	path := makeDB(t, 10)
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	for _, args := range [][]string{
		{"list"}, {"list", "--json"}, {"count"}, {"verify"}, {"export"},
		{"export", "--format", "csv", "--out", t.TempDir() + "/x.csv"}, {"stats"}, {"prune", "--before", "24h", "--yes"},
	} {
		t.Run(fmt.Sprint(args), func(t *testing.T) {
			r := runCtx(t, ctx, "", append([]string{"--db", path}, args...)...)
			require.Equal(t, exitInterrupted, r.code, r)
			assert.Equal(t, "auditctl: interrupted\n", r.stderr)
			assert.Empty(t, r.stdout)
		})
	}
	assert.Len(t, entries(t, path), 10, "an interrupted prune deletes nothing")

	// Interrupted in the middle: the output stops at the page being
	// written, long before the log's end.
	big := makeDB(t, 2500)
	for _, args := range [][]string{{"list", "--limit", "0"}, {"list", "--json", "--limit", "0"}, {"export"}, {"export", "--format", "csv"}} {
		t.Run(fmt.Sprint(args, " midway"), func(t *testing.T) {
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			out := &cancelWriter{cancel: cancel}
			var stderr bytes.Buffer
			code := run(ctx, append([]string{"--db", big}, args...), strings.NewReader(""), out, &stderr)
			require.Equal(t, exitInterrupted, code, stderr.String())
			assert.Equal(t, "auditctl: interrupted\n", stderr.String())
			lines := strings.Count(out.buf.String(), "\n")
			assert.Greater(t, lines, 0)
			assert.Less(t, lines, 2000, "stopped within a page or so of the cancel")
		})
	}
}

// cancelWriter cancels a context on its first write, as Ctrl-C in the
// middle of the output would.
type cancelWriter struct {
	cancel context.CancelFunc
	buf    bytes.Buffer
}

func (w *cancelWriter) Write(p []byte) (int, error) {
	w.cancel()
	return w.buf.Write(p)
}
