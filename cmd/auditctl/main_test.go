package main

import (
	"bytes"
	"context"
	"database/sql"
	"encoding/csv"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/cleveragents/audit"
	_ "github.com/mattn/go-sqlite3"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"gorm.io/driver/postgres"
)

// bin is the auditctl binary that TestMain builds: the tests run it as an
// operator would.
var bin string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "auditctl-test-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	bin = filepath.Join(dir, "auditctl")
	build := exec.Command("go", "build", "-o", bin, ".")
	build.Stdout, build.Stderr = os.Stderr, os.Stderr
	if err := build.Run(); err != nil {
		fmt.Fprintln(os.Stderr, "build auditctl:", err)
		os.RemoveAll(dir)
		os.Exit(1)
	}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

// result is what one run of the binary did.
type result struct {
	stdout, stderr string
	code           int
}

func (r result) String() string {
	return fmt.Sprintf("exit %d\nstdout:\n%s\nstderr:\n%s", r.code, r.stdout, r.stderr)
}

// runCLI runs auditctl with args, stdin as its standard input.
func runCLI(t *testing.T, stdin string, args ...string) result {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, bin, args...)
	cmd.Stdin = strings.NewReader(stdin)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	r := result{stdout: stdout.String(), stderr: stderr.String()}
	var exitErr *exec.ExitError
	switch {
	case err == nil:
	case errors.As(err, &exitErr):
		r.code = exitErr.ExitCode()
	default:
		require.NoError(t, err, "run auditctl")
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
	db, err := sql.Open("sqlite3", path)
	require.NoError(t, err)
	defer db.Close()
	for _, s := range stmts {
		_, err := db.Exec(s)
		require.NoError(t, err, s)
	}
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
	assert.Regexp(t, `^[0-9a-f]{64}$`, obj["hash"])
}

func TestList(t *testing.T) {
	path := makeDB(t, 10)

	t.Run("prints an aligned table of every entry", func(t *testing.T) {
		r := runCLI(t, "", "--db", path, "list")
		require.Equal(t, 0, r.code, r)
		header, rows := tableRows(t, r.stdout)
		assert.Regexp(t, `^ID\s+TIME\s+EVENT TYPE\s+ACTOR\s+RESOURCE\s+OUTCOME$`, header)
		require.Len(t, rows, 10)
		assert.Equal(t, seq(1, 10), ids(t, rows))
		for i, row := range rows {
			e := entryFor(i + 1)
			assert.Equal(t, []string{strconv.Itoa(i + 1), e.Time.Format(time.RFC3339), e.EventType, e.Actor, e.Resource, e.Outcome}, row)
		}
		// Aligned: every row's TIME column starts where the header's does.
		lines := strings.Split(r.stdout, "\n")
		col := strings.Index(lines[0], "TIME")
		for _, l := range lines[1:11] {
			assert.Equal(t, "2020-01-01T", l[col:col+11], l)
		}
	})

	filterCases := []struct {
		name string
		args []string
		want []int64
	}{
		{"actor", []string{"--actor", "alice"}, []int64{4, 8}},
		{"type", []string{"--type", "doc.read"}, []int64{1, 4, 7, 10}},
		{"resource", []string{"--resource", "doc/2"}, []int64{2, 7}},
		{"outcome", []string{"--outcome", "failure"}, []int64{1, 3, 5, 7, 9}},
		{"request id", []string{"--request-id", "req-6"}, []int64{6}},
		{"combined", []string{"--outcome", "success", "--type", "doc.read"}, []int64{4, 10}},
		{"since and until RFC 3339", []string{"--since", "2020-01-01T00:03:00Z", "--until", "2020-01-01T00:06:00Z"}, []int64{3, 4, 5}},
		{"until a date", []string{"--until", "2020-01-01"}, nil},
		{"limit", []string{"--limit", "3"}, []int64{1, 2, 3}},
		{"desc", []string{"--desc", "--limit", "2"}, []int64{10, 9}},
	}
	for _, tc := range filterCases {
		t.Run("filters by "+tc.name, func(t *testing.T) {
			r := runCLI(t, "", append([]string{"--db", path, "list"}, tc.args...)...)
			require.Equal(t, 0, r.code, r)
			if tc.want == nil {
				assert.Empty(t, r.stdout)
				assert.Contains(t, r.stderr, "no entries match")
				return
			}
			_, rows := tableRows(t, r.stdout)
			assert.Equal(t, tc.want, ids(t, rows))
		})
	}

	t.Run("prints JSON lines with every field", func(t *testing.T) {
		r := runCLI(t, "", "--db", path, "list", "--json")
		require.Equal(t, 0, r.code, r)
		objs := jsonLines(t, r.stdout)
		require.Len(t, objs, 10)
		stored := entries(t, path)
		for i, obj := range objs {
			assertEntryJSON(t, i+1, obj)
			assert.Equal(t, stored[i].Hash, obj["hash"])
			assert.Equal(t, stored[i].PrevHash, obj["prev_hash"])
			if i > 0 {
				assert.Equal(t, objs[i-1]["hash"], obj["prev_hash"], "the chain links")
			}
		}
	})

	t.Run("JSON lines honour the filters", func(t *testing.T) {
		r := runCLI(t, "", "--db", path, "list", "--json", "--actor", "bob", "--desc")
		require.Equal(t, 0, r.code, r)
		objs := jsonLines(t, r.stdout)
		require.Len(t, objs, 3)
		for k, i := range []int{9, 5, 1} {
			assertEntryJSON(t, i, objs[k])
		}
	})

	t.Run("a duration means now minus it", func(t *testing.T) {
		now := time.Now().UTC()
		p := makeDBWith(t, []audit.Entry{
			{Time: now.Add(-48 * time.Hour), EventType: "old", Actor: "a"},
			{Time: now.Add(-time.Hour), EventType: "recent", Actor: "a"},
		})
		r := runCLI(t, "", "--db", p, "list", "--since", "24h")
		require.Equal(t, 0, r.code, r)
		_, rows := tableRows(t, r.stdout)
		assert.Equal(t, []int64{2}, ids(t, rows))
		r = runCLI(t, "", "--db", p, "list", "--until", "1d")
		require.Equal(t, 0, r.code, r)
		_, rows = tableRows(t, r.stdout)
		assert.Equal(t, []int64{1}, ids(t, rows))
	})

	t.Run("quotes control characters instead of printing them", func(t *testing.T) {
		p := makeDBWith(t, []audit.Entry{{Time: base, EventType: "x", Actor: "evil\x1b[2J\tname"}})
		r := runCLI(t, "", "--db", p, "list")
		require.Equal(t, 0, r.code, r)
		assert.NotContains(t, r.stdout, "\x1b")
		assert.Contains(t, r.stdout, `"evil\x1b[2J\tname"`)
		assert.Contains(t, r.stdout, " - ", "an empty field shows as -")
	})
}

func TestCount(t *testing.T) {
	path := makeDB(t, 10)
	for _, tc := range []struct {
		args []string
		want string
	}{
		{nil, "10"},
		{[]string{"--outcome", "failure"}, "5"},
		{[]string{"--actor", "alice", "--type", "user.login"}, "0"},
		{[]string{"--since", "2020-01-01T00:08:00Z"}, "3"},
		{[]string{"--since", "1h"}, "0"},
	} {
		t.Run(strings.Join(tc.args, " "), func(t *testing.T) {
			r := runCLI(t, "", append([]string{"--db", path, "count"}, tc.args...)...)
			require.Equal(t, 0, r.code, r)
			assert.Equal(t, tc.want+"\n", r.stdout)
		})
	}
}

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
			`UPDATE audit_tree_heads SET size = 8`, // merkle: and the tree's size, which Verify checks now
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

func TestExport(t *testing.T) {
	const n = 2500 // three pages of 1000
	path := makeDB(t, n)
	stored := entries(t, path)
	require.Len(t, stored, n)

	checkJSONL := func(t *testing.T, out string) {
		t.Helper()
		objs := jsonLines(t, out)
		require.Len(t, objs, n)
		for i, obj := range objs {
			assertEntryJSON(t, i+1, obj)
			assert.Equal(t, stored[i].Hash, obj["hash"])
			assert.Equal(t, stored[i].PrevHash, obj["prev_hash"])
		}
	}
	checkCSV := func(t *testing.T, out string) {
		t.Helper()
		recs, err := csv.NewReader(strings.NewReader(out)).ReadAll()
		require.NoError(t, err)
		require.Len(t, recs, n+1)
		assert.Equal(t, []string{"id", "time", "event_type", "actor", "resource", "outcome", "request_id", "details", "prev_hash", "hash"}, recs[0])
		for i, rec := range recs[1:] {
			e := entryFor(i + 1)
			require.Equal(t, []string{
				strconv.Itoa(i + 1), e.Time.Format("2006-01-02T15:04:05.000000000Z"), e.EventType, e.Actor,
				e.Resource, e.Outcome, e.RequestID, fmt.Sprintf(`{"i":%d,"ip":"10.0.0.1"}`, i+1),
				stored[i].PrevHash, stored[i].Hash,
			}, rec)
		}
	}

	t.Run("jsonl to stdout, across pages", func(t *testing.T) {
		r := runCLI(t, "", "--db", path, "export", "--format", "jsonl")
		require.Equal(t, 0, r.code, r.stderr)
		checkJSONL(t, r.stdout)
		assert.Empty(t, r.stderr, "no progress bar when stderr is not a terminal")
	})

	t.Run("jsonl is the default format", func(t *testing.T) {
		r := runCLI(t, "", "--db", path, "export")
		require.Equal(t, 0, r.code, r.stderr)
		assert.Len(t, jsonLines(t, r.stdout), n)
	})

	t.Run("csv to stdout, across pages", func(t *testing.T) {
		r := runCLI(t, "", "--db", path, "export", "--format", "csv")
		require.Equal(t, 0, r.code, r.stderr)
		checkCSV(t, r.stdout)
	})

	for _, format := range []string{"jsonl", "csv"} {
		t.Run(format+" to --out", func(t *testing.T) {
			dir := t.TempDir()
			out := filepath.Join(dir, "export."+format)
			require.NoError(t, os.WriteFile(out, []byte("stale"), 0o600))
			r := runCLI(t, "", "--db", path, "export", "--format", format, "--out", out)
			require.Equal(t, 0, r.code, r)
			assert.Empty(t, r.stdout)
			assert.Contains(t, r.stderr, fmt.Sprintf("exported %d entries to %s", n, out))
			b, err := os.ReadFile(out)
			require.NoError(t, err)
			if format == "csv" {
				checkCSV(t, string(b))
			} else {
				checkJSONL(t, string(b))
			}
			names, err := os.ReadDir(dir)
			require.NoError(t, err)
			assert.Len(t, names, 1, "no temporary file is left behind")
		})
	}

	t.Run("honours the filters", func(t *testing.T) {
		r := runCLI(t, "", "--db", path, "export", "--actor", "alice", "--since", "2020-01-01T10:00:00Z")
		require.Equal(t, 0, r.code, r.stderr)
		objs := jsonLines(t, r.stdout)
		// alice is every 4th entry; entry 600 is at 10:00.
		require.Len(t, objs, (n-600)/4+1)
		for _, obj := range objs {
			id := int(obj["id"].(float64))
			assert.Equal(t, 0, id%4)
			assert.GreaterOrEqual(t, id, 600)
			assertEntryJSON(t, id, obj)
		}
	})

	t.Run("a failed export leaves no --out file", func(t *testing.T) {
		out := filepath.Join(t.TempDir(), "no-such-dir", "x.csv")
		r := runCLI(t, "", "--db", path, "export", "--format", "csv", "--out", out)
		require.Equal(t, 1, r.code, r)
		assert.Contains(t, r.stderr, "--out")
		assert.NoFileExists(t, out)
	})

	t.Run("list pages too: --limit 0 is everything, --limit beyond a page", func(t *testing.T) {
		r := runCLI(t, "", "--db", path, "list", "--limit", "0")
		require.Equal(t, 0, r.code, r.stderr)
		_, rows := tableRows(t, r.stdout)
		assert.Equal(t, seq(1, n), ids(t, rows))

		r = runCLI(t, "", "--db", path, "list", "--limit", "1500", "--desc", "--json")
		require.Equal(t, 0, r.code, r.stderr)
		objs := jsonLines(t, r.stdout)
		require.Len(t, objs, 1500)
		for k, obj := range objs {
			assertEntryJSON(t, n-k, obj)
		}
	})
}

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

func TestHelp(t *testing.T) {
	global := []string{"--db", "--driver", "--dsn", "--table", "--key-file"}
	filters := []string{"--actor", "--type", "--resource", "--outcome", "--request-id", "--since", "--until"}
	for _, tc := range []struct {
		cmd  string
		want []string
	}{
		{"", []string{"list", "count", "verify", "export", "prune", "stats"}},
		{"list", append([]string{"--limit", "--desc", "--json"}, filters...)},
		{"count", filters},
		{"verify", []string{"--key-file", "--head", "ID N"}},
		{"export", append([]string{"--format", "--out", "jsonl", "csv"}, filters...)},
		{"prune", []string{"--before", "--yes", "[y/N]"}},
		{"stats", []string{"head"}},
	} {
		t.Run("auditctl "+tc.cmd+" --help", func(t *testing.T) {
			args := []string{"--help"}
			if tc.cmd != "" {
				args = []string{tc.cmd, "--help"}
			}
			r := runCLI(t, "", args...)
			require.Equal(t, 0, r.code, r)
			for _, w := range append(tc.want, global...) {
				assert.Contains(t, r.stdout, w)
			}
			assert.Empty(t, r.stderr)
		})
	}
	t.Run("help list", func(t *testing.T) {
		r := runCLI(t, "", "help", "list")
		require.Equal(t, 0, r.code, r)
		assert.Contains(t, r.stdout, "--json")
	})
}

func TestParseWhen(t *testing.T) {
	now := time.Date(2024, 5, 10, 12, 0, 0, 0, time.UTC)
	for _, tc := range []struct {
		in   string
		want time.Time
		err  string
	}{
		{in: "24h", want: now.Add(-24 * time.Hour)},
		{in: "90m", want: now.Add(-90 * time.Minute)},
		{in: "7d", want: now.Add(-7 * 24 * time.Hour)},
		{in: "0s", want: now},
		{in: "2024-05-01T12:00:00Z", want: time.Date(2024, 5, 1, 12, 0, 0, 0, time.UTC)},
		{in: "2024-05-01T14:00:00.5+02:00", want: time.Date(2024, 5, 1, 12, 0, 0, 5e8, time.UTC)},
		{in: "2024-05-01", want: time.Date(2024, 5, 1, 0, 0, 0, 0, time.UTC)},
		{in: "-1h", err: "must not be negative"},
		{in: "999999999d", err: "too long ago"},
		{in: "yesterday", err: "neither a duration"},
		{in: "d", err: "neither a duration"},
		{in: "", err: "neither a duration"},
	} {
		t.Run(tc.in, func(t *testing.T) {
			got, err := parseWhen(tc.in, now)
			if tc.err != "" {
				require.ErrorContains(t, err, tc.err)
				return
			}
			require.NoError(t, err)
			assert.True(t, tc.want.Equal(got), "got %v, want %v", got, tc.want)
		})
	}
}

func TestHumanBytes(t *testing.T) {
	for n, want := range map[int64]string{0: "0 B", 1023: "1023 B", 1024: "1.0 KiB", 1536: "1.5 KiB", 5 << 20: "5.0 MiB", 3 << 30: "3.0 GiB"} {
		assert.Equal(t, want, humanBytes(n), n)
	}
}

// postgresDSNEnv names the PostgreSQL server of the tests, as in the root
// package's tests; .ci/run starts one and sets it.
const postgresDSNEnv = "AUDIT_TEST_POSTGRES_DSN"

func TestPostgres(t *testing.T) {
	dsn := os.Getenv(postgresDSNEnv)
	if dsn == "" {
		msg := "the PostgreSQL test needs a server: set " + postgresDSNEnv + ", or run bash .ci/run, which starts one"
		if os.Getenv("CI") == "true" {
			t.Fatal(msg)
		}
		t.Skip(msg)
	}
	raw, err := sql.Open("pgx", dsn)
	require.NoError(t, err)
	defer raw.Close()
	table := fmt.Sprintf("auditctl_%d", time.Now().UnixNano())
	t.Cleanup(func() {
		_, _ = raw.Exec(`DROP TABLE IF EXISTS "` + table + `"`)
		_, _ = raw.Exec(`DELETE FROM audit_chain_heads WHERE table_name = $1`, table)
	})

	svc, err := audit.New(audit.WithDialector(postgres.Open(dsn)), audit.WithTable(table))
	require.NoError(t, err)
	ctx := context.Background()
	for i := 1; i <= 5; i++ {
		require.NoError(t, svc.Record(ctx, entryFor(i)))
	}
	require.NoError(t, svc.Flush(ctx))
	stored, err := svc.List(ctx, audit.Filter{})
	require.NoError(t, err)
	require.NoError(t, svc.Close())
	require.Len(t, stored, 5)

	pg := []string{"--driver", "postgres", "--dsn", dsn, "--table", table}
	cli := func(args ...string) result {
		t.Helper()
		return runCLI(t, "", append(append([]string{}, pg...), args...)...)
	}

	r := cli("count", "--outcome", "failure")
	require.Equal(t, 0, r.code, r)
	assert.Equal(t, "3\n", r.stdout)

	r = cli("list", "--json")
	require.Equal(t, 0, r.code, r)
	objs := jsonLines(t, r.stdout)
	require.Len(t, objs, 5)
	for i, obj := range objs {
		assertEntryJSON(t, i+1, obj)
		assert.Equal(t, stored[i].Hash, obj["hash"])
	}

	r = cli("export", "--format", "csv")
	require.Equal(t, 0, r.code, r)
	recs, err := csv.NewReader(strings.NewReader(r.stdout)).ReadAll()
	require.NoError(t, err)
	assert.Len(t, recs, 6)

	r = cli("stats")
	require.Equal(t, 0, r.code, r)
	assert.Contains(t, r.stdout, "entries: 5\n")
	assert.Contains(t, r.stdout, "size:    n/a (postgres)\n")
	assert.Contains(t, r.stdout, "head:    "+stored[4].Hash+"\n")

	r = cli("verify", "--head", stored[4].Hash)
	require.Equal(t, 0, r.code, r)

	_, err = raw.Exec(`UPDATE "`+table+`" SET resource = 'doc/x' WHERE id = $1`, stored[2].ID)
	require.NoError(t, err)
	r = cli("verify")
	require.Equal(t, 1, r.code, r)
	assert.Contains(t, r.stderr, fmt.Sprintf("ID %d", stored[2].ID))

	r = cli("prune", "--before", "2020-01-01T00:02:30Z", "--yes")
	require.Equal(t, 0, r.code, r)
	assert.Contains(t, r.stdout, "pruned 2 entries")

	t.Run("a missing table exits 2", func(t *testing.T) {
		r := runCLI(t, "", "--driver", "postgres", "--dsn", dsn, "--table", table+"_nope", "verify")
		require.Equal(t, 2, r.code, r)
		assert.Contains(t, r.stderr, "no table")
	})
	t.Run("an unreachable server exits 2", func(t *testing.T) {
		r := runCLI(t, "", "--driver", "postgres", "--dsn", "postgres://postgres@127.0.0.1:1/postgres?sslmode=disable&connect_timeout=5", "count")
		require.Equal(t, 2, r.code, r)
		assert.Contains(t, r.stderr, "open postgres")
	})
	t.Run("--db with postgres exits 2", func(t *testing.T) {
		r := runCLI(t, "", "--driver", "postgres", "--dsn", dsn, "--db", "x.db", "count")
		require.Equal(t, 2, r.code, r)
	})
}
