package main

import (
	"context"
	"encoding/csv"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/cleveragents/audit"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// TestUnreadableEntries: an entry whose stored time or details an intruder
// corrupted with plain SQL is named on stderr and skipped; every other
// entry is printed, and the command exits 1.
func TestUnreadableEntries(t *testing.T) {
	const n = 2500
	path := makeDB(t, n)
	execSQL(t, path,
		`UPDATE audit_entries SET time = 'not a time' WHERE id = 1`,  // the very first: not an open error
		`UPDATE audit_entries SET details = '{"i":' WHERE id = 1500`, // in the middle of the second page
		`UPDATE audit_entries SET time = '' WHERE id = 2500`,         // the last
	)
	bad := map[int64]bool{1: true, 1500: true, 2500: true}
	var good []int64
	for id := int64(1); id <= n; id++ {
		if !bad[id] {
			good = append(good, id)
		}
	}
	assertNamed := func(t *testing.T, stderr string, want ...int64) {
		t.Helper()
		for _, id := range []int64{1, 1500, 2500} {
			line := "auditctl: entry " + strconv.FormatInt(id, 10) + " cannot be read, skipped: "
			if contains(want, id) {
				assert.Contains(t, stderr, line)
			} else {
				assert.NotContains(t, stderr, line)
			}
		}
	}

	t.Run("list prints every other entry", func(t *testing.T) {
		r := runCLI(t, "", "--db", path, "list", "--limit", "0")
		require.Equal(t, exitFailure, r.code, r.stderr)
		_, rows := tableRows(t, r.stdout)
		assert.Equal(t, good, ids(t, rows))
		assertNamed(t, r.stderr, 1, 1500, 2500)
		assert.Contains(t, r.stderr, `stored time "not a time"`)
		assert.Contains(t, r.stderr, "entry 1500: stored details")
		assert.Contains(t, r.stderr, "auditctl: 3 entries could not be read (ID 1, 1500, 2500); the others were read\n")
	})

	t.Run("list --desc, and --limit counts the printed entries", func(t *testing.T) {
		r := runCLI(t, "", "--db", path, "list", "--desc", "--limit", "3")
		require.Equal(t, exitFailure, r.code, r.stderr)
		_, rows := tableRows(t, r.stdout)
		assert.Equal(t, []int64{2499, 2498, 2497}, ids(t, rows))
		assertNamed(t, r.stderr, 2500)
		assert.Contains(t, r.stderr, "auditctl: 1 entry could not be read (ID 2500)")

		r = runCLI(t, "", "--db", path, "list", "--desc", "--limit", "0", "--json")
		require.Equal(t, exitFailure, r.code, r.stderr)
		objs := jsonLines(t, r.stdout)
		require.Len(t, objs, len(good))
		for k, obj := range objs {
			id := good[len(good)-1-k]
			assertEntryJSON(t, int(id), obj)
		}
		assertNamed(t, r.stderr, 1, 1500, 2500)
	})

	t.Run("list with a filter names only the entries it selects", func(t *testing.T) {
		// alice is every 4th entry: 1500 and 2500 are hers, 1 is not.
		r := runCLI(t, "", "--db", path, "list", "--actor", "alice", "--limit", "0")
		require.Equal(t, exitFailure, r.code, r.stderr)
		_, rows := tableRows(t, r.stdout)
		var want []int64
		for id := int64(4); id < n; id += 4 {
			if id != 1500 {
				want = append(want, id)
			}
		}
		assert.Equal(t, want, ids(t, rows))
		assertNamed(t, r.stderr, 1500, 2500)
	})

	t.Run("export jsonl writes every other entry", func(t *testing.T) {
		r := runCLI(t, "", "--db", path, "export")
		require.Equal(t, exitFailure, r.code, r.stderr)
		objs := jsonLines(t, r.stdout)
		require.Len(t, objs, len(good))
		for k, obj := range objs {
			assertEntryJSON(t, int(good[k]), obj)
		}
		assertNamed(t, r.stderr, 1, 1500, 2500)
	})

	t.Run("export csv to --out writes the file, and exits 1", func(t *testing.T) {
		out := filepath.Join(t.TempDir(), "x.csv")
		r := runCLI(t, "", "--db", path, "export", "--format", "csv", "--out", out)
		require.Equal(t, exitFailure, r.code, r.stderr)
		assert.Contains(t, r.stderr, "exported 2497 entries to "+out)
		assertNamed(t, r.stderr, 1, 1500, 2500)
		b, err := os.ReadFile(out)
		require.NoError(t, err)
		recs, err := csv.NewReader(strings.NewReader(string(b))).ReadAll()
		require.NoError(t, err)
		require.Len(t, recs, len(good)+1)
		for k, rec := range recs[1:] {
			assert.Equal(t, strconv.FormatInt(good[k], 10), rec[0])
		}
	})

	t.Run("count and verify are not list's business", func(t *testing.T) {
		r := runCLI(t, "", "--db", path, "count")
		require.Equal(t, 0, r.code, r)
		assert.Equal(t, "2500\n", r.stdout)
		r = runCLI(t, "", "--db", path, "verify")
		require.Equal(t, exitFailure, r.code, r)
		assert.Contains(t, r.stderr, "ID 1")
	})
}

func contains(ids []int64, id int64) bool {
	for _, x := range ids {
		if x == id {
			return true
		}
	}
	return false
}

func TestNextID(t *testing.T) {
	path := makeDB(t, 20)
	execSQL(t, path, `DELETE FROM audit_entries WHERE id BETWEEN 5 AND 12`) // a gap
	svc, err := audit.New(audit.WithSQLite(path))
	require.NoError(t, err)
	defer svc.Close()
	p := pager{svc: svc}
	for _, tc := range []struct {
		name string
		f    audit.Filter
		want int64
	}{
		{"from the start", audit.Filter{}, 1},
		{"across the gap", audit.Filter{AfterID: 4}, 13},
		{"after the last", audit.Filter{AfterID: 20}, 0},
		{"with a filter", audit.Filter{AfterID: 13, Actor: "alice"}, 16},
		{"desc from the end", audit.Filter{Desc: true}, 20},
		{"desc across the gap", audit.Filter{Desc: true, BeforeID: 13}, 4},
		{"desc before the first", audit.Filter{Desc: true, BeforeID: 1}, 0},
		{"desc with a filter", audit.Filter{Desc: true, BeforeID: 16, Actor: "alice"}, 4},
		{"nothing selected", audit.Filter{Actor: "nobody"}, 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			id, err := p.nextID(context.Background(), tc.f)
			require.NoError(t, err)
			assert.Equal(t, tc.want, id)
		})
	}
}
