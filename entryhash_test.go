package audit

import (
	"context"
	"encoding/json"
	"fmt"
	"math"
	"math/rand/v2"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// variedEntry returns an entry whose fields and Details exercise what the
// encoding must reproduce: escapes, HTML characters, non-ASCII text, big
// and small numbers, nesting, empty and missing Details, times in other
// zones and at the ends of the allowed range.
func variedEntry(rng *rand.Rand, i int) Entry {
	texts := []string{"", "plain", "<a href=\"x\">&amp;</a>", "tab\tnew\nline\r", "esc\x1b[2J", "quote\" back\\slash",
		"日本語", "emoji 🎉", "line\u2028sep\u2029", "\u007f\u0085\u202e", "a\u00e9b"}
	pick := func() string { return texts[rng.IntN(len(texts))] }
	values := []any{
		nil, true, false, "", pick(), 0, -1, 1.5, 0.1, 1e21, 1e-7, -0.0, 1.5e300, math.MaxInt64, uint64(math.MaxUint64),
		int64(1<<53 + 1), json.Number("12345678901234567890123"), float32(0.1),
		[]any{}, []any{1, "two", nil, map[string]any{}}, map[string]any{"z": 1, "a": map[string]any{"<": ">"}},
		[]byte("bytes"), time.Date(2024, 5, 1, 12, 0, 0, 123, time.UTC),
	}
	var details map[string]any
	switch i % 4 {
	case 0: // none
	case 1:
		details = map[string]any{}
	default:
		details = map[string]any{}
		for range 1 + rng.IntN(6) {
			details[pick()+fmt.Sprint(rng.IntN(100))] = values[rng.IntN(len(values))]
		}
		details["password"] = pick() // redacted under WithRedactKeys
	}
	times := []time.Time{
		time.Date(2026, 1, 1, 0, 0, 0, i, time.UTC),
		time.Date(1, 1, 1, 0, 0, 0, 1, time.UTC), // not zero: Record would take the clock's now
		time.Date(9999, 12, 31, 23, 59, 59, 999999999, time.UTC),
		time.Date(2026, 6, 1, 12, 0, 0, 500, time.FixedZone("X", -7*3600)),
	}
	actor := pick()
	if actor == "" {
		actor = "actor"
	}
	return Entry{
		Time:      times[rng.IntN(len(times))],
		EventType: fmt.Sprintf("type.%d", i),
		Actor:     actor,
		Resource:  pick(),
		Outcome:   pick(),
		RequestID: pick(),
		Details:   details,
	}
}

func TestEntryHashEqualsStoredHash(t *testing.T) {
	chainKey := []byte("chain key")
	for _, tc := range []struct {
		name string
		key  []byte
		opts []Option
	}{
		{"sha256", nil, nil},
		{"hmac", chainKey, []Option{WithChainKey(chainKey)}},
		{"redacted", nil, []Option{WithRedactKeys([]byte("redact key"), "password")}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s, _ := newService(t, tc.opts...)
			rng := rand.New(rand.NewPCG(1, 2))
			const n = 300
			recorded := make([]Entry, n)
			for i := range recorded {
				recorded[i] = variedEntry(rng, i)
			}
			recordAll(t, s, recorded...)
			got, err := s.List(context.Background(), Filter{Limit: MaxListLimit})
			require.NoError(t, err)
			require.Len(t, got, n)

			prev := ""
			for i, e := range got {
				require.Equal(t, prev, e.PrevHash, "entry %d", e.ID)
				h, err := EntryHash(prev, e, tc.key)
				require.NoError(t, err)
				assert.Equal(t, e.Hash, h, "entry %d read back: %+v", e.ID, e)
				if tc.name != "redacted" { // recorded holds the values before redaction
					h, err = EntryHash(prev, recorded[i], tc.key)
					require.NoError(t, err)
					assert.Equal(t, e.Hash, h, "entry %d as recorded", e.ID)
				}
				prev = e.Hash
			}
		})
	}
}

func TestEntryHash(t *testing.T) {
	e := Entry{Time: time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC), EventType: "t", Actor: "a"}
	plain, err := EntryHash("", e, nil)
	require.NoError(t, err)

	t.Run("an empty key is no key", func(t *testing.T) {
		h, err := EntryHash("", e, []byte{})
		require.NoError(t, err)
		assert.Equal(t, plain, h)
	})
	t.Run("every hashed input changes it", func(t *testing.T) {
		for name, change := range map[string]func(*Entry, *string, *[]byte){
			"prev":    func(_ *Entry, p *string, _ *[]byte) { *p = strings.Repeat("0", 64) },
			"time":    func(e *Entry, _ *string, _ *[]byte) { e.Time = e.Time.Add(time.Nanosecond) },
			"type":    func(e *Entry, _ *string, _ *[]byte) { e.EventType = "u" },
			"actor":   func(e *Entry, _ *string, _ *[]byte) { e.Actor = "b" },
			"details": func(e *Entry, _ *string, _ *[]byte) { e.Details = map[string]any{"k": 1} },
			"key":     func(_ *Entry, _ *string, k *[]byte) { *k = []byte("k") },
			// The fields are length-prefixed: moving a byte from one to
			// the next changes the hash.
			"boundary": func(e *Entry, _ *string, _ *[]byte) { e.EventType, e.Actor = "ta", "" },
		} {
			c, prev, key := e, "", []byte(nil)
			change(&c, &prev, &key)
			h, err := EntryHash(prev, c, key)
			require.NoError(t, err, name)
			assert.NotEqual(t, plain, h, name)
		}
	})
	t.Run("ID and hashes of the entry are not hashed", func(t *testing.T) {
		c := e
		c.ID, c.PrevHash, c.Hash = 7, "x", "y"
		h, err := EntryHash("", c, nil)
		require.NoError(t, err)
		assert.Equal(t, plain, h)
	})
	t.Run("invalid input is named", func(t *testing.T) {
		c := e
		c.Time = time.Date(10000, 1, 1, 0, 0, 0, 0, time.UTC)
		_, err := EntryHash("", c, nil)
		assert.ErrorIs(t, err, ErrInvalidEntry)
		assert.ErrorContains(t, err, "Time")
		c = e
		c.Details = map[string]any{"x": math.NaN()}
		_, err = EntryHash("", c, nil)
		assert.ErrorIs(t, err, ErrInvalidEntry)
		assert.ErrorContains(t, err, "Details")
	})
	t.Run("a struct's field order is lost when read back", func(t *testing.T) {
		// What the doc comment says: the stored JSON keeps the struct's
		// field order, a map read back sorts its keys. If the library
		// ever stores canonical JSON, this case joins the others.
		s, _ := newService(t)
		in := e
		in.Details = map[string]any{"user": struct{ Name, Age string }{"n", "1"}}
		recordAll(t, s, in)
		got, err := s.Get(context.Background(), 1)
		require.NoError(t, err)
		h, err := EntryHash("", in, nil)
		require.NoError(t, err)
		assert.Equal(t, got.Hash, h, "as recorded")
		h, err = EntryHash("", got, nil)
		require.NoError(t, err)
		assert.NotEqual(t, got.Hash, h, "as read back")
	})
}
