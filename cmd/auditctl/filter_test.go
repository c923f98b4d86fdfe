package main

import (
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestParseWhen(t *testing.T) {
	now := time.Date(2024, 5, 10, 12, 0, 0, 0, time.UTC)
	for _, tc := range []struct {
		in   string
		want time.Time
		err  string
	}{
		{in: "24h", want: now.Add(-24 * time.Hour)},
		{in: "90m", want: now.Add(-90 * time.Minute)},
		{in: "7d", want: now.Add(-7 * 24 * time.Hour)},
		{in: "0s", want: now},
		{in: "2024-05-01T12:00:00Z", want: time.Date(2024, 5, 1, 12, 0, 0, 0, time.UTC)},
		{in: "2024-05-01T14:00:00.5+02:00", want: time.Date(2024, 5, 1, 12, 0, 0, 5e8, time.UTC)},
		{in: "2024-05-01", want: time.Date(2024, 5, 1, 0, 0, 0, 0, time.UTC)},
		{in: "-1h", err: "must not be negative"},
		{in: "999999999d", err: "too long ago"},
		{in: "yesterday", err: "neither a duration"},
		{in: "d", err: "neither a duration"},
		{in: "", err: "neither a duration"},
	} {
		t.Run(tc.in, func(t *testing.T) {
			got, err := parseWhen(tc.in, now)
			if tc.err != "" {
				require.ErrorContains(t, err, tc.err)
				return
			}
			require.NoError(t, err)
			assert.True(t, tc.want.Equal(got), "got %v, want %v", got, tc.want)
		})
	}
}
