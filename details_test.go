package audit

import (
	"context"
	"encoding/json"
	"math"
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
	require.NoError(t, s.Record(ctx, e))
	require.NoError(t, s.Flush(ctx))

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
		assert.Equal(t, string(want), string(appendJSONFloat(nil, f)), "%v", f)
	}
}
