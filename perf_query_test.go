package audit

import (
	"context"
	"crypto/sha256"
	"database/sql"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/cleveragents/audit/internal/testutil"
	"github.com/stretchr/testify/require"
)

// BenchmarkQuery is Get, List (an actor and a 6-hour window, Limit 100)
// and Count (an event type) on the 1M-entry fixture, each beside the same
// query hand-written with database/sql on its own pool over the same file:
// the same SQL, scanned into the same Entry values (the time parsed, the
// Details decoded), so that both return the same thing. The parameters
// vary with the iteration, in the same sequence for both. It reports
// ops/s and cost-x-sql, the multiple of the hand-written query's time.
func BenchmarkQuery(b *testing.B) {
	path := perfFixture(b)
	ctx := context.Background()
	s := newServiceAt(b, WithSQLite(path), WithLogger(testutil.Discard()))
	_, err := s.Get(ctx, 1) // open before timing
	require.NoError(b, err)
	dsn, _ := sqliteDSN(path)
	db, err := sql.Open("sqlite3", dsn)
	require.NoError(b, err)
	b.Cleanup(func() { _ = db.Close() })

	const cols = "SELECT id, time, event_type, actor, resource, outcome, request_id, details, prev_hash, hash FROM audit_entries"
	handGet := func(i int) (Entry, error) {
		return perfScan(db.QueryRowContext(ctx, cols+" WHERE id = ?", perfGetID(i)))
	}
	handList := func(i int) ([]Entry, error) {
		f := perfListFilter(i)
		rows, err := db.QueryContext(ctx, cols+" WHERE actor = ? AND time >= ? AND time < ? ORDER BY id LIMIT 100",
			f.Actor, f.Since.UTC().Format(timeLayout), f.Until.UTC().Format(timeLayout))
		if err != nil {
			return nil, err
		}
		defer rows.Close()
		var out []Entry
		for rows.Next() {
			e, err := perfScan(rows)
			if err != nil {
				return nil, err
			}
			out = append(out, e)
		}
		return out, rows.Err()
	}
	handCount := func(i int) (int64, error) {
		var n int64
		err := db.QueryRowContext(ctx, "SELECT COUNT(*) FROM audit_entries WHERE event_type = ?", perfCountType(i)).Scan(&n)
		return n, err
	}

	// Both sides answer the same.
	for i := range 3 {
		want, err := handGet(i)
		require.NoError(b, err)
		got, err := s.Get(ctx, perfGetID(i))
		require.NoError(b, err)
		require.Equal(b, want, got)
		wantList, err := handList(i)
		require.NoError(b, err)
		require.Len(b, wantList, 100)
		gotList, err := s.List(ctx, perfListFilter(i))
		require.NoError(b, err)
		require.Equal(b, wantList, gotList)
		wantN, err := handCount(i)
		require.NoError(b, err)
		gotN, err := s.Count(ctx, Filter{EventType: perfCountType(i)})
		require.NoError(b, err)
		require.Equal(b, wantN, gotN)
	}

	for _, q := range []struct {
		name      string
		hand, lib func(i int) error
	}{
		{"get",
			func(i int) error { _, err := handGet(i); return err },
			func(i int) error { _, err := s.Get(ctx, perfGetID(i)); return err }},
		{"list",
			func(i int) error { _, err := handList(i); return err },
			func(i int) error { _, err := s.List(ctx, perfListFilter(i)); return err }},
		{"count",
			func(i int) error { _, err := handCount(i); return err },
			func(i int) error { _, err := s.Count(ctx, Filter{EventType: perfCountType(i)}); return err }},
	} {
		var base float64
		b.Run(q.name+"/sql", func(b *testing.B) { base = perfOps(b, q.hand) })
		b.Run(q.name+"/audit", func(b *testing.B) {
			perfReportCost(b, perfOps(b, q.lib), base, "cost-x-sql")
		})
	}
}

// perfOps times b.N calls of op and returns ns per call.
func perfOps(b *testing.B, op func(i int) error) float64 {
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		if err := op(i); err != nil {
			b.Fatal(err)
		}
	}
	b.StopTimer()
	ns := float64(b.Elapsed().Nanoseconds()) / float64(b.N)
	b.ReportMetric(1e9/ns, "ops/s")
	return ns
}

// perfScan is the hand-written scan of one row into an Entry.
func perfScan(row interface{ Scan(...any) error }) (Entry, error) {
	var e Entry
	var t string
	var details []byte
	if err := row.Scan(&e.ID, &t, &e.EventType, &e.Actor, &e.Resource, &e.Outcome, &e.RequestID, &details, &e.PrevHash, &e.Hash); err != nil {
		return Entry{}, err
	}
	var err error
	if e.Time, err = time.Parse(time.RFC3339Nano, t); err != nil {
		return Entry{}, err
	}
	if details != nil {
		if err := json.Unmarshal(details, &e.Details); err != nil {
			return Entry{}, err
		}
	}
	return e, nil
}

// The queries' parameters for iteration i.
func perfGetID(i int) int64 { return 1 + int64(i)*7919%perfFixtureEntries }

func perfListFilter(i int) Filter {
	since := perfFixtureStart.Add(time.Duration(i%20) * time.Hour)
	return Filter{Actor: perfActor(i * 37 % perfActors), Since: since, Until: since.Add(6 * time.Hour), Limit: 100}
}

func perfCountType(i int) string { return perfEventTypes[i%len(perfEventTypes)] }

// The 1M-entry fixture: entry i (0-based, ID i+1) happened at
// perfFixtureStart + i×perfFixtureStep, so the log spans about 28 hours;
// 1000 actors take turns, 16 event types, about 400 bytes a row.
const (
	perfFixtureEntries = 1_000_000
	perfFixtureStep    = 100 * time.Millisecond
	perfActors         = 1000
	// perfFixtureVersion changes whenever perfFixtureEntry does, so that
	// a fixture kept from an earlier run is not reused.
	perfFixtureVersion = "1"
)

var (
	perfFixtureStart = time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC)
	perfEventTypes   = []string{
		"user.login", "user.logout", "user.create", "user.delete", "doc.read", "doc.write", "doc.share", "doc.delete",
		"role.grant", "role.revoke", "key.rotate", "key.revoke", "session.refresh", "session.expire", "policy.update", "export.run",
	}
	perfOutcomes = []string{"success", "success", "success", "failure", "denied"}
)

func perfActor(a int) string { return fmt.Sprintf("user-%04d", a) }

// perfFixtureEntry returns the fixture's entry i.
func perfFixtureEntry(i int) Entry {
	doc := strconv.Itoa(i * 31 % 50000)
	return Entry{
		Time:      perfFixtureStart.Add(time.Duration(i) * perfFixtureStep),
		EventType: perfEventTypes[i%len(perfEventTypes)],
		Actor:     perfActor(i % perfActors),
		Resource:  "doc/" + doc,
		Outcome:   perfOutcomes[i%len(perfOutcomes)],
		RequestID: fmt.Sprintf("req-%08x", i),
		Details: map[string]any{
			"i":          float64(i),
			"ip":         fmt.Sprintf("10.%d.%d.%d", i>>16&255, i>>8&255, i&255),
			"path":       "/api/v1/documents/" + doc,
			"user_agent": "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) audit-perf/1",
		},
	}
}

var (
	perfFixtureOnce sync.Once
	perfFixturePath string
	perfFixtureErr  error
)

// perfFixture returns the path of the 1M-entry log, building it on the
// run's first call unless an earlier run left it in os.TempDir(). Callers
// must not write to it: copy it first (perfCopy).
func perfFixture(tb testing.TB) string {
	tb.Helper()
	perfFixtureOnce.Do(func() {
		began := time.Now()
		var built bool
		perfFixturePath, built, perfFixtureErr = perfLoadFixture()
		if built {
			tb.Logf("built the %d-entry fixture %s in %v", perfFixtureEntries, perfFixturePath, time.Since(began).Round(time.Millisecond))
		}
	})
	require.NoError(tb, perfFixtureErr)
	return perfFixturePath
}

// perfLoadFixture returns the fixture's path, and whether it had to build
// it. It builds into a temporary name and renames, so that a run that
// stops half-way, or two runs building together, never leave a partial
// fixture under the final name.
func perfLoadFixture() (path string, built bool, err error) {
	q := newQueries(&sqliteDialect, DefaultTable)
	key := sha256.Sum256([]byte(strings.Join(append(q.schema, q.initHead, perfFixtureVersion, strconv.Itoa(perfFixtureEntries)), "\x00")))
	path = filepath.Join(os.TempDir(), "audit-perf-"+hex.EncodeToString(key[:6])+".db")
	if perfFixtureReady(path) {
		return path, false, nil
	}
	f, err := os.CreateTemp(os.TempDir(), "audit-perf-build-*.db")
	if err != nil {
		return "", false, err
	}
	tmp := f.Name()
	_ = f.Close()
	defer func() {
		for _, p := range []string{tmp, tmp + "-wal", tmp + "-shm", tmp + "-journal"} {
			_ = os.Remove(p)
		}
	}()
	if err := perfBuildFixture(tmp, q); err != nil {
		return "", false, fmt.Errorf("build fixture: %w", err)
	}
	if err := perfCheckFixture(tmp); err != nil {
		return "", false, fmt.Errorf("check fixture: %w", err)
	}
	if err := os.Rename(tmp, path); err != nil {
		return "", false, err
	}
	return path, true, nil
}

// perfFixtureReady reports whether path holds a complete fixture: it
// exists and its chain head is the last entry of the fixture.
func perfFixtureReady(path string) bool {
	if _, err := os.Stat(path); err != nil {
		return false
	}
	db, err := sql.Open("sqlite3", "file:"+path+"?mode=ro&_busy_timeout=5000")
	if err != nil {
		return false
	}
	defer db.Close()
	var lastID, prunedID int64
	err = db.QueryRow("SELECT last_id, pruned_id FROM "+chainTable+" WHERE table_name = ?", DefaultTable).Scan(&lastID, &prunedID)
	return err == nil && lastID == perfFixtureEntries && prunedID == 0
}

// perfBuildFixture is the fast loader: the table of the library's own DDL
// (q.schema), filled by prepared multi-row INSERTs in big transactions
// without journal or fsync, records made by the service's newRecord and
// chained by its hasher, exactly as the writer would store them; then the
// indexes, the chain head row (q.initHead) and WAL.
func perfBuildFixture(path string, q queries) error {
	// An unopened service: its newRecord and chain, and nothing else.
	s, err := New(WithSQLite(path), WithLogger(testutil.Discard()))
	if err != nil {
		return err
	}
	defer s.Close()
	db, err := sql.Open("sqlite3", path+"?_journal_mode=OFF&_synchronous=OFF&_cache_size=-262144")
	if err != nil {
		return err
	}
	defer db.Close()
	db.SetMaxOpenConns(1)
	ctx := context.Background()
	tables, indexes := q.schema[:2], q.schema[2:]
	for _, stmt := range tables {
		if _, err := db.ExecContext(ctx, stmt); err != nil {
			return err
		}
	}
	const rowsPerInsert, rowsPerTx = 256, 256 * 400
	insert, err := db.PrepareContext(ctx, perfInsertSQL(q.insertHead, rowsPerInsert))
	if err != nil {
		return err
	}
	defer insert.Close()
	prev := ""
	args := make([]any, 0, rowsPerInsert*10)
	var tx *sql.Tx
	for first := 0; first < perfFixtureEntries; first += rowsPerInsert {
		n := min(rowsPerInsert, perfFixtureEntries-first)
		if first%rowsPerTx == 0 {
			if tx, err = db.BeginTx(ctx, nil); err != nil {
				return err
			}
		}
		args = args[:0]
		for i := first; i < first+n; i++ {
			e := perfFixtureEntry(i)
			r, err := s.newRecord(&e)
			if err != nil {
				return err
			}
			hash := s.chain.hash(prev, r)
			args = append(args, int64(i+1), r.time, r.eventType, r.actor, r.resource, r.outcome, r.requestID, string(r.details), prev, hash)
			prev = hash
		}
		if n == rowsPerInsert {
			_, err = tx.StmtContext(ctx, insert).ExecContext(ctx, args...)
		} else {
			_, err = tx.ExecContext(ctx, perfInsertSQL(q.insertHead, n), args...)
		}
		if err != nil {
			_ = tx.Rollback()
			return err
		}
		if end := first + n; end%rowsPerTx == 0 || end == perfFixtureEntries {
			if err := tx.Commit(); err != nil {
				return err
			}
		}
	}
	for _, stmt := range indexes {
		if _, err := db.ExecContext(ctx, stmt); err != nil {
			return err
		}
	}
	if _, err := db.ExecContext(ctx, q.initHead, DefaultTable); err != nil {
		return err
	}
	var mode string
	if err := db.QueryRowContext(ctx, "PRAGMA journal_mode = WAL").Scan(&mode); err != nil || mode != "wal" {
		return fmt.Errorf("journal_mode WAL: %q, %w", mode, err)
	}
	return nil
}

// perfCheckFixture opens a service on the new fixture and verifies its
// chain from end to end.
func perfCheckFixture(path string) error {
	s, err := New(WithSQLite(path), WithLogger(testutil.Discard()))
	if err != nil {
		return err
	}
	rep, err := s.Verify(context.Background())
	if cerr := s.Close(); err == nil {
		err = cerr
	}
	if err == nil && (rep.Entries != perfFixtureEntries || rep.FirstID != 1) {
		err = fmt.Errorf("verify: %+v, want %d entries from ID 1", rep, perfFixtureEntries)
	}
	return err
}

// perfCopy copies the fixture to a new file of the test's and returns its
// path.
func perfCopy(tb testing.TB) string {
	tb.Helper()
	src, err := os.Open(perfFixture(tb))
	require.NoError(tb, err)
	defer src.Close()
	path := filepath.Join(tb.TempDir(), "audit.db")
	dst, err := os.Create(path)
	require.NoError(tb, err)
	_, err = io.Copy(dst, src)
	if err == nil {
		// Written back now, not by the kernel in the middle of the
		// measurement: a commit's fsync would wait for it.
		err = dst.Sync()
	}
	require.NoError(tb, errors.Join(err, dst.Close()))
	return path
}
