package audit

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"sort"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"gorm.io/driver/postgres"
)

// Hostile input: what an attacker controls (entry content, and through a
// careless integration, the table name) must not inject SQL, break the
// database, escape the limits, alter text, or forge log lines.

// hostMaliciousTables are table names that are not identifiers: every one
// must be refused by New before anything touches the database.
var hostMaliciousTables = []string{
	`x"; DROP TABLE audit_entries; --`,
	`audit_entries"; DROP TABLE "audit_chain_heads`,
	`t" (id INTEGER); --`,
	`audit_entries; DELETE FROM audit_entries`,
	`audit_entries--`,
	`a/**/b`,
	`a'b`,
	`a"b`,
	"a`b",
	`[audit_entries]`,
	`"audit_entries"`,
	`main.audit_entries`,
	`temp.x`,
	`public.audit_entries`,
	`a b`,
	"a\tb",
	"a\nb",
	"a\x00b",
	"audit_entries\x00; DROP TABLE audit_chain_heads",
	"",
	"1audit",
	"$audit",
	"audit$",
	"tаble",                       // a Cyrillic а
	"ｔａｂｌｅ",                       // fullwidth
	"audit\u200d",                 // a zero-width joiner
	"audit\u202e",                 // a right-to-left override
	"audit_entriés",               // not ASCII
	"a" + strings.Repeat("b", 63), // 64 bytes
	chainTable,
	strings.ToUpper(chainTable),
	"Audit_Chain_Heads",
}

func TestHostTableNamesRefused(t *testing.T) {
	ctx := context.Background()
	// A log with data, that the attempts must leave as it was.
	s, path := newService(t)
	for i := 0; i < 5; i++ {
		require.NoError(t, s.Record(ctx, sampleEntry(i)))
	}
	require.NoError(t, s.Flush(ctx))

	for _, name := range hostMaliciousTables {
		t.Run(strconv.Quote(name), func(t *testing.T) {
			d := newCountingDialector(path, 0)
			for _, opts := range [][]Option{
				{WithSQLite(path), WithTable(name)},
				{WithDialector(d), WithTable(name)},
			} {
				got, err := New(opts...)
				require.Error(t, err)
				assert.Nil(t, got)
				assert.Contains(t, err.Error(), "WithTable")
			}
			assert.Zero(t, d.opens.Load(), "refused before the database was opened")
		})
	}

	// Nothing was created, dropped or changed.
	raw := rawDB(t, path)
	rows, err := raw.Query(`SELECT name FROM sqlite_master WHERE type = 'table' ORDER BY name`)
	require.NoError(t, err)
	var tables []string
	for rows.Next() {
		var name string
		require.NoError(t, rows.Scan(&name))
		tables = append(tables, name)
	}
	require.NoError(t, rows.Err())
	require.NoError(t, rows.Close())
	assert.Equal(t, []string{chainTable, CheckpointTable, DefaultTable, TreeEdgeTable, TreeHeadTable, TreeTileTable}, tables, "no unexpected tables") // merkle: the tree's tables
	n, err := s.Count(ctx, Filter{})
	require.NoError(t, err)
	assert.Equal(t, int64(5), n)
	_, err = s.Verify(ctx)
	require.NoError(t, err)
}

// Identifiers that are SQL keywords, or look like SQL, are fine table
// names: the library quotes them everywhere.
func TestHostTableNamesThatLookLikeSQL(t *testing.T) {
	names := []string{"select", "DROP", "table", "Order", "where_", "_", "__", "user", "union_all", "information_schema", "x" + strings.Repeat("_", 62)}
	forEachBackend(t, func(t *testing.T, st *store) {
		ctx := context.Background()
		for _, name := range names {
			t.Run(name, func(t *testing.T) {
				other := *st
				other.table = name
				if st.kind == "postgres" {
					// Keep the shared database clean; names from this list are ours.
					dropTableAtEnd(t, st.raw, name)
					st.exec(t, "DROP TABLE IF EXISTS "+quote(name))
					_, err := st.raw.Exec("DELETE FROM "+chainTable+" WHERE table_name = $1", name)
					require.NoError(t, err)
				}
				s := other.service(t)
				for i := 0; i < 3; i++ {
					require.NoError(t, s.Record(ctx, sampleEntry(i)))
				}
				require.NoError(t, s.Flush(ctx))
				list, err := s.List(ctx, Filter{})
				require.NoError(t, err)
				require.Len(t, list, 3)
				for i, e := range list {
					assert.Equal(t, sampleEntry(i).RequestID, e.RequestID)
				}
				rep, err := s.Verify(ctx)
				require.NoError(t, err)
				assert.Equal(t, int64(3), rep.Entries)
				var n int
				require.NoError(t, st.raw.QueryRow(`SELECT COUNT(*) FROM `+quote(name)).Scan(&n))
				assert.Equal(t, 3, n, "the table is literally named %q", name)
			})
		}
	})
}

// Names that match the identifier pattern but that the database reserves
// can never hold a log: SQLite refuses to create "sqlite_*" tables (in any
// case), and PostgreSQL resolves an unqualified "pg_class" to its system
// catalog, which comes first in every search path. A service that took one
// would accept entries it can never commit (Close would wait for them for
// ever), so New must refuse the name. New opens nothing, so the PostgreSQL
// dialector here needs no server.
func TestHostTableNamesReservedByTheDatabase(t *testing.T) {
	tests := []struct {
		name string
		db   func(t *testing.T) Option
	}{
		{"sqlite_master", hostSQLiteOption},
		{"sqlite_sequence", hostSQLiteOption},
		{"SQLITE_STAT1", hostSQLiteOption},
		{"sqlite_audit", hostSQLiteOption},
		{"pg_class", hostPostgresOption},
		{"pg_tables", hostPostgresOption},
		{"pg_settings", hostPostgresOption},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s, err := New(tt.db(t), WithTable(tt.name), WithLogger(discardLogger()))
			if err == nil {
				sctx, cancel := context.WithTimeout(context.Background(), time.Second)
				defer cancel()
				_ = s.Shutdown(sctx)
			}
			require.Error(t, err, "library gap: New accepts a table name that the database reserves, and every open then fails")
			assert.Contains(t, err.Error(), "WithTable")
		})
	}
}

func hostSQLiteOption(t *testing.T) Option { return WithSQLite(tempDB(t)) }

func hostPostgresOption(*testing.T) Option {
	return WithDialector(postgres.Open("postgres://nobody@127.0.0.1:1/none?sslmode=disable&connect_timeout=1"))
}

// SQLite compares identifiers case-insensitively, quoted or not: "Logs"
// and "logs" are one table there (two on PostgreSQL). Services that spell
// one table two ways must still keep one chain and commit everything.
func TestHostTableNameCaseAliases(t *testing.T) {
	forEachBackend(t, func(t *testing.T, st *store) {
		ctx := context.Background()
		upper := *st
		upper.table = strings.ToUpper(st.table[:1]) + st.table[1:]
		require.NotEqual(t, st.table, upper.table)
		if st.kind == "postgres" {
			dropTableAtEnd(t, st.raw, upper.table)
		}
		open := func(st *store) *AuditService {
			s, err := New(append(st.opts(), WithLogger(discardLogger()))...)
			require.NoError(t, err)
			t.Cleanup(func() {
				// Bounded: a writer that cannot commit must not hang the test.
				sctx, cancel := context.WithTimeout(context.Background(), time.Second)
				defer cancel()
				_ = s.Shutdown(sctx)
			})
			return s
		}
		a, b := open(st), open(&upper)
		flush := func(s *AuditService, what string) {
			t.Helper()
			fctx, cancel := context.WithTimeout(ctx, 5*time.Second)
			defer cancel()
			require.NoError(t, s.Flush(fctx), "%s: entries not committed; %q and %q must share one chain head where they name one table", what, st.table, upper.table)
		}
		for round := 0; round < 3; round++ {
			for i := 0; i < 3; i++ {
				require.NoError(t, a.Record(ctx, sampleEntry(round*10+i)))
			}
			flush(a, fmt.Sprintf("round %d, %q", round, st.table))
			for i := 0; i < 3; i++ {
				require.NoError(t, b.Record(ctx, sampleEntry(round*10+5+i)))
			}
			flush(b, fmt.Sprintf("round %d, %q", round, upper.table))
		}
		for _, s := range []*AuditService{a, b} {
			_, err := s.Verify(ctx)
			require.NoError(t, err)
		}
		na, err := a.Count(ctx, Filter{})
		require.NoError(t, err)
		nb, err := b.Count(ctx, Filter{})
		require.NoError(t, err)
		if st.kind == "sqlite" {
			assert.Equal(t, int64(18), na, "one table")
			assert.Equal(t, na, nb)
		} else {
			assert.Equal(t, int64(9), na, "two tables")
			assert.Equal(t, int64(9), nb)
		}
	})
}

// hostNested returns a value nested depth levels deep: maps, arrays, or
// both in turn.
func hostNested(depth int, kind string) any {
	var v any = "leaf"
	for i := 0; i < depth; i++ {
		if kind == "map" || (kind == "mixed" && i%2 == 0) {
			v = map[string]any{"d": v}
		} else {
			v = []any{v}
		}
	}
	return v
}

func TestHostDetailsLimits(t *testing.T) {
	ctx := context.Background()
	manyKeys := map[string]any{}
	for i := 0; len(manyKeys) < 7000; i++ {
		manyKeys[fmt.Sprintf("k%05d", i)] = i
	}
	secrets := make([]any, 1000)
	for i := range secrets {
		secrets[i] = map[string]any{"password": 1}
	}
	refused := []struct {
		name    string
		details map[string]any
		limit   string
	}{
		{"one byte over", map[string]any{"x": strings.Repeat("y", maxDetailsJSON-7)}, "65536"},
		{"grown by HTML escaping", map[string]any{"x": strings.Repeat("<", 11000)}, "65536"},
		{"grown by escaping line separators", map[string]any{"x": strings.Repeat("\u2028", 11000)}, "65536"},
		{"grown by replacing invalid UTF-8", map[string]any{"x": strings.Repeat("\xff", 11000)}, "65536"},
		{"many keys", manyKeys, "65536"},
		{"1001 nested maps", map[string]any{"d": hostNested(1000, "map")}, "1000"},
		{"1001 nested arrays", map[string]any{"d": hostNested(1000, "array")}, "1000"},
		{"1001 levels, mixed", map[string]any{"d": hostNested(1000, "mixed")}, "1000"},
		{"deeper than encoding/json reads", map[string]any{"d": hostNested(20000, "array")}, "1000"},
	}
	accepted := []struct {
		name    string
		details map[string]any
	}{
		{"exactly the size limit", map[string]any{"x": strings.Repeat("y", maxDetailsJSON-8)}},
		{"exactly the depth limit", map[string]any{"d": hostNested(999, "mixed")}},
		{"brackets inside a string are not nesting", map[string]any{"s": strings.Repeat("[{", 5000)}},
		{"escaped quotes inside a string", map[string]any{"s": `\"` + strings.Repeat("[", 3000) + `"\`}},
		{"keys that look like JSON", map[string]any{`"}]}]}`: strings.Repeat("{", 2000), "{": map[string]any{"[": []any{"]"}}}},
	}

	s, _ := newService(t)
	for _, tt := range refused {
		t.Run("refused/"+tt.name, func(t *testing.T) {
			err := s.Record(ctx, Entry{EventType: "e", Actor: "a", Details: tt.details})
			require.ErrorIs(t, err, ErrInvalidEntry)
			assert.Contains(t, err.Error(), "Details")
			assert.Contains(t, err.Error(), tt.limit, "the error states the limit")
			assert.Less(t, len(err.Error()), 300, "the error does not echo the input")
		})
	}
	for i, tt := range accepted {
		t.Run("accepted/"+tt.name, func(t *testing.T) {
			require.NoError(t, s.Record(ctx, Entry{EventType: "e", Actor: "a", RequestID: strconv.Itoa(i), Details: tt.details}))
		})
	}
	require.NoError(t, s.Flush(ctx))
	stats := s.Stats()
	assert.Equal(t, uint64(len(refused)), stats.Rejected)
	assert.Equal(t, uint64(len(accepted)), stats.Written)
	list, err := s.List(ctx, Filter{})
	require.NoError(t, err)
	require.Len(t, list, len(accepted), "nothing refused was stored")
	for i, e := range list {
		assert.Equal(t, fzJSONRoundTrip(t, accepted[i].details), e.Details, accepted[i].name)
	}

	t.Run("refused once redacted", func(t *testing.T) {
		// 1000 one-byte secrets become 1000 76-byte hashes: the limit
		// holds for what is stored, not what was given.
		d := map[string]any{"a": secrets}
		raw, err := json.Marshal(d)
		require.NoError(t, err)
		require.Less(t, len(raw), maxDetailsJSON)
		r, _ := newService(t, WithRedactKeys([]byte("k"), "password"))
		err = r.Record(ctx, Entry{EventType: "e", Actor: "a", Details: d})
		require.ErrorIs(t, err, ErrInvalidEntry)
		assert.Contains(t, err.Error(), "Details")
		assert.Contains(t, err.Error(), "65536")
		assert.Contains(t, err.Error(), "redacted")
	})
}

func TestHostUnicodeRoundTrip(t *testing.T) {
	quad := "𝄞" // 4 bytes
	// Strings that differ only in ways a careless store would erase:
	// normal form, case, invisible characters, direction, wildcards.
	actors := []string{
		"é",                   // NFC, U+00E9
		"e\u0301",             // NFD: e and a combining acute
		"e\u0301\u0301\u0327", // stacked combining marks
		"Alice", "alice", "ALICE", "alice ", " alice", "alic",
		"al%", "al_ce", `al\ce`, "al'ce", `al"ce`,
		"a\u200db", "ab", "a\u200bb", "a\ufeffb", // ZWJ, plain, ZWSP, BOM
		"\u202eecila", "\u202aalice\u202c", "\u05e9\u05dc\u05d5\u05dd", // RTL override, LRE/PDF, Hebrew
		"👩\u200d💻", "👩💻", "🏳️\u200d🌈", // ZWJ sequences and their parts
		"ß", "ss", "ẞ", "ﬃ", "ffi", "İ", "i\u0307", "K", "\u212a", // case folding and compatibility pairs
		"\U0010FFFF", "\uFFFD", "\uFFFF", "\u2028\u2029", "\u0085",
		strings.Repeat(quad, 64), // exactly 256 bytes of 4-byte runes
		strings.Repeat(quad, 63) + "abcd",
	}
	forEachBackend(t, func(t *testing.T, st *store) {
		ctx := context.Background()
		s := st.service(t)
		require.Equal(t, len(actors), countDistinct(actors), "the actors are distinct byte strings")
		for i, a := range actors {
			require.NoError(t, s.Record(ctx, Entry{
				Time:      time.Date(2026, 1, 1, 0, 0, 0, i, time.UTC),
				EventType: a,
				Actor:     a,
				Resource:  a + "/" + quad,
				Outcome:   a,
				RequestID: a,
				Details:   map[string]any{a: a, "é": 1, "e\u0301": 2, "nested": []any{a, map[string]any{a: true}}},
			}), "%+q", a)
		}
		require.NoError(t, s.Record(ctx, Entry{EventType: "resource", Actor: "r", Resource: strings.Repeat(quad, 256)}))
		require.NoError(t, s.Flush(ctx))

		for i, a := range actors {
			e, err := s.Get(ctx, int64(i+1))
			require.NoError(t, err)
			assert.Equal(t, a, e.Actor, "%+q", a)
			assert.Equal(t, a, e.EventType)
			assert.Equal(t, a+"/"+quad, e.Resource)
			assert.Equal(t, a, e.Outcome)
			assert.Equal(t, a, e.RequestID)
			assert.Equal(t, map[string]any{a: a, "é": float64(1), "e\u0301": float64(2), "nested": []any{a, map[string]any{a: true}}}, e.Details)

			// Equality filters compare bytes: each actor selects exactly itself.
			for _, f := range []Filter{{Actor: a}, {EventType: a}, {Outcome: a}, {RequestID: a}, {Resource: a + "/" + quad}} {
				list, err := s.List(ctx, f)
				require.NoError(t, err)
				assert.Equal(t, []int64{int64(i + 1)}, ids(list), "filter %+v", f)
				n, err := s.Count(ctx, f)
				require.NoError(t, err)
				assert.Equal(t, int64(1), n)
			}
		}
		e, err := s.Get(ctx, int64(len(actors)+1))
		require.NoError(t, err)
		assert.Equal(t, strings.Repeat(quad, 256), e.Resource, "1024 bytes of 4-byte runes")
		_, err = s.Verify(ctx)
		require.NoError(t, err)
	})

	t.Run("limits count bytes, and are not met by cutting runes", func(t *testing.T) {
		ctx := context.Background()
		s, _ := newService(t)
		over := []struct {
			field string
			set   func(e *Entry)
		}{
			{"EventType", func(e *Entry) { e.EventType = strings.Repeat(quad, 65) }},
			{"Actor", func(e *Entry) { e.Actor = strings.Repeat(quad, 64) + "x" }},
			{"Outcome", func(e *Entry) { e.Outcome = strings.Repeat("x", 253) + quad }}, // 257: no cut fits
			{"RequestID", func(e *Entry) { e.RequestID = strings.Repeat("é", 129) }},
			{"Resource", func(e *Entry) { e.Resource = strings.Repeat(quad, 256) + "x" }},
		}
		for _, tt := range over {
			e := Entry{EventType: "e", Actor: "a"}
			tt.set(&e)
			err := s.Record(ctx, e)
			require.ErrorIs(t, err, ErrInvalidEntry, tt.field)
			assert.Equal(t, tt.field, fzNamedField(err))
		}
		invalid := map[string]string{
			"a UTF-16 surrogate (CESU-8)": "\xed\xa0\x80",
			"an overlong slash":           "\xc0\xaf",
			"an overlong NUL":             "\xc0\x80",
			"a truncated 4-byte rune":     "\xf0\x9d\x84",
			"past U+10FFFF":               "\xf4\x90\x80\x80",
			"a lone continuation byte":    "a\x80b",
		}
		for name, v := range invalid {
			err := s.Record(ctx, Entry{EventType: "e", Actor: v})
			require.ErrorIs(t, err, ErrInvalidEntry, name)
			assert.Equal(t, "Actor", fzNamedField(err), name)
			assert.Contains(t, err.Error(), "UTF-8", name)
		}
		assert.Equal(t, uint64(len(over)+len(invalid)), s.Stats().Rejected)
		n, err := s.Count(ctx, Filter{})
		require.NoError(t, err)
		assert.Zero(t, n)
	})
}

func countDistinct(ss []string) int {
	m := map[string]bool{}
	for _, s := range ss {
		m[s] = true
	}
	return len(m)
}

// hostCountingHandler counts the records a logger handles, so that the
// lines in its output can be checked against them.
type hostCountingHandler struct {
	slog.Handler
	n *atomic.Int64
}

func (h hostCountingHandler) Handle(ctx context.Context, r slog.Record) error {
	h.n.Add(1)
	return h.Handler.Handle(ctx, r)
}

func (h hostCountingHandler) WithAttrs(as []slog.Attr) slog.Handler {
	return hostCountingHandler{h.Handler.WithAttrs(as), h.n}
}

func (h hostCountingHandler) WithGroup(name string) slog.Handler {
	return hostCountingHandler{h.Handler.WithGroup(name), h.n}
}

// hostForgeries are entries whose every field tries to break out of its
// log line: line breaks, a JSON record, a logfmt record, ANSI escapes.
func hostForgeries() []Entry {
	json := `"}` + "\n" + `{"time":"2026-01-01T00:00:00Z","level":"ERROR","msg":"forged"}`
	text := "\n" + `time=2026-01-01T00:00:00Z level=ERROR msg=forged`
	return []Entry{
		{
			EventType: "evt" + json,
			Actor:     `"}` + "\r\n" + `{"msg":"forged"`,
			Resource:  text,
			Outcome:   "\x1b[2J\x1b[H\x1b[31mforged\x1b[0m",
			RequestID: "req\rmsg=forged",
			Details: map[string]any{
				"k\n\"msg\"": "v" + json,
				"msg":        "forged",
				"ansi":       "\x1b]0;pwned\x07\x1b[1A\x1b[K",
				"nul":        "a\x00b",
				"seps":       "\u2028\u2029\u0085\v\f",
			},
		},
		{EventType: text, Actor: " msg=forged", Outcome: `" msg="forged`, RequestID: `\" msg=forged`},
		{EventType: "\r", Actor: "\n", Resource: "\x1b", Outcome: "\u2028", RequestID: "\t"},
	}
}

// hostParseText parses one line of slog's text format into its pairs,
// failing on anything else: a forged pair would duplicate a key or leave
// text unparsed.
func hostParseText(line string) (map[string]string, []string, error) {
	out := map[string]string{}
	var keys []string
	for rest := line; rest != ""; {
		eq := strings.IndexByte(rest, '=')
		if eq <= 0 {
			return nil, nil, fmt.Errorf("no key at %q", rest)
		}
		key := rest[:eq]
		if strings.ContainsAny(key, " \"") {
			return nil, nil, fmt.Errorf("bad key %q", key)
		}
		rest = rest[eq+1:]
		var val string
		if strings.HasPrefix(rest, `"`) {
			q, err := strconv.QuotedPrefix(rest)
			if err != nil {
				return nil, nil, fmt.Errorf("bad quoted value at %q: %w", rest, err)
			}
			val, _ = strconv.Unquote(q)
			rest = rest[len(q):]
		} else {
			end := strings.IndexByte(rest, ' ')
			if end < 0 {
				end = len(rest)
			}
			val, rest = rest[:end], rest[end:]
		}
		if _, dup := out[key]; dup {
			return nil, nil, fmt.Errorf("duplicate key %q", key)
		}
		out[key] = val
		keys = append(keys, key)
		if rest != "" {
			if rest[0] != ' ' {
				return nil, nil, fmt.Errorf("no separator at %q", rest)
			}
			rest = rest[1:]
		}
	}
	return out, keys, nil
}

func TestHostLogLinesCannotBeForged(t *testing.T) {
	for _, format := range []string{"json", "text"} {
		t.Run(format, func(t *testing.T) {
			ctx := context.Background()
			w := &logBuffer{}
			var h slog.Handler = slog.NewJSONHandler(w, nil)
			if format == "text" {
				h = slog.NewTextHandler(w, nil)
			}
			records := new(atomic.Int64)
			s, path := newService(t, WithLogger(slog.New(hostCountingHandler{h, records})))
			require.NoError(t, s.Record(ctx, sampleEntry(0)))
			require.NoError(t, s.Flush(ctx))

			release := holdWriteLock(t, path)
			forged := hostForgeries()
			for _, e := range forged {
				require.NoError(t, s.Record(ctx, e))
			}
			sctx, cancel := context.WithTimeout(ctx, 100*time.Millisecond)
			defer cancel()
			err := s.Shutdown(sctx)
			release()
			require.Error(t, err)
			assert.Contains(t, err.Error(), fmt.Sprintf("%d entries not committed", len(forged)))

			out := w.String()
			require.True(t, strings.HasSuffix(out, "\n"))
			lines := strings.Split(strings.TrimSuffix(out, "\n"), "\n")
			assert.Equal(t, int(records.Load()), len(lines), "one line per record: no injected line breaks\n%s", out)
			assert.GreaterOrEqual(t, len(lines), len(forged)+1, "each entry and the summary")
			for _, bad := range []string{"\r", "\t", "\x00", "\x1b", "\x07", "\v", "\f", "\u2028", "\u2029"} {
				assert.NotContains(t, out, bad, "raw control or separator %+q reached the log", bad)
			}

			var recovered []Entry
			for _, line := range lines {
				var msg, level, entry string
				if format == "json" {
					var rec map[string]any
					require.NoError(t, json.Unmarshal([]byte(line), &rec), "every line is one JSON object: %s", line)
					msg, _ = rec["msg"].(string)
					level, _ = rec["level"].(string)
					entry, _ = rec["entry"].(string)
				} else {
					rec, keys, err := hostParseText(line)
					require.NoError(t, err, line)
					require.GreaterOrEqual(t, len(keys), 3, line)
					assert.Equal(t, []string{"time", "level", "msg"}, keys[:3], line)
					msg, level, entry = rec["msg"], rec["level"], rec["entry"]
				}
				assert.NotEqual(t, "forged", msg, line)
				assert.True(t, strings.HasPrefix(msg, "audit: "), "every record is the library's: %q", msg)
				assert.Contains(t, []string{"WARN", "ERROR"}, level, line)
				if msg == "audit: entry not committed" {
					var e struct {
						EventType string         `json:"event_type"`
						Actor     string         `json:"actor"`
						Resource  string         `json:"resource"`
						Outcome   string         `json:"outcome"`
						RequestID string         `json:"request_id"`
						Details   map[string]any `json:"details"`
					}
					require.NoError(t, json.Unmarshal([]byte(entry), &e), entry)
					recovered = append(recovered, Entry{EventType: e.EventType, Actor: e.Actor, Resource: e.Resource,
						Outcome: e.Outcome, RequestID: e.RequestID, Details: e.Details})
				}
			}
			// The logged entries are the originals, byte for byte.
			require.Len(t, recovered, len(forged))
			want := make([]Entry, len(forged))
			for i, e := range forged {
				want[i] = Entry{EventType: e.EventType, Actor: e.Actor, Resource: e.Resource, Outcome: e.Outcome,
					RequestID: e.RequestID, Details: fzJSONRoundTrip(t, e.Details)}
			}
			sortEntries := func(es []Entry) {
				sort.Slice(es, func(i, j int) bool { return es[i].EventType+es[i].Actor < es[j].EventType+es[j].Actor })
			}
			sortEntries(want)
			sortEntries(recovered)
			assert.Equal(t, want, recovered)
		})
	}
}
