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

	"github.com/cleveragents/audit/internal/testutil"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// Hostile input: what an attacker controls (entry content, and through a
// careless integration, the table name) must not inject SQL, break the
// database, escape the limits, alter text, or forge log lines. The TestHost*
// tests live beside the code they attack: table names in options_test.go,
// Details limits in details_test.go, text in entry_test.go; this file has
// the forged log lines.

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
			w := &testutil.LogBuffer{}
			var h slog.Handler = slog.NewJSONHandler(w, nil)
			if format == "text" {
				h = slog.NewTextHandler(w, nil)
			}
			records := new(atomic.Int64)
			s, path := newService(t, WithLogger(slog.New(hostCountingHandler{h, records})))
			recordAll(t, s, sampleEntry(0))

			release := testutil.HoldWriteLock(t, path)
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
					RequestID: e.RequestID, Details: jsonRoundTrip(t, e.Details)}
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
