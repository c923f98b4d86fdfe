package audit

import (
	"context"
	"encoding/json"
	"fmt"
	"math"
	"strconv"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// Details read back re-encode to the stored bytes: big integers keep their
// digits instead of being rounded through a float64, and ordinary numbers
// still come back as float64, as a JSON round trip gives them.
func TestDetailsKeepTheirDigits(t *testing.T) {
	s, _ := newService(t)
	ctx := context.Background()
	details := map[string]any{
		"big":    json.Number("1234567890123456789"),
		"neg":    json.Number("-9223372036854775807"),
		"plain":  7,
		"half":   2.5,
		"tiny":   1e-7,
		"huge":   1e21,
		"nested": map[string]any{"ids": []any{json.Number("18446744073709551615"), 3}},
		"max":    math.MaxFloat64,
	}
	stored, err := json.Marshal(details)
	require.NoError(t, err)
	e := sampleEntry(1)
	e.Details = details
	recordAll(t, s, e)

	got, err := s.Get(ctx, 1)
	require.NoError(t, err)
	again, err := json.Marshal(got.Details)
	require.NoError(t, err)
	assert.Equal(t, string(stored), string(again), "re-encoded Details differ from the stored JSON")
	assert.Equal(t, json.Number("1234567890123456789"), got.Details["big"])
	assert.Equal(t, float64(7), got.Details["plain"], "a number a float64 holds exactly reads back as float64")
	assert.Equal(t, 2.5, got.Details["half"])
}

func TestAppendJSONFloatMatchesEncodingJSON(t *testing.T) {
	for _, f := range []float64{0, 1, -1, 0.1, 1e-6, 1e-7, 123456789e-15, 1e20, 1e21, 1.5e300, -2.5e-300, math.MaxFloat64, math.SmallestNonzeroFloat64} {
		want, err := json.Marshal(f)
		require.NoError(t, err)
		assert.Equal(t, string(want), string(appendJSONFloat(nil, f, 64)), "%v", f)
		if f32 := float32(f); !math.IsInf(float64(f32), 0) {
			want, err := json.Marshal(f32)
			require.NoError(t, err)
			assert.Equal(t, string(want), string(appendJSONFloat(nil, float64(f32), 32)), "float32 %v", f32)
		}
	}
}

func TestDetailsNilAndEmptyReadBackNil(t *testing.T) {
	forEachBackend(t, func(t *testing.T, st *backend) {
		ctx := context.Background()
		s := st.service(t)
		recordAll(t, s, Entry{EventType: "e", Actor: "a", Details: nil}, Entry{EventType: "e", Actor: "a", Details: map[string]any{}})
		for id := int64(1); id <= 2; id++ {
			e, err := s.Get(ctx, id)
			require.NoError(t, err)
			assert.Nil(t, e.Details)
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
		assert.Equal(t, jsonRoundTrip(t, accepted[i].details), e.Details, accepted[i].name)
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
