package main

import (
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/cleveragents/audit"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

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

// TestListTerminalSafe: the table never prints a byte that a terminal acts
// on, even from a row an intruder wrote with plain SQL (invalid UTF-8, a
// lone 0x9b that some terminals read as CSI, DEL, C1).
func TestListTerminalSafe(t *testing.T) {
	p := makeDBWith(t, []audit.Entry{{Time: base, EventType: "x", Actor: "a"}, {Time: base, EventType: "y", Actor: "b"}})
	execSQL(t, p,
		`UPDATE audit_entries SET actor = CAST(X'9B324A' AS TEXT), resource = 'del'||char(127), outcome = char(155)||'1m' WHERE id = 1`,
		`UPDATE audit_entries SET actor = 'bell'||char(7), resource = 'cr'||char(13)||'over', outcome = 'rlo'||char(8238) WHERE id = 2`,
	)
	r := runCLI(t, "", "--db", p, "list")
	require.Equal(t, 0, r.code, r)
	for i := 0; i < len(r.stdout); i++ {
		if c := r.stdout[i]; c < 0x20 && c != '\n' || c == 0x7f || c == 0x9b {
			t.Fatalf("byte %#x at %d in %q", c, i, r.stdout)
		}
	}
	for _, want := range []string{`"\x9b2J"`, `"del\x7f"`, `"\u009b1m"`, `"bell\a"`, `"cr\rover"`, `"rlo\u202e"`} {
		assert.Contains(t, r.stdout, want)
	}
}
