package audit

import (
	"context"
	"encoding/json"
	"math"
	"math/rand/v2"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

var hexHash = regexp.MustCompile(`^[0-9a-f]{64}$`)

func TestRoundTrip(t *testing.T) {
	forEachBackend(t, func(t *testing.T, st *backend) {
		ctx := context.Background()
		s := st.service(t)
		zone := time.FixedZone("UTC+5:30", 5*3600+1800)
		in := []Entry{
			{
				Time:      time.Date(2026, 3, 4, 5, 6, 7, 123456789, zone),
				EventType: "permission.change",
				Actor:     "alice@example.com",
				Resource:  "projects/42/members/bob",
				Outcome:   "success",
				RequestID: "req-7f3a",
				Details: map[string]any{
					"role":   map[string]any{"before": "viewer", "after": "admin", "scopes": []any{"read", "write", float64(3)}},
					"reason": "on-call rotation",
					"nested": map[string]any{"a": map[string]any{"b": map[string]any{"c": true, "d": nil}}},
				},
			},
			{Time: time.Date(1, 1, 1, 0, 0, 0, 1, time.UTC), EventType: "e", Actor: "a"}, // the zero Time means "now"
			{Time: time.Date(9999, 12, 31, 23, 59, 59, 999999999, time.UTC), EventType: "e", Actor: "a"},
			{Time: time.Date(1677, 1, 1, 0, 0, 0, 1, time.UTC), EventType: "before unix nanos", Actor: "a"},
			{Time: time.Date(2263, 1, 1, 0, 0, 0, 1, time.UTC), EventType: "after unix nanos", Actor: "a"},
			{
				Time: time.Date(2026, 1, 1, 0, 0, 0, 1, time.UTC), EventType: "unicode",
				Actor:    "e\u0301\u200f\u05e9\u05dc\u05d5\u05dd 𝄞🙂",
				Resource: strings.Repeat("𝄞", 256), // 1024 bytes of 4-byte runes
				Details:  map[string]any{"emoji": "🙂", "rtl": "\u202eevil", "nul": "a\x00b"},
			},
		}
		recordAll(t, s, in...)

		var prev string
		for i, want := range in {
			got, err := s.Get(ctx, int64(i+1))
			require.NoError(t, err)
			assert.Equal(t, int64(i+1), got.ID)
			assert.True(t, got.Time.Equal(want.Time), "time %v, want %v", got.Time, want.Time)
			assert.Equal(t, time.UTC, got.Time.Location())
			assert.Equal(t, want.EventType, got.EventType)
			assert.Equal(t, want.Actor, got.Actor)
			assert.Equal(t, want.Resource, got.Resource)
			assert.Equal(t, want.Outcome, got.Outcome)
			assert.Equal(t, want.RequestID, got.RequestID)
			assert.Equal(t, jsonRoundTrip(t, want.Details), got.Details)
			assert.Equal(t, prev, got.PrevHash)
			assert.Regexp(t, hexHash, got.Hash)
			prev = got.Hash
		}
	})
}

// jsonRoundTrip is what Details read back as: the value after a JSON round
// trip, nil when empty.
func jsonRoundTrip(tb testing.TB, d map[string]any) map[string]any {
	tb.Helper()
	if len(d) == 0 {
		return nil
	}
	b, err := json.Marshal(d)
	require.NoError(tb, err)
	var out map[string]any
	require.NoError(tb, json.Unmarshal(b, &out))
	return out
}

func TestRecordValidation(t *testing.T) {
	forEachBackend(t, func(t *testing.T, st *backend) {
		ctx := context.Background()
		cyclic := map[string]any{}
		cyclic["self"] = cyclic
		deep := map[string]any{}
		for i, m := 0, deep; i < maxDetailsDepth; i++ {
			next := map[string]any{}
			m["d"] = next
			m = next
		}
		valid := func() Entry { return Entry{EventType: "e", Actor: "a"} }
		with := func(f func(*Entry)) Entry { e := valid(); f(&e); return e }

		bad := []struct {
			name  string
			entry Entry
			field string
		}{
			{"no event type", with(func(e *Entry) { e.EventType = "" }), "EventType"},
			{"no actor", with(func(e *Entry) { e.Actor = "" }), "Actor"},
			{"long event type", with(func(e *Entry) { e.EventType = strings.Repeat("x", 257) }), "EventType"},
			{"long actor", with(func(e *Entry) { e.Actor = strings.Repeat("x", 257) }), "Actor"},
			{"long outcome", with(func(e *Entry) { e.Outcome = strings.Repeat("x", 257) }), "Outcome"},
			{"long request id", with(func(e *Entry) { e.RequestID = strings.Repeat("x", 257) }), "RequestID"},
			{"long resource", with(func(e *Entry) { e.Resource = strings.Repeat("x", 1025) }), "Resource"},
			{"invalid utf-8 actor", with(func(e *Entry) { e.Actor = "a\xffb" }), "Actor"},
			{"invalid utf-8 resource", with(func(e *Entry) { e.Resource = "\xc3" }), "Resource"},
			{"NUL in event type", with(func(e *Entry) { e.EventType = "a\x00b" }), "EventType"},
			{"NUL in outcome", with(func(e *Entry) { e.Outcome = "\x00" }), "Outcome"},
			{"NUL in request id", with(func(e *Entry) { e.RequestID = "r\x00" }), "RequestID"},
			{"NaN in details", with(func(e *Entry) { e.Details = map[string]any{"x": math.NaN()} }), "Details"},
			{"infinity in details", with(func(e *Entry) { e.Details = map[string]any{"x": math.Inf(1)} }), "Details"},
			{"channel in details", with(func(e *Entry) { e.Details = map[string]any{"x": make(chan int)} }), "Details"},
			{"func in details", with(func(e *Entry) { e.Details = map[string]any{"x": func() {}} }), "Details"},
			{"cycle in details", with(func(e *Entry) { e.Details = cyclic }), "Details"},
			{"details too large", with(func(e *Entry) { e.Details = map[string]any{"x": strings.Repeat("y", maxDetailsJSON)} }), "Details"},
			{"details too deep", with(func(e *Entry) { e.Details = map[string]any{"d": deep} }), "Details"},
			{"year 0", with(func(e *Entry) { e.Time = time.Date(0, 12, 31, 0, 0, 0, 0, time.UTC) }), "Time"},
			{"year 10000", with(func(e *Entry) { e.Time = time.Date(10000, 1, 1, 0, 0, 0, 0, time.UTC) }), "Time"},
			{"year 10000 in UTC only", with(func(e *Entry) {
				e.Time = time.Date(9999, 12, 31, 23, 0, 0, 0, time.FixedZone("west", -2*3600))
			}), "Time"},
		}
		s := st.service(t)
		for _, tt := range bad {
			t.Run(tt.name, func(t *testing.T) {
				err := s.Record(ctx, tt.entry)
				require.ErrorIs(t, err, ErrInvalidEntry)
				assert.Contains(t, err.Error(), tt.field)
			})
		}

		exactDetails := map[string]any{"x": ""}
		overhead := len(`{"x":""}`)
		exactDetails["x"] = strings.Repeat("y", maxDetailsJSON-overhead)
		good := []struct {
			name  string
			entry Entry
		}{
			{"256-byte fields", with(func(e *Entry) {
				long := strings.Repeat("x", 256)
				e.EventType, e.Actor, e.Outcome, e.RequestID = long, long, long, long
			})},
			{"1024-byte resource", with(func(e *Entry) { e.Resource = strings.Repeat("r", 1024) })},
			{"65536-byte details", with(func(e *Entry) { e.Details = exactDetails })},
			{"details at the depth limit", with(func(e *Entry) {
				d := map[string]any{}
				for i, m := 1, d; i < maxDetailsDepth; i++ {
					next := map[string]any{}
					m["d"] = next
					m = next
				}
				e.Details = d
			})},
			{"year 1", with(func(e *Entry) { e.Time = time.Date(1, 1, 1, 0, 0, 0, 1, time.UTC) })},
			{"year 9999", with(func(e *Entry) { e.Time = time.Date(9999, 12, 31, 23, 59, 59, 999999999, time.UTC) })},
		}
		for _, tt := range good {
			t.Run(tt.name, func(t *testing.T) {
				require.NoError(t, s.Record(ctx, tt.entry))
			})
		}
		require.NoError(t, s.Flush(ctx))

		// Nothing invalid was queued, and everything valid was committed.
		stats := s.Stats()
		assert.Equal(t, uint64(len(bad)), stats.Rejected)
		assert.Equal(t, uint64(len(good)), stats.Written)
		n, err := s.Count(ctx, Filter{})
		require.NoError(t, err)
		assert.Equal(t, int64(len(good)), n)
		e, err := s.Get(ctx, 4)
		require.NoError(t, err)
		assert.Equal(t, jsonRoundTrip(t, good[3].entry.Details), e.Details, "deepest accepted details round-trip")
	})
}

func TestRecordIgnoresCallerIDAndHashes(t *testing.T) {
	forEachBackend(t, func(t *testing.T, st *backend) {
		ctx := context.Background()
		s := st.service(t)
		recordAll(t, s, Entry{ID: 99, PrevHash: "bogus", Hash: "bogus", EventType: "e", Actor: "a"})
		e, err := s.Get(ctx, 1)
		require.NoError(t, err)
		assert.Equal(t, int64(1), e.ID)
		assert.Equal(t, "", e.PrevHash)
		assert.Regexp(t, hexHash, e.Hash)
		_, err = s.Get(ctx, 99)
		require.ErrorIs(t, err, ErrNotFound)
		_, err = s.Verify(ctx)
		require.NoError(t, err)
	})
}

func TestRecordStampsZeroTimeWithClock(t *testing.T) {
	forEachBackend(t, func(t *testing.T, st *backend) {
		ctx := context.Background()
		now := time.Date(2030, 6, 7, 8, 9, 10, 11, time.FixedZone("x", 3600))
		s := st.service(t, WithClock(func() time.Time { return now }))
		recordAll(t, s, Entry{EventType: "e", Actor: "a"})
		e, err := s.Get(ctx, 1)
		require.NoError(t, err)
		assert.True(t, e.Time.Equal(now), "got %v", e.Time)
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
	forEachBackend(t, func(t *testing.T, st *backend) {
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
		recordAll(t, s, Entry{EventType: "resource", Actor: "r", Resource: strings.Repeat(quad, 256)})

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

// TestPerfTimeTextMatchesFormat pins newRecord's time formatting to
// t.Format(timeLayout), which it replaced, across the years entries may
// have.
func TestPerfTimeTextMatchesFormat(t *testing.T) {
	times := []time.Time{
		time.Date(1, 1, 1, 0, 0, 0, 0, time.UTC),
		time.Date(9999, 12, 31, 23, 59, 59, 999999999, time.UTC),
		time.Date(2026, 2, 28, 13, 4, 5, 60, time.UTC),
		time.Date(1970, 1, 1, 0, 0, 0, 1, time.UTC),
	}
	rng := rand.New(rand.NewPCG(1, 2))
	for range 10000 {
		times = append(times, time.Date(1+rng.IntN(9999), time.Month(1+rng.IntN(12)), 1+rng.IntN(28),
			rng.IntN(24), rng.IntN(60), rng.IntN(60), rng.IntN(1e9), time.UTC))
	}
	for _, tm := range times {
		tm = tm.UTC()
		if y := tm.Year(); y < 1 || y > 9999 {
			continue
		}
		require.Equal(t, tm.Format(timeLayout), timeText(tm))
	}
}
