package audit

import (
	"context"
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
