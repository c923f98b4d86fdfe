package audit

import (
	"context"
	"database/sql"
	"encoding/json"
	"fmt"
	"strconv"
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
	set := perfQuerySet{getID: perfGetID, listFilter: perfListFilter, countType: perfCountType, minList: 100}
	for _, q := range perfQueryPairs(b, s, path, set) {
		var base float64
		b.Run(q.name+"/sql", func(b *testing.B) { base = perfOps(b, q.hand) })
		b.Run(q.name+"/audit", func(b *testing.B) {
			perfReportCost(b, perfOps(b, q.lib), base, "cost-x-sql")
		})
	}
}

// perfQuerySet is the parameters of the queries of a query benchmark for
// call i: Get's ID, List's filter and Count's event type; minList is the
// fewest entries that each of the first Lists must find.
type perfQuerySet struct {
	getID      func(i int) int64
	listFilter func(i int) Filter
	countType  func(i int) string
	minList    int
}

// perfQueryPair is one query by hand and through the library, for call i.
type perfQueryPair struct {
	name      string // get, list or count
	hand, lib func(i int) error
}

// perfQueryPairs returns Get, List and Count of set, each through s and
// hand-written with database/sql on a pool of its own over path: the same
// SQL, scanned into the same Entry values (perfScan). It checks first
// that both sides answer the same.
func perfQueryPairs(b *testing.B, s *AuditService, path string, set perfQuerySet) []perfQueryPair {
	ctx := context.Background()
	dsn, _ := sqliteDSN(path)
	db, err := sql.Open("sqlite3", dsn)
	require.NoError(b, err)
	b.Cleanup(func() { _ = db.Close() })

	const cols = "SELECT id, time, event_type, actor, resource, outcome, request_id, details, prev_hash, hash FROM audit_entries"
	handGet := func(i int) (Entry, error) {
		return perfScan(db.QueryRowContext(ctx, cols+" WHERE id = ?", set.getID(i)))
	}
	handList := func(i int) ([]Entry, error) {
		f := set.listFilter(i)
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
		err := db.QueryRowContext(ctx, "SELECT COUNT(*) FROM audit_entries WHERE event_type = ?", set.countType(i)).Scan(&n)
		return n, err
	}

	// Both sides answer the same.
	for i := range 3 {
		want, err := handGet(i)
		require.NoError(b, err)
		got, err := s.Get(ctx, set.getID(i))
		require.NoError(b, err)
		require.Equal(b, want, got)
		wantList, err := handList(i)
		require.NoError(b, err)
		require.GreaterOrEqual(b, len(wantList), set.minList)
		gotList, err := s.List(ctx, set.listFilter(i))
		require.NoError(b, err)
		require.Equal(b, wantList, gotList)
		wantN, err := handCount(i)
		require.NoError(b, err)
		gotN, err := s.Count(ctx, Filter{EventType: set.countType(i)})
		require.NoError(b, err)
		require.Equal(b, wantN, gotN)
	}

	return []perfQueryPair{
		{"get",
			func(i int) error { _, err := handGet(i); return err },
			func(i int) error { _, err := s.Get(ctx, set.getID(i)); return err }},
		{"list",
			func(i int) error { _, err := handList(i); return err },
			func(i int) error { _, err := s.List(ctx, set.listFilter(i)); return err }},
		{"count",
			func(i int) error { _, err := handCount(i); return err },
			func(i int) error { _, err := s.Count(ctx, Filter{EventType: set.countType(i)}); return err }},
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
