package audit

import (
	"context"
	"math"
	"sort"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestGetNotFound(t *testing.T) {
	forEachBackend(t, func(t *testing.T, st *backend) {
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
	in := make([]Entry, n)
	for i := range in {
		in[i] = sampleEntry(i)
		// Times go back and forth, so that time order is not ID order.
		in[i].Time = base.Add(time.Duration((i*37)%n) * time.Minute).Add(time.Duration(i) * time.Nanosecond)
	}
	recordAll(t, s, in...)
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
	forEachBackend(t, func(t *testing.T, st *backend) {
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
			// Two filters that PostgreSQL matches by hash and text, each
			// argument used twice, with more placeholders after them.
			"resource and request id":       {Resource: "doc/2", RequestID: "req-123"},
			"resource and other request id": {Resource: "doc/3", RequestID: "req-123"},
			"both hashed, window, after id": {Resource: "doc/2", RequestID: "req-123", Since: base, Until: base.Add(300 * time.Minute), AfterID: 1, Desc: true},
		}
		require.Len(t, modelList(all, filters["resource and request id"]), 1, "the case selects an entry")
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
	forEachBackend(t, func(t *testing.T, st *backend) {
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
	forEachBackend(t, func(t *testing.T, st *backend) {
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
