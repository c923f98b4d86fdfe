package audit

import (
	"context"
	"encoding/json"
	"strings"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/cleveragents/audit/internal/testutil"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// The fuzz targets check the contract's promises on arbitrary input:
// FuzzRecordRoundTrip that what Record accepts round-trips exactly and what
// it refuses is ErrInvalidEntry naming a field at fault, FuzzFilter that
// List and Count agree with an in-memory model for any filter. Without
// -fuzz, `go test` runs their seeds (f.Add below and testdata/fuzz/).
//
// Each target opens one service per process (per fuzz worker), before
// f.Fuzz, on a private in-memory database: the engine calls the fuzz
// function sequentially within a worker, so the state it checks against
// (the newest entry, the dataset) is its own.

// fzClock is the fixed clock that stamps entries recorded with a zero Time.
var fzClock = time.Date(2031, 2, 3, 4, 5, 6, 789, time.UTC)

func FuzzRecordRoundTrip(f *testing.F) {
	// eventType, actor, resource, outcome, requestID, sec, nsec, zoneMin, details
	f.Add("user.login", "alice", "doc/1", "success", "req-1", int64(1767225600), int64(123456789), int16(0), []byte(`{"ip":"10.0.0.1","n":1.5,"tags":["a",null,true]}`))
	f.Add("e", "a", "", "", "", int64(0), int64(0), int16(0), []byte(nil))                                             // zero Time: the clock's
	f.Add("e", "a", "", "", "", int64(-62135596800), int64(0), int16(0), []byte(`null`))                               // year 1, exactly the zero Time
	f.Add("e", "a", "", "", "", int64(-62135596800), int64(1), int16(0), []byte(`{}`))                                 // year 1, 1 ns after
	f.Add("e", "a", "", "", "", int64(-62135596801), int64(999999999), int16(0), []byte(`{"a":1}`))                    // year 0: refused
	f.Add("e", "a", "", "", "", int64(253402300799), int64(999999999), int16(0), []byte(`{"a":1}`))                    // the last ns of 9999
	f.Add("e", "a", "", "", "", int64(253402300800), int64(0), int16(0), []byte(`{"a":1}`))                            // year 10000: refused
	f.Add("e", "a", "", "", "", int64(253402300799), int64(0), int16(-120), []byte(`{"a":1}`))                         // 9999 in UTC, 10000 locally
	f.Add("e", "a", "", "", "", int64(-9223372036854775808), int64(-9223372036854775808), int16(1), []byte(`{"a":1}`)) // extremes
	f.Add("e", "a", "", "", "", int64(9223372036854775807), int64(9223372036854775807), int16(-1), []byte(`{"a":1}`))
	f.Add("", "", "", "", "", int64(1), int64(0), int16(0), []byte(`{"a":1}`))                                                                                   // required fields missing
	f.Add("e\x00", "a\xff", "r\xc3", "o", "q", int64(1), int64(0), int16(0), []byte(`{"a":1}`))                                                                  // NUL, invalid UTF-8
	f.Add("e", strings.Repeat("𝄞", 64), strings.Repeat("𝄞", 256), strings.Repeat("x", 256), strings.Repeat("é", 128), int64(1), int64(0), int16(0), []byte(nil)) // at the limits
	f.Add("e", strings.Repeat("𝄞", 64)+"x", strings.Repeat("𝄞", 256)+"x", "o", "q", int64(1), int64(0), int16(0), []byte(nil))                                   // one past
	f.Add("e\u0301", "é", "\u202eevil", "\u200d👩\u200d💻", "\U0010FFFF", int64(1), int64(0), int16(0), []byte(`{"e\u0301":1,"é":2,"k\n":"\u001b[31m"}`))
	f.Add("e", "a", "", "", "", int64(1), int64(0), int16(0), []byte(`{"s":"\ud800","n":1e308,"m":-0,"big":12345678901234567890}`))
	f.Add("e", "a", "", "", "", int64(1), int64(0), int16(0), []byte(`[1,2]`))                                                         // not an object: the raw-string fallback
	f.Add("e", "a", "", "", "", int64(1), int64(0), int16(0), []byte(`{"a":1e999}`))                                                   // out of float range: fallback
	f.Add("e", "a", "", "", "", int64(1), int64(0), int16(0), []byte(`{"d":`+strings.Repeat("[", 999)+strings.Repeat("]", 999)+`}`))   // 1000 levels: accepted
	f.Add("e", "a", "", "", "", int64(1), int64(0), int16(0), []byte(`{"d":`+strings.Repeat("[", 1000)+strings.Repeat("]", 1000)+`}`)) // 1001: refused

	ctx := context.Background()
	s := newServiceAt(f, WithSQLite(":memory:"), WithAsync(false), WithClock(func() time.Time { return fzClock }), WithLogger(testutil.Discard()))
	var lastID int64
	var lastHash string

	f.Fuzz(func(t *testing.T, eventType, actor, resource, outcome, requestID string, sec, nsec int64, zoneMin int16, details []byte) {
		in := Entry{
			EventType: eventType,
			Actor:     actor,
			Resource:  resource,
			Outcome:   outcome,
			RequestID: requestID,
			Details:   fzDetails(details),
		}
		if sec != 0 || nsec != 0 {
			in.Time = time.Unix(sec, nsec).In(time.FixedZone("fz", int(zoneMin)*60))
		}
		faults, wantTime := fzEntryFaults(in)

		before := s.Stats()
		err := s.Record(ctx, in)
		after := s.Stats()
		if len(faults) > 0 {
			require.ErrorIs(t, err, ErrInvalidEntry, "faults %v", faults)
			field := fzNamedField(err)
			assert.Contains(t, faults, field, "the error names a field at fault: %v", err)
			assert.Equal(t, before.Rejected+1, after.Rejected)
			assert.Equal(t, before.Written, after.Written, "a refused entry is not written")
			return
		}
		require.NoError(t, err)
		require.Equal(t, before.Written+1, after.Written)

		// One writer, sync mode, sequential calls: the newest entry is ours.
		list, err := s.List(ctx, Filter{Limit: 1, Desc: true})
		require.NoError(t, err)
		require.Len(t, list, 1)
		got := list[0]
		if lastID != 0 {
			assert.Equal(t, lastID+1, got.ID)
			assert.Equal(t, lastHash, got.PrevHash, "the chain links to the previous entry")
		} else {
			assert.Equal(t, int64(1), got.ID)
			assert.Empty(t, got.PrevHash, "the first entry of a log")
		}
		lastID, lastHash = got.ID, got.Hash
		assert.Equal(t, in.EventType, got.EventType)
		assert.Equal(t, in.Actor, got.Actor)
		assert.Equal(t, in.Resource, got.Resource)
		assert.Equal(t, in.Outcome, got.Outcome)
		assert.Equal(t, in.RequestID, got.RequestID)
		assert.True(t, got.Time.Equal(wantTime), "time %s, want %s", got.Time.Format(time.RFC3339Nano), wantTime.Format(time.RFC3339Nano))
		assert.Equal(t, time.UTC, got.Time.Location())
		assert.Equal(t, jsonRoundTrip(t, in.Details), got.Details)
		assert.Regexp(t, hexHash, got.Hash)

		again, err := s.Get(ctx, got.ID)
		require.NoError(t, err)
		assert.Equal(t, got, again, "Get and List read the same entry")
	})
}

// fzDetails turns fuzzed bytes into Details: the JSON object they hold,
// or, when they hold none, nil or a map carrying the raw bytes as a string
// (which json.Marshal makes valid UTF-8).
func fzDetails(b []byte) map[string]any {
	var d map[string]any
	if err := json.Unmarshal(b, &d); err == nil {
		return d
	}
	if len(b)%2 == 0 {
		return nil
	}
	return map[string]any{"raw": string(b)}
}

// fzEntryFaults is the model of validation: it returns the fields of e
// that break a rule of the contract, and the Time the entry must read back
// with when there are none.
func fzEntryFaults(e Entry) (faults []string, want time.Time) {
	want = e.Time
	if want.IsZero() {
		want = fzClock
	}
	if y := want.UTC().Year(); y < 1 || y > 9999 {
		faults = append(faults, "Time")
	}
	for _, c := range []struct {
		name, v  string
		max      int
		required bool
	}{
		{"EventType", e.EventType, 256, true},
		{"Actor", e.Actor, 256, true},
		{"Resource", e.Resource, 1024, false},
		{"Outcome", e.Outcome, 256, false},
		{"RequestID", e.RequestID, 256, false},
	} {
		if (c.required && c.v == "") || len(c.v) > c.max || !utf8.ValidString(c.v) || strings.ContainsRune(c.v, 0) {
			faults = append(faults, c.name)
		}
	}
	if len(e.Details) > 0 {
		b, err := json.Marshal(e.Details)
		if err != nil || len(b) > 65536 || fzDepth(e.Details) > 1000 {
			faults = append(faults, "Details")
		}
	}
	return faults, want
}

// fzDepth is the nesting of objects and arrays in v, counted on the value
// rather than on its JSON.
func fzDepth(v any) int {
	deepest := 0
	switch v := v.(type) {
	case map[string]any:
		for _, x := range v {
			deepest = max(deepest, fzDepth(x))
		}
	case []any:
		for _, x := range v {
			deepest = max(deepest, fzDepth(x))
		}
	default:
		return 0
	}
	return deepest + 1
}

// fzNamedField returns the field an ErrInvalidEntry names: the word after
// "invalid entry: ".
func fzNamedField(err error) string {
	msg := err.Error()
	marker := bare(ErrInvalidEntry) + ": " // the library wraps it with the field's name
	i := strings.Index(msg, marker)
	if i < 0 {
		return ""
	}
	rest := msg[i+len(marker):]
	if j := strings.IndexAny(rest, " :"); j >= 0 {
		rest = rest[:j]
	}
	return rest
}

// fzFilterBase is the start of FuzzFilter's dataset; fuzzed times count
// from it, so that small numbers land among the entries.
var fzFilterBase = time.Date(2026, 5, 1, 0, 0, 0, 0, time.UTC)

// fzDataset records FuzzFilter's fixed dataset and returns it as committed.
// Times go back and forth (time order is not ID order), some coincide, some
// sit at the ends of the supported years; actors differ only in case,
// normal form, or LIKE wildcards, which an equality filter must tell apart.
func fzDataset(tb testing.TB, s *AuditService) []Entry {
	tb.Helper()
	ctx := context.Background()
	const n = 200
	special := map[int]func(e *Entry){
		0:  func(e *Entry) { e.Actor = "é" },
		1:  func(e *Entry) { e.Actor = "e\u0301" },
		2:  func(e *Entry) { e.Actor = "User-2" },
		3:  func(e *Entry) { e.Actor = "user-%" },
		4:  func(e *Entry) { e.Actor = "user-_"; e.Resource = "" },
		5:  func(e *Entry) { e.Actor = "user-1 "; e.Outcome = "" },
		6:  func(e *Entry) { e.Time = time.Date(1, 1, 1, 0, 0, 0, 1, time.UTC) },
		7:  func(e *Entry) { e.Time = time.Date(9999, 12, 31, 23, 59, 59, 999999999, time.UTC) },
		8:  func(e *Entry) { e.Time = time.Date(1600, 2, 29, 12, 0, 0, 0, time.UTC) },
		9:  func(e *Entry) { e.Time = time.Date(2300, 1, 1, 0, 0, 0, 0, time.UTC) },
		10: func(e *Entry) { e.Time = fzFilterBase.Add(time.Minute) },
		11: func(e *Entry) { e.Time = fzFilterBase.Add(time.Minute) },
		12: func(e *Entry) { e.RequestID = "𝄞\u202e" },
		13: func(e *Entry) { e.EventType = "USER.LOGIN" },
	}
	for i := 0; i < n; i++ {
		e := sampleEntry(i)
		e.Time = fzFilterBase.Add(time.Duration((i*37)%n) * time.Minute).Add(time.Duration(i) * time.Nanosecond)
		if i%4 == 0 {
			e.EventType = "user.logout"
		}
		if fn := special[i]; fn != nil {
			fn(&e)
		}
		require.NoError(tb, s.Record(ctx, e))
	}
	require.NoError(tb, s.Flush(ctx))
	all, err := s.List(ctx, Filter{Limit: MaxListLimit})
	require.NoError(tb, err)
	require.Len(tb, all, n)
	return all
}

// fzFilterTime maps fuzzed numbers to a Filter time: zero for (0, 0),
// else sec seconds and nsec nanoseconds from fzFilterBase (any int64, so
// any wrap-around), in a fixed zone zoneMin minutes east.
func fzFilterTime(sec, nsec int64, zoneMin int16) time.Time {
	if sec == 0 && nsec == 0 {
		return time.Time{}
	}
	return time.Unix(fzFilterBase.Unix()+sec, nsec).In(time.FixedZone("fz", int(zoneMin)*60))
}

// fzFilterValid is the model of Filter validation: strings no entry can
// hold and times outside years 1 through 9999 (UTC) are refused, and so is
// a List Limit outside 0 through 10000.
func fzFilterValid(f Filter, list bool) bool {
	if list && (f.Limit < 0 || f.Limit > 10000) {
		return false
	}
	for _, v := range []string{f.Actor, f.EventType, f.Resource, f.Outcome, f.RequestID} {
		if !utf8.ValidString(v) || strings.ContainsRune(v, 0) {
			return false
		}
	}
	for _, t := range []time.Time{f.Since, f.Until} {
		if y := t.UTC().Year(); !t.IsZero() && (y < 1 || y > 9999) {
			return false
		}
	}
	return true
}

func FuzzFilter(f *testing.F) {
	// actor, eventType, resource, outcome, requestID, sinceSec, sinceNsec, untilSec, untilNsec, zoneMin, afterID, beforeID, limit, desc
	f.Add("", "", "", "", "", int64(0), int64(0), int64(0), int64(0), int16(0), int64(0), int64(0), 0, false)
	f.Add("user-3", "", "", "", "", int64(0), int64(0), int64(0), int64(0), int16(0), int64(0), int64(0), 0, false)
	f.Add("é", "", "", "", "", int64(0), int64(0), int64(0), int64(0), int16(0), int64(0), int64(0), 0, true)
	f.Add("e\u0301", "", "", "", "", int64(0), int64(0), int64(0), int64(0), int16(0), int64(0), int64(0), 0, false)
	f.Add("user-2", "", "", "", "", int64(0), int64(0), int64(0), int64(0), int16(0), int64(0), int64(0), 0, false) // not "User-2"
	f.Add("user-%", "", "", "", "", int64(0), int64(0), int64(0), int64(0), int16(0), int64(0), int64(0), 0, false) // not a LIKE pattern
	f.Add("user-1", "", "", "", "", int64(0), int64(0), int64(0), int64(0), int16(0), int64(0), int64(0), 0, false) // not "user-1 "
	f.Add("", "user.login", "doc/5", "denied", "", int64(0), int64(0), int64(0), int64(0), int16(0), int64(0), int64(0), 0, false)
	f.Add("", "", "", "", "req-42", int64(0), int64(0), int64(0), int64(0), int16(0), int64(0), int64(0), 0, false)
	f.Add("", "", "", "", "𝄞\u202e", int64(0), int64(0), int64(0), int64(0), int16(0), int64(0), int64(0), 0, false)
	f.Add("", "", "", "", "", int64(60), int64(0), int64(0), int64(0), int16(0), int64(0), int64(0), 0, false)           // since the shared time, exactly
	f.Add("", "", "", "", "", int64(0), int64(0), int64(60), int64(0), int16(0), int64(0), int64(0), 0, false)           // until the shared time, exactly
	f.Add("", "", "", "", "", int64(0), int64(0), int64(60), int64(1), int16(0), int64(0), int64(0), 0, false)           // until 1 ns past it
	f.Add("", "", "", "", "", int64(1200), int64(0), int64(4800), int64(0), int16(-420), int64(0), int64(0), 50, true)   // a window, another zone
	f.Add("", "", "", "", "", int64(-63913190400), int64(1), int64(0), int64(0), int16(0), int64(0), int64(0), 0, false) // since year 1 + 1 ns
	f.Add("", "", "", "", "", int64(-63913190401), int64(0), int64(0), int64(0), int16(0), int64(0), int64(0), 0, false) // since year 0: invalid
	f.Add("", "", "", "", "", int64(0), int64(0), int64(251624707200), int64(0), int16(0), int64(0), int64(0), 0, false) // until year 10000: invalid
	f.Add("", "", "", "", "", int64(0), int64(0), int64(0), int64(0), int16(0), int64(100), int64(120), 0, false)
	f.Add("", "", "", "", "", int64(0), int64(0), int64(0), int64(0), int16(0), int64(-5), int64(0), 10000, true)
	f.Add("", "", "", "", "", int64(0), int64(0), int64(0), int64(0), int16(0), int64(0), int64(0), 10001, false) // Limit too large
	f.Add("", "", "", "", "", int64(0), int64(0), int64(0), int64(0), int16(0), int64(0), int64(0), -1, false)    // negative Limit
	f.Add("a\x00", "", "", "", "", int64(0), int64(0), int64(0), int64(0), int16(0), int64(0), int64(0), 0, false)
	f.Add("", "\xff", "", "", "", int64(0), int64(0), int64(0), int64(0), int16(0), int64(0), int64(0), 0, false)
	f.Add("", "", "", "", "", int64(-9223372036854775808), int64(-1), int64(9223372036854775807), int64(9223372036854775807), int16(-32768), int64(-9223372036854775808), int64(9223372036854775807), 1, true)

	ctx := context.Background()
	s := newServiceAt(f, WithSQLite(":memory:"), WithLogger(testutil.Discard()))
	all := fzDataset(f, s)

	f.Fuzz(func(t *testing.T, actor, eventType, resource, outcome, requestID string, sinceSec, sinceNsec, untilSec, untilNsec int64, zoneMin int16, afterID, beforeID int64, limit int, desc bool) {
		flt := Filter{
			Actor:     actor,
			EventType: eventType,
			Resource:  resource,
			Outcome:   outcome,
			RequestID: requestID,
			Since:     fzFilterTime(sinceSec, sinceNsec, zoneMin),
			Until:     fzFilterTime(untilSec, untilNsec, zoneMin),
			AfterID:   afterID,
			BeforeID:  beforeID,
			Limit:     limit,
			Desc:      desc,
		}

		got, err := s.List(ctx, flt)
		if fzFilterValid(flt, true) {
			require.NoError(t, err)
			assert.Equal(t, ids(modelList(all, flt)), ids(got))
			for i, e := range got {
				require.True(t, flt.matches(e), "entry %d does not match", e.ID)
				if i > 0 {
					assert.Equal(t, desc, e.ID < got[i-1].ID, "ID order")
				}
			}
		} else {
			require.ErrorIs(t, err, ErrInvalidFilter)
			assert.Nil(t, got)
		}

		n, err := s.Count(ctx, flt)
		if fzFilterValid(flt, false) {
			require.NoError(t, err)
			want := 0
			for _, e := range all {
				if flt.matches(e) {
					want++
				}
			}
			assert.Equal(t, int64(want), n)
		} else {
			require.ErrorIs(t, err, ErrInvalidFilter)
		}
	})
}
