package audit

import (
	"context"
	"database/sql"
	"fmt"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/cleveragents/audit/internal/testutil"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestCustomTable(t *testing.T) {
	s, path := newService(t, WithTable("Security_Log"))
	recordAll(t, s, sampleEntry(0))
	raw := testutil.RawDB(t, path)
	var n int
	require.NoError(t, raw.QueryRow(`SELECT COUNT(*) FROM "Security_Log"`).Scan(&n))
	assert.Equal(t, 1, n)
	require.NoError(t, raw.QueryRow(`SELECT COUNT(*) FROM sqlite_master WHERE name = 'audit_entries'`).Scan(&n))
	assert.Zero(t, n)

	// Operators read it with plain SQL: the contract's columns.
	rows, err := raw.Query(`SELECT id, time, event_type, actor, resource, outcome, request_id, details, prev_hash, hash FROM "Security_Log"`)
	require.NoError(t, err)
	require.NoError(t, rows.Close())
}

func TestIndexesServeFilters(t *testing.T) {
	ctx := context.Background()
	s, _ := newService(t)
	recordAll(t, s, sampleEntry(0))
	sess := s.st.sess.Load()
	since := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	for name, f := range map[string]Filter{
		"actor":      {Actor: "a"},
		"event type": {EventType: "e"},
		"resource":   {Resource: "r"},
		"outcome":    {Outcome: "o"},
		"request id": {RequestID: "r"},
		"time":       {Since: since, Until: since.Add(time.Hour)},
	} {
		for _, desc := range []string{"", " DESC"} {
			t.Run(name+desc, func(t *testing.T) {
				where, args := sess.q.where(&f)
				query := "EXPLAIN QUERY PLAN SELECT " + columns + " FROM " + sess.q.table + where + " ORDER BY id" + desc + " LIMIT 100"
				rows, err := sess.sqlDB.QueryContext(ctx, query, args...)
				require.NoError(t, err)
				var plan []string
				for rows.Next() {
					var id, parent, notused int
					var detail string
					require.NoError(t, rows.Scan(&id, &parent, &notused, &detail))
					plan = append(plan, detail)
				}
				require.NoError(t, rows.Close())
				joined := strings.Join(plan, "; ")
				assert.Contains(t, joined, "USING INDEX", "plan: %s", joined)
				if name != "time" {
					assert.NotContains(t, joined, "TEMP B-TREE", "an equality filter reads in ID order: %s", joined)
				}
			})
		}
	}
}

// TestPostgresIndexesServeFilters is TestIndexesServeFilters on
// PostgreSQL: every filter's plan reads its own index (the hash of the
// text for hashedColumns), in ID order for an equality, in the plan made
// for the arguments and in the generic plan that a prepared statement
// switches to (sess.stmt prepares them). The query of a hashed column
// compares the texts as well (checked in its text: a collision of 64-bit
// hashes cannot be made on demand).
func TestPostgresIndexesServeFilters(t *testing.T) {
	ctx := context.Background()
	st := freshPostgres(t)
	s := st.service(t)
	// 50 values of each field, 40 entries each: selective enough that
	// reading the field's index beats reading the table in ID order.
	entries := make([]Entry, 2000)
	for i := range entries {
		entries[i] = sampleEntry(i)
		v := strconv.Itoa(i % 50)
		entries[i].Actor, entries[i].EventType, entries[i].Resource, entries[i].Outcome = "user-"+v, "ev."+v, "doc/"+v, "o-"+v
	}
	recordAll(t, s, entries...)
	_, err := st.raw.ExecContext(ctx, "ANALYZE "+quote(st.table))
	require.NoError(t, err)
	sess := s.st.sess.Load()
	since := entries[0].Time
	// explain returns the plan of query, under the SET LOCALs of set; with
	// generic, the generic plan of it prepared (PREPARE and EXECUTE under
	// force_generic_plan, whose conditions name $1, not the value).
	explain := func(t *testing.T, query string, args []any, generic bool, set ...string) string {
		tx, err := st.raw.BeginTx(ctx, nil)
		require.NoError(t, err)
		defer func() { _ = tx.Rollback() }()
		if generic {
			set = append(set, "plan_cache_mode = force_generic_plan")
		}
		for _, set := range set {
			_, err = tx.ExecContext(ctx, "SET LOCAL "+set)
			require.NoError(t, err)
		}
		if !generic {
			rows, err := tx.QueryContext(ctx, "EXPLAIN "+query, args...)
			require.NoError(t, err)
			return planText(t, rows)
		}
		_, err = tx.ExecContext(ctx, "PREPARE filtered AS "+query)
		require.NoError(t, err)
		defer func() { _, _ = tx.ExecContext(ctx, "DEALLOCATE filtered") }() // the connection's, not the transaction's
		literals := make([]string, len(args))
		for i, a := range args {
			literals[i] = "'" + strings.ReplaceAll(fmt.Sprint(a), "'", "''") + "'"
		}
		rows, err := tx.QueryContext(ctx, "EXPLAIN EXECUTE filtered("+strings.Join(literals, ", ")+")")
		require.NoError(t, err)
		return planText(t, rows)
	}
	// A table this small is cheapest to read whole, or its few matches to
	// sort: the question is whether the index can serve the query, in ID
	// order for an equality.
	indexOnly := []string{"enable_seqscan = off", "enable_bitmapscan = off"}
	inOrder := []string{"enable_seqscan = off", "enable_bitmapscan = off", "enable_sort = off"}
	// plan returns the plan of the List query of f.
	plan := func(t *testing.T, f Filter, desc string, generic bool, set ...string) string {
		where, args := sess.q.where(&f)
		return explain(t, "SELECT "+columns+" FROM "+sess.q.table+where+" ORDER BY id"+desc+" LIMIT 100", args, generic, set...)
	}
	for col, f := range map[string]Filter{
		"actor":      {Actor: "user-1"},
		"event_type": {EventType: "ev.2"},
		"resource":   {Resource: "doc/3"},
		"outcome":    {Outcome: "o-4"},
		"request_id": {RequestID: "req-7"},
		"time":       {Since: since, Until: since.Add(time.Minute)},
	} {
		for _, desc := range []string{"", " DESC"} {
			for _, generic := range []bool{false, true} {
				t.Run(fmt.Sprintf("%s%s generic=%v", col, desc, generic), func(t *testing.T) {
					if hashed(&postgresDialect, col) {
						where, _ := sess.q.where(&f)
						assert.Contains(t, where, "hashtextextended("+col+", 0) = hashtextextended($1::text, 0) AND "+col+" = $1")
					}
					set := inOrder
					if col == "time" {
						set = indexOnly // a range of times is sorted by ID
					}
					joined := plan(t, f, desc, generic, set...)
					assert.Contains(t, joined, st.table+"_"+col+"_idx", "plan:\n%s", joined)
					if hashed(&postgresDialect, col) {
						assert.Contains(t, joined, "Filter: ("+col+" = ", "the rows the hash finds are compared by their text:\n%s", joined)
					}
					if generic {
						assert.Contains(t, joined, "$1", "a generic plan:\n%s", joined)
					}
					if col != "time" {
						assert.NotContains(t, joined, "Sort", "an equality filter reads in ID order:\n%s", joined)
					}
				})
			}
		}
	}
	// A count of one resource reads its index alone (the index includes
	// the text), once VACUUM has marked the pages all-visible.
	t.Run("a count of one resource", func(t *testing.T) {
		_, err := st.raw.ExecContext(ctx, "VACUUM "+quote(st.table))
		require.NoError(t, err)
		where, args := sess.q.where(&Filter{Resource: "doc/3"})
		joined := explain(t, "SELECT COUNT(*) FROM "+sess.q.table+where, args, false, indexOnly...)
		assert.Contains(t, joined, "Index Only Scan using "+st.table+"_resource_idx", "plan:\n%s", joined)
	})
	// A table made by a version that indexed the text itself keeps that
	// index (CREATE INDEX IF NOT EXISTS), and the queries still use it.
	t.Run("an index of the text", func(t *testing.T) {
		index := quote(st.table + "_resource_idx")
		_, err := st.raw.ExecContext(ctx, "DROP INDEX "+index)
		require.NoError(t, err)
		_, err = st.raw.ExecContext(ctx, "CREATE INDEX "+index+" ON "+quote(st.table)+" (resource, id)")
		require.NoError(t, err)
		joined := plan(t, Filter{Resource: "doc/3"}, "", false, inOrder...)
		assert.Contains(t, joined, "Index Cond: (resource = ", "plan:\n%s", joined)
		assert.NotContains(t, joined, "Sort", "plan:\n%s", joined)
		got, err := s.List(ctx, Filter{Resource: "doc/3", Limit: 1000})
		require.NoError(t, err)
		assert.Len(t, got, 40)
		for _, e := range got {
			assert.Equal(t, "doc/3", e.Resource)
		}

		// The README's move to the hashed index, while the service runs.
		tbl, old, tmp := quote(st.table), quote(st.table+"_resource_idx_old"), quote(st.table+"_resource_idx_new")
		for _, stmt := range []string{
			"CREATE INDEX CONCURRENTLY " + tmp + " ON " + tbl + " ((hashtextextended(resource, 0)), id) INCLUDE (resource)",
			"BEGIN; ALTER INDEX " + index + " RENAME TO " + old + "; ALTER INDEX " + tmp + " RENAME TO " + index + "; COMMIT",
			"DROP INDEX CONCURRENTLY " + old,
		} {
			_, err := st.raw.ExecContext(ctx, stmt)
			require.NoError(t, err, stmt)
		}
		joined = plan(t, Filter{Resource: "doc/3"}, "", false, inOrder...)
		assert.Contains(t, joined, "Index Cond: (hashtextextended(resource", "plan:\n%s", joined)
		assert.Contains(t, joined, st.table+"_resource_idx", "plan:\n%s", joined)
		recordAll(t, s, sampleEntry(3))
		got, err = s.List(ctx, Filter{Resource: "doc/3", Limit: 1000})
		require.NoError(t, err)
		assert.Len(t, got, 41)
	})
}

// planText returns the lines of an EXPLAIN, joined, and closes rows.
func planText(t *testing.T, rows *sql.Rows) string {
	t.Helper()
	defer rows.Close()
	var lines []string
	for rows.Next() {
		var line string
		require.NoError(t, rows.Scan(&line))
		lines = append(lines, line)
	}
	require.NoError(t, rows.Err())
	return strings.Join(lines, "\n")
}
