package main

import (
	"encoding/csv"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

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
			r := runCLI(t, "", "--db", path, "export", "--format", format, "--out", out, "--force")
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
