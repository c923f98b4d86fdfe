package main

import (
	"bytes"
	"encoding/json"
	"math"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/cleveragents/audit"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// exportJSONLFile exports the log at path as JSON lines to a new file and
// returns its lines, each with its "\n".
func exportJSONLFile(t *testing.T, path string, args ...string) []string {
	t.Helper()
	out := filepath.Join(t.TempDir(), "export.jsonl")
	r := runCLI(t, "", append(append([]string{"--db", path}, args...), "export", "--format", "jsonl", "--out", out)...)
	require.Equal(t, 0, r.code, r)
	b, err := os.ReadFile(out)
	require.NoError(t, err)
	return strings.SplitAfter(strings.TrimSuffix(string(b), "\n"), "\n")
}

// writeLines writes lines to a new file and returns its path.
func writeLines(t *testing.T, lines []string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "copy.jsonl")
	require.NoError(t, os.WriteFile(p, []byte(strings.Join(lines, "")), 0o644))
	return p
}

// lineField returns a string field of an export line.
func lineField(t *testing.T, line, field string) string {
	t.Helper()
	var m map[string]any
	require.NoError(t, json.Unmarshal([]byte(line), &m))
	s, ok := m[field].(string)
	require.True(t, ok, "%s in %s", field, line)
	return s
}

func TestVerifyJSONL(t *testing.T) {
	// Details that the encoding must reproduce exactly: HTML characters
	// (stored escaped), non-ASCII and control text, a number a float64
	// would round, nesting.
	entries := make([]audit.Entry, 40)
	for i := range entries {
		e := entryFor(i + 1)
		e.Details = map[string]any{
			"i": i + 1, "html": "<b>&</b>", "text": "日本語\x1b[2J\u2028", "big": uint64(math.MaxUint64) - uint64(i),
			"float": 0.1 * float64(i), "nested": map[string]any{"z": []any{1, "x", nil, true}, "a": map[string]any{}},
		}
		if i%5 == 0 {
			e.Details = nil
		}
		e.Actor = []string{"alice", "<script>", "quote\"back\\slash"}[i%3]
		entries[i] = e
	}
	path := makeDBWith(t, entries)
	lines := exportJSONLFile(t, path)
	require.Len(t, lines, 40)
	clean := writeLines(t, lines)
	verify := func(t *testing.T, file string, args ...string) result {
		t.Helper()
		return runCLI(t, "", append(append([]string{}, args...), "verify", "--jsonl", file)...)
	}

	t.Run("a clean export verifies", func(t *testing.T) {
		r := verify(t, clean)
		require.Equal(t, 0, r.code, r)
		head := lineField(t, lines[39], "hash")
		assert.Equal(t, "entries:  40\nfirst ID: 1\nlast ID:  40\nhead:     "+head+"\nOK: the exported chain verifies\n", r.stdout)
		// The same head as verify of the database.
		dr := runCLI(t, "", "--db", path, "verify")
		require.Equal(t, 0, dr.code, dr)
		assert.Contains(t, dr.stdout, head)
	})
	t.Run("from stdin", func(t *testing.T) {
		r := runCLI(t, strings.Join(lines, ""), "verify", "--jsonl", "-")
		require.Equal(t, 0, r.code, r)
		assert.Contains(t, r.stdout, "OK: the exported chain verifies")
	})
	t.Run("an empty export verifies", func(t *testing.T) {
		r := verify(t, writeLines(t, nil))
		require.Equal(t, 0, r.code, r)
		assert.Contains(t, r.stdout, "entries:  0")
	})
	t.Run("a prefix of the log verifies, and --head catches it", func(t *testing.T) {
		short := writeLines(t, lines[:30])
		r := verify(t, short)
		require.Equal(t, 0, r.code, r)
		head := lineField(t, lines[39], "hash")
		r = verify(t, short, "--head", head)
		assert.Equal(t, exitFailure, r.code, r)
		assert.Contains(t, r.stdout, "HEAD MISMATCH")
		r = verify(t, clean, "--head", head)
		require.Equal(t, 0, r.code, r)
		assert.Contains(t, r.stdout, "its head is --head")
		r = verify(t, clean, "--head", lineField(t, lines[29], "hash"))
		require.Equal(t, 0, r.code, r)
		assert.Contains(t, r.stdout, "--head is entry 30's hash; 10 entries were added after it")
	})
	t.Run("an export after pruning verifies", func(t *testing.T) {
		p := makeDB(t, 20)
		r := runCLI(t, "", "--db", p, "prune", "--before", base.Add(8*time.Minute+30*time.Second).Format(time.RFC3339), "--yes")
		require.Equal(t, 0, r.code, r)
		pl := exportJSONLFile(t, p)
		require.Len(t, pl, 12)
		r = verify(t, writeLines(t, pl))
		require.Equal(t, 0, r.code, r)
		assert.Contains(t, r.stdout, "first ID: 9")
	})

	tamper := []struct {
		name  string
		edit  func(t *testing.T, lines []string) []string
		line  int
		id    int64
		cause string
	}{
		{"edit a field", func(t *testing.T, l []string) []string {
			l[9] = strings.Replace(l[9], `"actor":"alice"`, `"actor":"alicf"`, 1)
			return l
		}, 10, 10, "hash does not match the entry's content"},
		{"edit details", func(t *testing.T, l []string) []string {
			l[11] = strings.Replace(l[11], `"i":12`, `"i":13`, 1)
			return l
		}, 12, 12, "hash does not match the entry's content"},
		{"edit the time", func(t *testing.T, l []string) []string {
			l[4] = strings.Replace(l[4], "00:05:00.000000000Z", "00:05:00.000000001Z", 1)
			return l
		}, 5, 5, "hash does not match the entry's content"},
		{"reformat the time", func(t *testing.T, l []string) []string {
			l[4] = strings.Replace(l[4], "00:05:00.000000000Z", "00:05:00Z", 1)
			return l
		}, 5, 5, `time "2020-01-01T00:05:00Z" is not the stored text`},
		{"reformat the details", func(t *testing.T, l []string) []string {
			l[1] = strings.Replace(l[1], `{"big":`, `{ "big":`, 1)
			return l
		}, 2, 2, "details are not the JSON that the library stores"},
		{"delete a line", func(t *testing.T, l []string) []string {
			return append(l[:19:19], l[20:]...)
		}, 20, 21, "expected ID 20 next, found 21"},
		{"swap two lines", func(t *testing.T, l []string) []string {
			l[14], l[15] = l[15], l[14]
			return l
		}, 15, 16, "expected ID 15 next, found 16"},
		{"change a hash", func(t *testing.T, l []string) []string {
			h := lineField(t, l[24], "hash")
			l[24] = strings.Replace(l[24], h, strings.Repeat("0", 64), 1)
			return l
		}, 25, 25, "hash does not match the entry's content"},
		{"change a prev_hash", func(t *testing.T, l []string) []string {
			h := lineField(t, l[30], "prev_hash")
			l[30] = strings.Replace(l[30], h, strings.Repeat("0", 64), 1)
			return l
		}, 31, 31, "prev_hash does not match the hash of the line before it"},
		{"rewrite a line and its hash, but not the next link", func(t *testing.T, l []string) []string {
			// An intruder recomputes line 34's hash; line 35's
			// prev_hash still names the old one.
			var je jsonEntry
			require.NoError(t, json.Unmarshal([]byte(l[33]), &je))
			require.Equal(t, "alice", je.Actor)
			e := audit.Entry{Time: mustTime(t, je.Time), EventType: je.EventType, Actor: "mallory", Resource: je.Resource,
				Outcome: je.Outcome, RequestID: je.RequestID}
			dec := json.NewDecoder(bytes.NewReader(je.Details))
			dec.UseNumber()
			require.NoError(t, dec.Decode(&e.Details))
			h, err := audit.EntryHash(je.PrevHash, e, nil)
			require.NoError(t, err)
			l[33] = strings.Replace(strings.Replace(l[33], `"actor":"alice"`, `"actor":"mallory"`, 1), je.Hash, h, 1)
			return l
		}, 35, 35, "prev_hash does not match"},
	}
	for _, tc := range tamper {
		t.Run("tampered: "+tc.name, func(t *testing.T) {
			edited := tc.edit(t, append([]string(nil), lines...))
			require.NotEqual(t, lines, edited, "the edit applies")
			file := writeLines(t, edited)
			r := verify(t, file)
			require.Equal(t, exitFailure, r.code, r)
			assert.Contains(t, r.stdout, "TAMPERED")
			assert.Contains(t, r.stderr, "auditctl: verify --jsonl: "+file+" line "+strconv.Itoa(tc.line)+" (ID "+strconv.FormatInt(tc.id, 10)+"): "+tc.cause)
		})
	}

	t.Run("unreadable input", func(t *testing.T) {
		for _, tc := range []struct {
			name, content, want string
		}{
			{"not JSON", lines[0] + "not json\n", "line 2: not an export's JSON object"},
			{"a missing field", lines[0] + strings.Replace(lines[1], `"outcome":`, `"outcom":`, 1), `line 2: not an export's JSON object: json: unknown field "outcom"`},
			{"no hash", `{"id":1,"time":"2020-01-01T00:00:00.000000000Z","event_type":"t","actor":"a","resource":"","outcome":"","request_id":"","details":null,"prev_hash":""}` + "\n", `line 1: no "hash" field`},
			{"an empty line", lines[0] + "\n" + lines[1], "line 2: empty line"},
			{"two objects on a line", strings.TrimSuffix(lines[0], "\n") + lines[1], "line 1: not an export's JSON object: more after the object"},
			{"a wrong type", strings.Replace(lines[0], `"id":1,`, `"id":"1",`, 1), "line 1: not an export's JSON object"},
		} {
			file := writeLines(t, []string{tc.content})
			r := verify(t, file)
			assert.Equal(t, exitUsage, r.code, "%s: %s", tc.name, r)
			assert.Contains(t, r.stderr, "auditctl: --jsonl "+file+": "+tc.want, tc.name)
		}
		r := verify(t, filepath.Join(t.TempDir(), "missing.jsonl"))
		assert.Equal(t, exitUsage, r.code, r)
		assert.Contains(t, r.stderr, "no such file")
	})
}

// TestVerifyJSONLStructDetails shows the limit that verify --jsonl's help
// states: Details recorded from a struct keep its field order in the
// stored JSON, but are read back as a map, whose JSON export writes with
// sorted keys, so the copy's hash of that entry does not check.
func TestVerifyJSONLStructDetails(t *testing.T) {
	e := entryFor(1)
	e.Details = map[string]any{"user": struct{ Name, Age string }{"n", "1"}}
	path := makeDBWith(t, []audit.Entry{entryFor(1), e})
	r := runCLI(t, "", "verify", "--jsonl", writeLines(t, exportJSONLFile(t, path)))
	assert.Equal(t, exitFailure, r.code, r)
	assert.Contains(t, r.stderr, "line 2 (ID 2): hash does not match the entry's content")
}

func TestVerifyJSONLKey(t *testing.T) {
	key := []byte("chain key\n")
	keyFile := filepath.Join(t.TempDir(), "chain.key")
	require.NoError(t, os.WriteFile(keyFile, key, 0o600))
	path := makeDB(t, 10, audit.WithChainKey(key))
	file := writeLines(t, exportJSONLFile(t, path, "--key-file", keyFile))

	r := runCLI(t, "", "--key-file", keyFile, "verify", "--jsonl", file)
	require.Equal(t, 0, r.code, r)
	assert.Contains(t, r.stdout, "OK: the exported chain verifies")

	r = runCLI(t, "", "verify", "--jsonl", file)
	assert.Equal(t, exitFailure, r.code, r)
	assert.Contains(t, r.stderr, "line 1 (ID 1): hash does not match")
	assert.Contains(t, r.stderr, "pass the chain key with --key-file")

	empty := filepath.Join(t.TempDir(), "empty.key")
	require.NoError(t, os.WriteFile(empty, nil, 0o600))
	r = runCLI(t, "", "--key-file", empty, "verify", "--jsonl", file)
	assert.Equal(t, exitUsage, r.code, r)
}

func mustTime(t *testing.T, s string) time.Time {
	t.Helper()
	tm, err := time.Parse(time.RFC3339Nano, s)
	require.NoError(t, err)
	return tm
}
