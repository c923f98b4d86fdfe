package audit

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"math"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"gorm.io/driver/sqlite"
	"gorm.io/gorm"
)

var hexHash = regexp.MustCompile(`^[0-9a-f]{64}$`)

func TestNewValidatesOptions(t *testing.T) {
	memDB, err := gorm.Open(sqlite.Open("file:/audit-test-new?vfs=memdb"), &gorm.Config{})
	require.NoError(t, err)
	t.Cleanup(func() { closeGorm(memDB) })

	tests := []struct {
		name   string
		opts   []Option
		option string // the option the error must name
	}{
		{"queue size zero", []Option{WithQueueSize(0)}, "WithQueueSize"},
		{"queue size negative", []Option{WithQueueSize(-1)}, "WithQueueSize"},
		{"batch size zero", []Option{WithBatchSize(0)}, "WithBatchSize"},
		{"table with space", []Option{WithTable("audit log")}, "WithTable"},
		{"table injection", []Option{WithTable(`x"; DROP TABLE users; --`)}, "WithTable"},
		{"table leading digit", []Option{WithTable("1audit")}, "WithTable"},
		{"table too long", []Option{WithTable("a" + strings.Repeat("b", 63))}, "WithTable"},
		{"table empty", []Option{WithTable("")}, "WithTable"},
		{"table reserved", []Option{WithTable(chainTable)}, "WithTable"},
		{"negative retention", []Option{WithRetention(-time.Second)}, "WithRetention"},
		{"empty sqlite path", []Option{WithSQLite("")}, "WithSQLite"},
		{"empty chain key", []Option{WithChainKey(nil)}, "WithChainKey"},
		{"nil dialector", []Option{WithDialector(nil)}, "WithDialector"},
		{"nil db", []Option{WithDB(nil)}, "WithDB"},
		{"nil logger", []Option{WithLogger(nil)}, "WithLogger"},
		{"nil clock", []Option{WithClock(nil)}, "WithClock"},
		{"unknown overflow", []Option{WithOverflow(OverflowPolicy(7))}, "WithOverflow"},
		{"empty redact key", []Option{WithRedactKeys(nil, "password")}, "WithRedactKeys"},
		{"sqlite and dialector", []Option{WithSQLite("a.db"), WithDialector(sqlite.Open("b.db"))}, "WithSQLite, WithDialector"},
		{"sqlite and db", []Option{WithSQLite("a.db"), WithDB(memDB)}, "WithDB"},
		{"nil option", []Option{nil}, "nil Option"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s, err := New(tt.opts...)
			require.Error(t, err)
			assert.Nil(t, s)
			assert.Contains(t, err.Error(), tt.option)
		})
	}

	t.Run("boundaries accepted", func(t *testing.T) {
		s, err := New(WithSQLite(tempDB(t)), WithQueueSize(1), WithBatchSize(1),
			WithTable("_"+strings.Repeat("a", 62)), WithRetention(0), WithChainKey([]byte{0}))
		require.NoError(t, err)
		require.NoError(t, s.Close())
	})
}

func TestNewDoesNotTouchDatabase(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "missing")
	s, err := New(WithSQLite(filepath.Join(dir, "audit.db")))
	require.NoError(t, err)
	require.NoError(t, s.Close())
	_, err = os.Stat(dir)
	assert.True(t, os.IsNotExist(err), "New or Close created %s", dir)
}

func TestRoundTrip(t *testing.T) {
	forEachBackend(t, func(t *testing.T, st *store) {
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
		for _, e := range in {
			require.NoError(t, s.Record(ctx, e))
		}
		require.NoError(t, s.Flush(ctx))

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
func jsonRoundTrip(t *testing.T, d map[string]any) map[string]any {
	t.Helper()
	if len(d) == 0 {
		return nil
	}
	b, err := json.Marshal(d)
	require.NoError(t, err)
	var out map[string]any
	require.NoError(t, json.Unmarshal(b, &out))
	return out
}

func TestDetailsNilAndEmptyReadBackNil(t *testing.T) {
	forEachBackend(t, func(t *testing.T, st *store) {
		ctx := context.Background()
		s := st.service(t)
		require.NoError(t, s.Record(ctx, Entry{EventType: "e", Actor: "a", Details: nil}))
		require.NoError(t, s.Record(ctx, Entry{EventType: "e", Actor: "a", Details: map[string]any{}}))
		require.NoError(t, s.Flush(ctx))
		for id := int64(1); id <= 2; id++ {
			e, err := s.Get(ctx, id)
			require.NoError(t, err)
			assert.Nil(t, e.Details)
		}
	})
}

func TestRecordValidation(t *testing.T) {
	forEachBackend(t, func(t *testing.T, st *store) {
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
	forEachBackend(t, func(t *testing.T, st *store) {
		ctx := context.Background()
		s := st.service(t)
		require.NoError(t, s.Record(ctx, Entry{ID: 99, PrevHash: "bogus", Hash: "bogus", EventType: "e", Actor: "a"}))
		require.NoError(t, s.Flush(ctx))
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
	forEachBackend(t, func(t *testing.T, st *store) {
		ctx := context.Background()
		now := time.Date(2030, 6, 7, 8, 9, 10, 11, time.FixedZone("x", 3600))
		s := st.service(t, WithClock(func() time.Time { return now }))
		require.NoError(t, s.Record(ctx, Entry{EventType: "e", Actor: "a"}))
		require.NoError(t, s.Flush(ctx))
		e, err := s.Get(ctx, 1)
		require.NoError(t, err)
		assert.True(t, e.Time.Equal(now), "got %v", e.Time)
	})
}

func TestRecordTakesActorAndRequestIDFromContext(t *testing.T) {
	forEachBackend(t, func(t *testing.T, st *store) {
		s := st.service(t)
		ctx := ContextWithRequestID(ContextWithActor(context.Background(), "carol"), "req-1")
		require.NoError(t, s.Record(ctx, Entry{EventType: "e"}))
		require.NoError(t, s.Record(ctx, Entry{EventType: "e", Actor: "dave", RequestID: "req-2"}))
		require.NoError(t, s.Flush(ctx))
		list, err := s.List(ctx, Filter{})
		require.NoError(t, err)
		require.Len(t, list, 2)
		assert.Equal(t, "carol", list[0].Actor)
		assert.Equal(t, "req-1", list[0].RequestID)
		assert.Equal(t, "dave", list[1].Actor, "an explicit Actor wins")
		assert.Equal(t, "req-2", list[1].RequestID)

		a, ok := ActorFromContext(context.Background())
		assert.False(t, ok)
		assert.Empty(t, a)
	})
}

func TestGetNotFound(t *testing.T) {
	forEachBackend(t, func(t *testing.T, st *store) {
		s := st.service(t)
		for _, id := range []int64{0, -1, 1, math.MaxInt64} {
			_, err := s.Get(context.Background(), id)
			require.ErrorIs(t, err, ErrNotFound, "id %d", id)
		}
	})
}

// modelEntries records n entries with varied fields and times (not in ID
// order) and returns them as committed.
func modelEntries(t *testing.T, s *AuditService, n int) []Entry {
	t.Helper()
	ctx := context.Background()
	base := time.Date(2026, 5, 1, 0, 0, 0, 0, time.UTC)
	for i := 0; i < n; i++ {
		e := sampleEntry(i)
		// Times go back and forth, so that time order is not ID order.
		e.Time = base.Add(time.Duration((i*37)%n) * time.Minute).Add(time.Duration(i) * time.Nanosecond)
		require.NoError(t, s.Record(ctx, e))
	}
	require.NoError(t, s.Flush(ctx))
	all, err := s.List(ctx, Filter{Limit: MaxListLimit})
	require.NoError(t, err)
	require.Len(t, all, n)
	return all
}

// matches is the in-memory model of a Filter.
func (f Filter) matches(e Entry) bool {
	return (f.Actor == "" || e.Actor == f.Actor) &&
		(f.EventType == "" || e.EventType == f.EventType) &&
		(f.Resource == "" || e.Resource == f.Resource) &&
		(f.Outcome == "" || e.Outcome == f.Outcome) &&
		(f.RequestID == "" || e.RequestID == f.RequestID) &&
		(f.Since.IsZero() || !e.Time.Before(f.Since)) &&
		(f.Until.IsZero() || e.Time.Before(f.Until)) &&
		(f.AfterID == 0 || e.ID > f.AfterID) &&
		(f.BeforeID == 0 || e.ID < f.BeforeID)
}

func modelList(all []Entry, f Filter) []Entry {
	var out []Entry
	for _, e := range all {
		if f.matches(e) {
			out = append(out, e)
		}
	}
	if f.Desc {
		sort.Slice(out, func(i, j int) bool { return out[i].ID > out[j].ID })
	}
	limit := f.Limit
	if limit == 0 {
		limit = DefaultListLimit
	}
	if len(out) > limit {
		out = out[:limit]
	}
	return out
}

func TestFiltersAgreeWithModel(t *testing.T) {
	forEachBackend(t, func(t *testing.T, st *store) {
		ctx := context.Background()
		s := st.service(t)
		all := modelEntries(t, s, 300)
		base := time.Date(2026, 5, 1, 0, 0, 0, 0, time.UTC)
		local := time.FixedZone("local", -7*3600)

		filters := map[string]Filter{
			"none":                 {},
			"actor":                {Actor: "user-3"},
			"event type":           {EventType: "user.login"},
			"event type none":      {EventType: "user.logout"},
			"resource":             {Resource: "doc/5"},
			"outcome":              {Outcome: "denied"},
			"request id":           {RequestID: "req-123"},
			"since":                {Since: base.Add(100 * time.Minute)},
			"until":                {Until: base.Add(50 * time.Minute)},
			"window":               {Since: base.Add(20 * time.Minute), Until: base.Add(80 * time.Minute)},
			"window in other zone": {Since: base.Add(20 * time.Minute).In(local), Until: base.Add(80 * time.Minute).In(local)},
			"since exact ns":       {Since: all[10].Time},
			"until exact ns":       {Until: all[10].Time},
			"after id":             {AfterID: 250},
			"before id":            {BeforeID: 20},
			"id range":             {AfterID: 100, BeforeID: 120},
			"actor and outcome":    {Actor: "user-2", Outcome: "failure"},
			"actor window desc":    {Actor: "user-1", Since: base.Add(10 * time.Minute), Until: base.Add(200 * time.Minute), Desc: true},
			"desc limit":           {Desc: true, Limit: 7},
			"limit":                {Limit: 13},
			"everything":           {Actor: "user-4", EventType: "user.login", Resource: "doc/4", Outcome: "success", Since: base, Until: base.Add(300 * time.Minute), AfterID: 1, BeforeID: 299},
			"default limit":        {Limit: 0},
		}
		for name, f := range filters {
			t.Run(name, func(t *testing.T) {
				want := modelList(all, f)
				got, err := s.List(ctx, f)
				require.NoError(t, err)
				assert.Equal(t, ids(want), ids(got))

				unlimited := f
				unlimited.Limit, unlimited.Desc = MaxListLimit, false
				n, err := s.Count(ctx, f)
				require.NoError(t, err)
				assert.Equal(t, int64(len(modelList(all, unlimited))), n)
			})
		}
		// The model must have been exercised: these filters select something.
		assert.NotEmpty(t, modelList(all, filters["actor window desc"]))
		assert.NotEmpty(t, modelList(all, filters["everything"]))
	})
}

func ids(es []Entry) []int64 {
	out := make([]int64, 0, len(es))
	for _, e := range es {
		out = append(out, e.ID)
	}
	return out
}

func TestKeysetPagination(t *testing.T) {
	forEachBackend(t, func(t *testing.T, st *store) {
		ctx := context.Background()
		s := st.service(t)
		all := modelEntries(t, s, 250)
		want := modelList(all, Filter{Actor: "user-5", Limit: MaxListLimit})

		var asc []int64
		for f := (Filter{Actor: "user-5", Limit: 6}); ; {
			page, err := s.List(ctx, f)
			require.NoError(t, err)
			if len(page) == 0 {
				break
			}
			asc = append(asc, ids(page)...)
			f.AfterID = page[len(page)-1].ID
		}
		assert.Equal(t, ids(want), asc)

		var desc []int64
		for f := (Filter{Actor: "user-5", Limit: 6, Desc: true}); ; {
			page, err := s.List(ctx, f)
			require.NoError(t, err)
			if len(page) == 0 {
				break
			}
			desc = append(desc, ids(page)...)
			f.BeforeID = page[len(page)-1].ID
		}
		sort.Slice(desc, func(i, j int) bool { return desc[i] < desc[j] })
		assert.Equal(t, ids(want), desc)
	})
}

func TestListLimitRules(t *testing.T) {
	forEachBackend(t, func(t *testing.T, st *store) {
		ctx := context.Background()
		s := st.service(t, WithBatchSize(512))
		for i := 0; i < 150; i++ {
			require.NoError(t, s.Record(ctx, Entry{EventType: "e", Actor: "a"}))
		}
		require.NoError(t, s.Flush(ctx))

		got, err := s.List(ctx, Filter{})
		require.NoError(t, err)
		assert.Len(t, got, DefaultListLimit, "Limit 0 means 100")
		got, err = s.List(ctx, Filter{Limit: MaxListLimit})
		require.NoError(t, err)
		assert.Len(t, got, 150)

		for _, f := range []Filter{
			{Limit: -1}, {Limit: MaxListLimit + 1},
			{Actor: "a\xff"}, {Resource: "\x00"},
			{Since: time.Date(10000, 1, 1, 0, 0, 0, 0, time.UTC)},
			{Until: time.Date(-1, 1, 1, 0, 0, 0, 0, time.UTC)},
		} {
			_, err := s.List(ctx, f)
			require.ErrorIs(t, err, ErrInvalidFilter, "%+v", f)
		}
		_, err = s.List(ctx, Filter{Limit: -1})
		assert.Contains(t, err.Error(), "Limit")
		_, err = s.Count(ctx, Filter{Limit: -1, Desc: true})
		require.NoError(t, err, "Count ignores Limit")
		_, err = s.Count(ctx, Filter{Since: time.Date(10000, 1, 1, 0, 0, 0, 0, time.UTC)})
		require.ErrorIs(t, err, ErrInvalidFilter)
		assert.Contains(t, err.Error(), "Since")
	})
}

func TestQueuedEntriesAreNotVisibleUntilFlush(t *testing.T) {
	forEachBackend(t, func(t *testing.T, st *store) {
		ctx := context.Background()
		s := st.service(t)
		require.NoError(t, s.Record(ctx, sampleEntry(0)))
		require.NoError(t, s.Flush(ctx)) // opens the database and creates the table
		release := st.holdWriteLock(t)
		require.NoError(t, s.Record(ctx, sampleEntry(1)))
		n, err := s.Count(ctx, Filter{})
		require.NoError(t, err)
		assert.Equal(t, int64(1), n, "a queued entry is not visible")
		assert.Equal(t, 1, s.Stats().Queued)
		release()
		require.NoError(t, s.Flush(ctx))
		n, err = s.Count(ctx, Filter{})
		require.NoError(t, err)
		assert.Equal(t, int64(2), n)
		assert.Equal(t, 0, s.Stats().Queued)
	})
}

func TestSyncModeCommitsBeforeReturning(t *testing.T) {
	forEachBackend(t, func(t *testing.T, st *store) {
		ctx := context.Background()
		s := st.service(t, WithAsync(false))
		for i := 0; i < 5; i++ {
			require.NoError(t, s.Record(ctx, sampleEntry(i)))
			// Visible without Flush: Record waited for the commit.
			e, err := s.Get(ctx, int64(i+1))
			require.NoError(t, err)
			assert.Equal(t, fmt.Sprintf("req-%d", i), e.RequestID)
		}
	})
}

func TestSyncModeGroupCommit(t *testing.T) {
	forEachBackend(t, func(t *testing.T, st *store) {
		ctx := context.Background()
		s := st.service(t, WithAsync(false))
		const callers, each = 64, 10
		start := make(chan struct{})
		var wg sync.WaitGroup
		errs := make(chan error, callers*each)
		for g := 0; g < callers; g++ {
			wg.Add(1)
			go func() {
				defer wg.Done()
				<-start
				for i := 0; i < each; i++ {
					errs <- s.Record(ctx, Entry{EventType: "e", Actor: fmt.Sprintf("g%d", g)})
				}
			}()
		}
		close(start)
		wg.Wait()
		close(errs)
		for err := range errs {
			require.NoError(t, err)
		}
		stats := s.Stats()
		assert.Equal(t, uint64(callers*each), stats.Written)
		assert.Less(t, stats.Batches, stats.Written, "concurrent sync callers share transactions")
		assert.Equal(t, 0, stats.Queued)
	})
}

func TestSyncRecordCtxEndsEntryStaysQueued(t *testing.T) {
	forEachBackend(t, func(t *testing.T, st *store) {
		s := st.service(t, WithAsync(false))
		require.NoError(t, s.Record(context.Background(), sampleEntry(0)))
		release := st.holdWriteLock(t)
		ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
		defer cancel()
		err := s.Record(ctx, sampleEntry(1))
		require.ErrorIs(t, err, context.DeadlineExceeded)
		release()
		require.NoError(t, s.Flush(context.Background()))
		e, err := s.Get(context.Background(), 2)
		require.NoError(t, err, "the entry stayed queued and was committed")
		assert.Equal(t, "req-1", e.RequestID)
	})
}

func TestOverflowFail(t *testing.T) {
	forEachBackend(t, func(t *testing.T, st *store) {
		ctx := context.Background()
		const queue, batch = 4, 2
		s := st.service(t, WithOverflow(OverflowFail), WithQueueSize(queue), WithBatchSize(batch))
		require.NoError(t, s.Record(ctx, sampleEntry(0)))
		require.NoError(t, s.Flush(ctx))
		release := st.holdWriteLock(t)

		accepted := 1
		var full error
		for i := 1; i <= queue+batch+1; i++ {
			if err := s.Record(ctx, sampleEntry(i)); err != nil {
				full = err
				break
			}
			accepted++
		}
		require.ErrorIs(t, full, ErrQueueFull)
		// The writer holds at most one batch; the queue holds the rest.
		assert.LessOrEqual(t, accepted-1, queue+batch)
		assert.GreaterOrEqual(t, accepted-1, queue)
		assert.Equal(t, uint64(1), s.Stats().Rejected)

		release()
		require.NoError(t, s.Flush(ctx))
		n, err := s.Count(ctx, Filter{})
		require.NoError(t, err)
		assert.Equal(t, int64(accepted), n, "every accepted entry committed, none of the refused")
		_, err = s.Verify(ctx)
		require.NoError(t, err)
	})
}

func TestOverflowBlock(t *testing.T) {
	forEachBackend(t, func(t *testing.T, st *store) {
		ctx := context.Background()
		const queue = 3
		s := st.service(t, WithQueueSize(queue), WithBatchSize(1))
		require.NoError(t, s.Record(ctx, sampleEntry(0)))
		require.NoError(t, s.Flush(ctx))
		release := st.holdWriteLock(t)

		accepted := 1
		var blocked error
		for i := 1; i <= queue+2; i++ {
			tctx, cancel := context.WithTimeout(ctx, 100*time.Millisecond)
			err := s.Record(tctx, sampleEntry(i))
			cancel()
			if err != nil {
				blocked = err
				break
			}
			accepted++
		}
		require.ErrorIs(t, blocked, ErrQueueFull)
		require.ErrorIs(t, blocked, context.DeadlineExceeded)

		// A blocked Record goes through once the writer makes room.
		done := make(chan error, 1)
		go func() { done <- s.Record(ctx, Entry{EventType: "e", Actor: "late"}) }()
		release()
		require.NoError(t, <-done)
		require.NoError(t, s.Flush(ctx))
		n, err := s.Count(ctx, Filter{})
		require.NoError(t, err)
		assert.Equal(t, int64(accepted+1), n)
	})
}

func TestFailedOpenIsRetried(t *testing.T) {
	forEachBackend(t, func(t *testing.T, st *store) {
		ctx := context.Background()
		d := countOpens(st.dialector(), 2)
		logs := &logBuffer{}
		s := newServiceAt(t, WithDialector(d), WithTable(st.table), WithLogger(logs.jsonLogger()))
		for i := 1; i <= 2; i++ {
			_, err := s.Count(ctx, Filter{})
			require.ErrorIs(t, err, errInjectedOpen)
			assert.Equal(t, uint64(i), s.Stats().Failures)
		}
		n, err := s.Count(ctx, Filter{})
		require.NoError(t, err)
		assert.Zero(t, n)
		assert.Equal(t, int64(3), d.opens.Load())
		_, err = s.List(ctx, Filter{})
		require.NoError(t, err)
		assert.Equal(t, int64(3), d.opens.Load(), "an open database is not opened again")
		assert.Contains(t, logs.String(), "injected open failure", "failures are logged through the service's logger")
	})
}

func TestMissingDirectoryRecovered(t *testing.T) {
	ctx := context.Background()
	dir := filepath.Join(t.TempDir(), "later")
	s := newServiceAt(t, WithSQLite(filepath.Join(dir, "audit.db")), WithLogger(discardLogger()))
	for i := 0; i < 20; i++ {
		require.NoError(t, s.Record(ctx, sampleEntry(i)))
	}
	waitFor(t, 5*time.Second, func() bool { return s.Stats().Failures >= 2 }, "failed opens")
	assert.Equal(t, 20, s.Stats().Queued, "entries stay queued")
	_, err := os.Stat(dir)
	require.True(t, os.IsNotExist(err), "the library does not create directories")

	require.NoError(t, os.Mkdir(dir, 0o755))
	fctx, cancel := context.WithTimeout(ctx, 15*time.Second)
	defer cancel()
	require.NoError(t, s.Flush(fctx))
	list, err := s.List(ctx, Filter{})
	require.NoError(t, err)
	require.Len(t, list, 20)
	for i, e := range list {
		assert.Equal(t, fmt.Sprintf("req-%d", i), e.RequestID, "order kept")
	}
	_, err = s.Verify(ctx)
	require.NoError(t, err)
}

func TestWriteFailureRetriedInOrder(t *testing.T) {
	forEachBackend(t, func(t *testing.T, st *store) {
		ctx := context.Background()
		s := st.service(t, WithLogger(discardLogger()))
		require.NoError(t, s.Record(ctx, sampleEntry(0)))
		require.NoError(t, s.Flush(ctx))

		// A real fault: the table disappears under the writer.
		st.exec(t, `ALTER TABLE $TABLE RENAME TO $AWAY`)
		for i := 1; i <= 30; i++ {
			require.NoError(t, s.Record(ctx, sampleEntry(i)))
		}
		waitFor(t, 5*time.Second, func() bool { return s.Stats().Failures >= 2 }, "failed writes")

		fctx, cancel := context.WithTimeout(ctx, 20*time.Millisecond)
		err := s.Flush(fctx)
		cancel()
		require.ErrorIs(t, err, context.DeadlineExceeded)
		assert.Contains(t, err.Error(), st.table, "Flush wraps the last write error, which names the missing table")

		st.exec(t, `ALTER TABLE $AWAY RENAME TO $TABLE`)
		fctx, cancel = context.WithTimeout(ctx, 15*time.Second)
		defer cancel()
		require.NoError(t, s.Flush(fctx))
		list, err := s.List(ctx, Filter{})
		require.NoError(t, err)
		require.Len(t, list, 31)
		for i, e := range list {
			assert.Equal(t, fmt.Sprintf("req-%d", i), e.RequestID)
		}
		_, err = s.Verify(ctx)
		require.NoError(t, err)
	})
}

func TestBatchesNeverExceedBatchSize(t *testing.T) {
	forEachBackend(t, func(t *testing.T, st *store) {
		ctx := context.Background()
		const batch, n = 10, 95
		s := st.service(t, WithBatchSize(batch))
		require.NoError(t, s.Flush(ctx))
		_, err := s.Count(ctx, Filter{}) // open, so the lock below is the only obstacle
		require.NoError(t, err)
		release := st.holdWriteLock(t)
		for i := 0; i < n; i++ {
			require.NoError(t, s.Record(ctx, sampleEntry(i)))
		}
		release()
		require.NoError(t, s.Flush(ctx))
		stats := s.Stats()
		assert.Equal(t, uint64(n), stats.Written)
		assert.GreaterOrEqual(t, stats.Batches, uint64((n+batch-1)/batch))
	})
}

func TestShutdownDrainsEverything(t *testing.T) {
	forEachBackend(t, func(t *testing.T, st *store) {
		ctx := context.Background()
		s, err := New(append(st.opts(), WithBatchSize(64))...)
		require.NoError(t, err)
		for i := 0; i < 1000; i++ {
			require.NoError(t, s.Record(ctx, sampleEntry(i)))
		}
		require.NoError(t, s.Shutdown(ctx))
		require.ErrorIs(t, s.Record(ctx, sampleEntry(0)), ErrClosed)
		assert.Equal(t, uint64(1000), s.Stats().Written)

		s2 := st.service(t)
		n, err := s2.Count(ctx, Filter{})
		require.NoError(t, err)
		assert.Equal(t, int64(1000), n)
	})
}

func TestShutdownTimeoutLogsUncommitted(t *testing.T) {
	forEachBackend(t, func(t *testing.T, st *store) {
		ctx := context.Background()
		logs := &logBuffer{}
		s := st.service(t, WithLogger(logs.jsonLogger()))
		require.NoError(t, s.Record(ctx, sampleEntry(0)))
		require.NoError(t, s.Flush(ctx))
		release := st.holdWriteLock(t)
		defer release()
		for i := 1; i <= 5; i++ {
			require.NoError(t, s.Record(ctx, sampleEntry(i)))
		}

		sctx, cancel := context.WithTimeout(ctx, 200*time.Millisecond)
		defer cancel()
		start := time.Now()
		err := s.Shutdown(sctx)
		elapsed := time.Since(start)
		require.Error(t, err)
		assert.Contains(t, err.Error(), "audit: shutdown: 5 entries not committed")
		require.ErrorIs(t, err, context.DeadlineExceeded)
		assert.Less(t, elapsed, 1200*time.Millisecond, "Shutdown returns within a second of its ctx's end")
		assert.Equal(t, err, s.Shutdown(ctx), "later calls return the first result")
		assert.Equal(t, 0, s.Stats().Queued)

		// Each uncommitted entry is one JSON line, recoverable from the log.
		found := map[string]bool{}
		for _, line := range strings.Split(strings.TrimSpace(logs.String()), "\n") {
			var rec struct {
				Msg   string `json:"msg"`
				Entry string `json:"entry"`
			}
			require.NoError(t, json.Unmarshal([]byte(line), &rec), line)
			if rec.Msg != "audit: entry not committed" {
				continue
			}
			var e struct {
				RequestID string         `json:"request_id"`
				Actor     string         `json:"actor"`
				Details   map[string]any `json:"details"`
			}
			require.NoError(t, json.Unmarshal([]byte(rec.Entry), &e))
			found[e.RequestID] = true
			assert.NotEmpty(t, e.Actor)
			assert.Equal(t, "10.0.0.1", e.Details["ip"])
		}
		assert.Equal(t, map[string]bool{"req-1": true, "req-2": true, "req-3": true, "req-4": true, "req-5": true}, found)
	})
}

func TestClosedServiceRefuses(t *testing.T) {
	forEachBackend(t, func(t *testing.T, st *store) {
		ctx := context.Background()
		s := st.service(t)
		require.NoError(t, s.Record(ctx, sampleEntry(0)))
		require.NoError(t, s.Close())
		require.NoError(t, s.Close(), "idempotent")
		require.ErrorIs(t, s.Record(ctx, sampleEntry(1)), ErrClosed)
		require.ErrorIs(t, s.Flush(ctx), ErrClosed)
		_, err := s.Get(ctx, 1)
		require.ErrorIs(t, err, ErrClosed)
		_, err = s.List(ctx, Filter{})
		require.ErrorIs(t, err, ErrClosed)
		_, err = s.Count(ctx, Filter{})
		require.ErrorIs(t, err, ErrClosed)
		_, err = s.Prune(ctx, time.Now())
		require.ErrorIs(t, err, ErrClosed)
		_, err = s.Verify(ctx)
		require.ErrorIs(t, err, ErrClosed)
		stats := s.Stats()
		assert.Equal(t, uint64(1), stats.Written)
		assert.Equal(t, uint64(1), stats.Rejected)
	})
}

func TestPruneDeletesPrefixOnly(t *testing.T) {
	forEachBackend(t, func(t *testing.T, st *store) {
		ctx := context.Background()
		s := st.service(t)
		base := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
		// Times: old, old, new, old, new. Prune stops at the first new one.
		for i, h := range []int{0, 1, 10, 2, 11} {
			e := sampleEntry(i)
			e.Time = base.Add(time.Duration(h) * time.Hour)
			require.NoError(t, s.Record(ctx, e))
		}
		require.NoError(t, s.Flush(ctx))
		n, err := s.Prune(ctx, base.Add(5*time.Hour))
		require.NoError(t, err)
		assert.Equal(t, int64(2), n)
		list, err := s.List(ctx, Filter{})
		require.NoError(t, err)
		assert.Equal(t, []int64{3, 4, 5}, ids(list))

		rep, err := s.Verify(ctx)
		require.NoError(t, err, "pruning is not tampering")
		assert.Equal(t, VerifyReport{Entries: 3, FirstID: 3, LastID: 5, Head: list[2].Hash}, rep)

		// The cut is exclusive: an entry exactly at before stays.
		n, err = s.Prune(ctx, base.Add(10*time.Hour))
		require.NoError(t, err)
		assert.Zero(t, n)
		n, err = s.Prune(ctx, base.Add(10*time.Hour+1))
		require.NoError(t, err)
		assert.Equal(t, int64(2), n)
	})
}

func TestPruneEverythingThenChainContinues(t *testing.T) {
	forEachBackend(t, func(t *testing.T, st *store) {
		ctx := context.Background()
		s := st.service(t)
		for i := 0; i < 2500; i++ { // several prune transactions
			require.NoError(t, s.Record(ctx, sampleEntry(i)))
		}
		require.NoError(t, s.Flush(ctx))
		last, err := s.Get(ctx, 2500)
		require.NoError(t, err)

		n, err := s.Prune(ctx, time.Date(10000, 1, 1, 0, 0, 0, 0, time.UTC))
		require.NoError(t, err)
		assert.Equal(t, int64(2500), n)
		rep, err := s.Verify(ctx)
		require.NoError(t, err)
		assert.Equal(t, VerifyReport{Head: last.Hash}, rep, "an empty log still has its head")

		require.NoError(t, s.Record(ctx, sampleEntry(9)))
		require.NoError(t, s.Flush(ctx))
		e, err := s.Get(ctx, 2501)
		require.NoError(t, err, "IDs continue after a full prune")
		assert.Equal(t, last.Hash, e.PrevHash, "the chain continues from the pruned head")
		rep, err = s.Verify(ctx)
		require.NoError(t, err)
		assert.Equal(t, int64(2501), rep.FirstID)
	})
}

func TestVerifyDetectsTampering(t *testing.T) {
	tamper := []struct {
		name string
		sql  string
		id   int64 // the first bad ID Verify must name
	}{
		{"altered actor", `UPDATE $TABLE SET actor = 'mallory' WHERE id = 5`, 5},
		{"altered time", `UPDATE $TABLE SET time = '2020-01-01T00:00:00.000000000Z' WHERE id = 7`, 7},
		{"altered details", `UPDATE $TABLE SET details = '{"i":1}' WHERE id = 3`, 3},
		{"details removed", `UPDATE $TABLE SET details = NULL WHERE id = 4`, 4},
		{"altered hash", `UPDATE $TABLE SET hash = '` + strings.Repeat("0", 64) + `' WHERE id = 6`, 6},
		{"removed from the middle", `DELETE FROM $TABLE WHERE id = 6`, 7},
		{"removed from the start", `DELETE FROM $TABLE WHERE id <= 2`, 3},
		{"removed at the end", `DELETE FROM $TABLE WHERE id = 10`, 10},
		{"inserted", `INSERT INTO $TABLE (id, time, event_type, actor, prev_hash, hash)
			SELECT 11, time, event_type, actor, hash, hash FROM $TABLE WHERE id = 10`, 11},
	}
	for _, tt := range tamper {
		t.Run(tt.name, func(t *testing.T) {
			forEachBackend(t, func(t *testing.T, st *store) {
				ctx := context.Background()
				s := st.service(t)
				for i := 0; i < 10; i++ {
					require.NoError(t, s.Record(ctx, sampleEntry(i)))
				}
				require.NoError(t, s.Flush(ctx))
				_, err := s.Verify(ctx)
				require.NoError(t, err)

				st.exec(t, tt.sql)
				_, err = s.Verify(ctx)
				require.ErrorIs(t, err, ErrTampered)
				assert.Contains(t, err.Error(), fmt.Sprintf("at ID %d:", tt.id))
			})
		})
	}
}

func TestVerifyTruncationCaughtAgainstPublishedHead(t *testing.T) {
	forEachBackend(t, func(t *testing.T, st *store) {
		ctx := context.Background()
		s := st.service(t)
		for i := 0; i < 10; i++ {
			require.NoError(t, s.Record(ctx, sampleEntry(i)))
		}
		require.NoError(t, s.Flush(ctx))
		published, err := s.Verify(ctx)
		require.NoError(t, err)

		// A careful attacker removes the newest entries and rewinds the head.
		st.exec(t, `DELETE FROM $TABLE WHERE id > 8`)
		st.exec(t, `UPDATE audit_chain_heads SET last_id = 8, last_hash = (SELECT hash FROM $TABLE WHERE id = 8) WHERE $HEAD`)
		_, err = s.Verify(ctx)
		require.ErrorIs(t, err, ErrTampered, "the Merkle tree still counts the removed entries")
		// A more careful one rewinds the tree's size too.
		st.exec(t, `UPDATE `+TreeHeadTable+` SET size = 8 WHERE $HEAD`)
		rep, err := s.Verify(ctx)
		require.NoError(t, err, "consistent on its own")
		assert.NotEqual(t, published.Head, rep.Head, "but its head differs from the one published")
		assert.Equal(t, int64(8), rep.LastID)
	})
}

func TestChainKey(t *testing.T) {
	forEachBackend(t, func(t *testing.T, st *store) {
		ctx := context.Background()
		s, err := New(append(st.opts(), WithChainKey([]byte("key one")))...)
		require.NoError(t, err)
		for i := 0; i < 3; i++ {
			require.NoError(t, s.Record(ctx, sampleEntry(i)))
		}
		require.NoError(t, s.Flush(ctx))
		rep, err := s.Verify(ctx)
		require.NoError(t, err)
		require.NoError(t, s.Close())

		// The same content under plain SHA-256 hashes differently.
		plain := st.sibling(t).service(t)
		for i := 0; i < 3; i++ {
			require.NoError(t, plain.Record(ctx, sampleEntry(i)))
		}
		require.NoError(t, plain.Flush(ctx))
		prep, err := plain.Verify(ctx)
		require.NoError(t, err)
		assert.NotEqual(t, prep.Head, rep.Head)

		for name, opts := range map[string][]Option{
			"other key": {WithChainKey([]byte("key two"))},
			"no key":    nil,
		} {
			t.Run(name, func(t *testing.T) {
				v := st.service(t, opts...)
				_, err := v.Verify(ctx)
				require.ErrorIs(t, err, ErrTampered)
				assert.Contains(t, err.Error(), "at ID 1:")
			})
		}
		same := st.service(t, WithChainKey([]byte("key one")))
		again, err := same.Verify(ctx)
		require.NoError(t, err)
		assert.Equal(t, rep, again)
	})
}

// mutableClock is a clock that tests move.
type mutableClock struct{ ns atomic.Int64 }

func newMutableClock(t time.Time) *mutableClock {
	c := &mutableClock{}
	c.ns.Store(t.UnixNano())
	return c
}
func (c *mutableClock) now() time.Time          { return time.Unix(0, c.ns.Load()).UTC() }
func (c *mutableClock) advance(d time.Duration) { c.ns.Add(int64(d)) }

func TestRetentionPrunesByClock(t *testing.T) {
	forEachBackend(t, func(t *testing.T, st *store) {
		ctx := context.Background()
		base := time.Date(2026, 2, 1, 0, 0, 0, 0, time.UTC)
		seed, err := New(st.opts()...)
		require.NoError(t, err)
		for h := 0; h < 10; h++ { // one entry an hour, base to base+9h
			e := sampleEntry(h)
			e.Time = base.Add(time.Duration(h) * time.Hour)
			require.NoError(t, seed.Record(ctx, e))
		}
		require.NoError(t, seed.Close())

		clock := newMutableClock(base.Add(12 * time.Hour))
		fast := Option(func(c *config) { c.retentionEvery = 10 * time.Millisecond })
		s := st.service(t, WithRetention(6*time.Hour), WithClock(clock.now), fast, WithLogger(discardLogger()))
		count := func() int64 {
			n, err := s.Count(ctx, Filter{})
			require.NoError(t, err)
			return n
		}
		// The first open starts retention: entries before base+6h go.
		waitFor(t, 5*time.Second, func() bool { return count() == 4 }, "retention at first open")
		clock.advance(2 * time.Hour)
		waitFor(t, 5*time.Second, func() bool { return count() == 2 }, "retention on the next interval")
		rep, err := s.Verify(ctx)
		require.NoError(t, err)
		assert.Equal(t, int64(9), rep.FirstID)
	})
}

func TestMemoryDatabase(t *testing.T) {
	ctx := context.Background()
	a := newServiceAt(t, WithSQLite(":memory:"))
	b := newServiceAt(t, WithSQLite(":memory:"))
	start := make(chan struct{})
	var wg sync.WaitGroup
	for g := 0; g < 8; g++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			<-start
			for i := 0; i < 50; i++ {
				if g%2 == 0 {
					assert.NoError(t, a.Record(ctx, sampleEntry(i)))
				} else {
					_, err := a.List(ctx, Filter{Limit: 10})
					assert.NoError(t, err, "every connection sees the table")
				}
			}
		}()
	}
	close(start)
	wg.Wait()
	require.NoError(t, a.Flush(ctx))
	n, err := a.Count(ctx, Filter{})
	require.NoError(t, err)
	assert.Equal(t, int64(200), n)
	n, err = b.Count(ctx, Filter{})
	require.NoError(t, err)
	assert.Zero(t, n, "each service has its own private database")
	_, err = a.Verify(ctx)
	require.NoError(t, err)
	_, err = os.Stat(":memory:")
	assert.True(t, os.IsNotExist(err), "no file named :memory:")
}

func TestWithDBIsNotClosed(t *testing.T) {
	ctx := context.Background()
	db, err := gorm.Open(sqlite.Open(tempDB(t)), &gorm.Config{})
	require.NoError(t, err)
	sqlDB, err := db.DB()
	require.NoError(t, err)
	defer sqlDB.Close()

	s, err := New(WithDB(db))
	require.NoError(t, err)
	require.NoError(t, s.Record(ctx, sampleEntry(0)))
	require.NoError(t, s.Close())

	var n int64
	require.NoError(t, db.Table(DefaultTable).Count(&n).Error, "the caller's db still works")
	assert.Equal(t, int64(1), n)
}

func TestCustomTable(t *testing.T) {
	ctx := context.Background()
	s, path := newService(t, WithTable("Security_Log"))
	require.NoError(t, s.Record(ctx, sampleEntry(0)))
	require.NoError(t, s.Flush(ctx))
	raw := rawDB(t, path)
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

func TestTwoTablesOneDatabaseKeepSeparateChains(t *testing.T) {
	forEachBackend(t, func(t *testing.T, st *store) {
		ctx := context.Background()
		a := st.service(t)
		b := st.sibling(t).service(t)
		for i := 0; i < 5; i++ {
			require.NoError(t, a.Record(ctx, sampleEntry(i)))
			require.NoError(t, b.Record(ctx, sampleEntry(i)))
		}
		require.NoError(t, a.Flush(ctx))
		require.NoError(t, b.Flush(ctx))
		for _, s := range []*AuditService{a, b} {
			rep, err := s.Verify(ctx)
			require.NoError(t, err)
			assert.Equal(t, VerifyReport{Entries: 5, FirstID: 1, LastID: 5, Head: rep.Head}, rep)
		}
	})
}

func TestSQLiteSettings(t *testing.T) {
	ctx := context.Background()
	s, _ := newService(t)
	_, err := s.Count(ctx, Filter{})
	require.NoError(t, err)
	db := s.sess.Load().sqlDB
	// Read back through several connections of the pool: each must have
	// the settings, not just the first.
	for i := 0; i < 3; i++ {
		conn, err := db.Conn(ctx)
		require.NoError(t, err)
		defer conn.Close()
		var mode string
		var sync, busy int
		require.NoError(t, conn.QueryRowContext(ctx, "PRAGMA journal_mode").Scan(&mode))
		require.NoError(t, conn.QueryRowContext(ctx, "PRAGMA synchronous").Scan(&sync))
		require.NoError(t, conn.QueryRowContext(ctx, "PRAGMA busy_timeout").Scan(&busy))
		assert.Equal(t, "wal", mode)
		assert.Equal(t, 2, sync, "synchronous=FULL")
		assert.Equal(t, 5000, busy)
	}
}

func TestIndexesServeFilters(t *testing.T) {
	ctx := context.Background()
	s, _ := newService(t)
	require.NoError(t, s.Record(ctx, sampleEntry(0)))
	require.NoError(t, s.Flush(ctx))
	sess := s.sess.Load()
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

func TestLibraryLogsOnlyThroughItsLogger(t *testing.T) {
	// Capture the process's stdout and stderr around a failing open, which
	// GORM would report on its default logger.
	logs := &logBuffer{}
	out := captureOutput(t, func() {
		s, err := New(WithSQLite(filepath.Join(t.TempDir(), "missing", "a.db")),
			WithLogger(logs.logger()))
		require.NoError(t, err)
		_, err = s.Count(context.Background(), Filter{})
		require.Error(t, err)
		require.NoError(t, s.Close())
	})
	assert.Empty(t, out, "the library printed")
	assert.Contains(t, logs.String(), "open database failed")
}

// captureOutput runs f with os.Stdout and os.Stderr redirected and returns
// what was written to them.
func captureOutput(t *testing.T, f func()) string {
	t.Helper()
	r, w, err := os.Pipe()
	require.NoError(t, err)
	stdout, stderr := os.Stdout, os.Stderr
	os.Stdout, os.Stderr = w, w
	done := make(chan string)
	go func() {
		var b bytes.Buffer
		_, _ = b.ReadFrom(r)
		done <- b.String()
	}()
	defer func() {
		os.Stdout, os.Stderr = stdout, stderr
	}()
	f()
	os.Stdout, os.Stderr = stdout, stderr
	require.NoError(t, w.Close())
	return <-done
}

func discardLogger() *slog.Logger {
	return slog.New(slog.DiscardHandler)
}

func TestOpeningAnExistingLogOnlyReads(t *testing.T) {
	ctx := context.Background()
	forEachBackend(t, func(t *testing.T, st *store) {
		seed := st.service(t)
		require.NoError(t, seed.Record(ctx, sampleEntry(0)))
		require.NoError(t, seed.Flush(ctx))

		// With the write lock held elsewhere, a new service still opens and
		// reads at once: it finds the schema and creates nothing.
		release := st.holdWriteLock(t)
		defer release()
		s := st.service(t)
		qctx, cancel := context.WithTimeout(ctx, 2*time.Second)
		defer cancel()
		n, err := s.Count(qctx, Filter{})
		require.NoError(t, err)
		assert.Equal(t, int64(1), n)
		_, err = s.Verify(qctx)
		require.NoError(t, err)
	})
}

func TestReadOnlyDatabase(t *testing.T) {
	ctx := context.Background()
	s, path := newService(t)
	for i := 0; i < 3; i++ {
		require.NoError(t, s.Record(ctx, sampleEntry(i)))
	}
	require.NoError(t, s.Close())

	ro := newServiceAt(t, WithDialector(sqlite.Open("file:"+path+"?mode=ro")))
	n, err := ro.Count(ctx, Filter{})
	require.NoError(t, err, "a read-only log can be queried")
	assert.Equal(t, int64(3), n)
	rep, err := ro.Verify(ctx)
	require.NoError(t, err)
	assert.Equal(t, int64(3), rep.Entries)
}

// TestConcurrentPrunesKeepTheChain prunes from two services at once while
// a third writes: the checkpoint must only move forward, so the chain
// verifies whatever the interleaving.
func TestConcurrentPrunesKeepTheChain(t *testing.T) {
	forEachBackend(t, func(t *testing.T, st *store) {
		ctx := context.Background()
		seed := st.service(t)
		for i := 0; i < 3000; i++ {
			require.NoError(t, seed.Record(ctx, sampleEntry(i)))
		}
		require.NoError(t, seed.Flush(ctx))

		a, b := st.service(t), st.service(t)
		start := make(chan struct{})
		var wg sync.WaitGroup
		var pruned atomic.Int64
		for g, s := range []*AuditService{a, b, a, b} {
			wg.Add(1)
			go func() {
				defer wg.Done()
				<-start
				// Each goroutine prunes to its own cutoff: entry 1000, 1500, ...
				n, err := s.Prune(ctx, sampleEntry(1000+500*g).Time)
				assert.NoError(t, err)
				pruned.Add(n)
			}()
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			<-start
			for i := 3000; i < 3500; i++ {
				assert.NoError(t, seed.Record(ctx, sampleEntry(i)))
			}
			assert.NoError(t, seed.Flush(ctx))
		}()
		close(start)
		wg.Wait()

		assert.Equal(t, int64(2500), pruned.Load(), "every entry pruned once")
		rep, err := seed.Verify(ctx)
		require.NoError(t, err)
		assert.Equal(t, VerifyReport{Entries: 1000, FirstID: 2501, LastID: 3500, Head: rep.Head}, rep)
	})
}
