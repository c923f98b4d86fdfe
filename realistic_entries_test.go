package audit

import (
	"fmt"
	"math/rand/v2"
	"os"
	"regexp"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// The shape of the realistic entries.
const (
	realActors = 1000
	realStep   = 10 * time.Millisecond // between one entry's Time and the next's
)

var (
	realEventTypes = []string{"user.login", "user.logout", "doc.read", "doc.write", "role.grant", "key.rotate"}
	realOutcomes   = []string{"success", "failure", "denied"}
	realStart      = time.Date(2026, 3, 1, 0, 0, 0, 0, time.UTC)
)

func realActor(a int) string { return fmt.Sprintf("user-%04d@example.com", a) }

// realEntries returns n realistic entries from seed: times 10 ms apart,
// everything else drawn at random (realEntrySource).
func realEntries(seed uint64, n int) []Entry {
	next := realEntrySource(seed)
	out := make([]Entry, n)
	for i := range out {
		out[i] = next()
	}
	return out
}

// realEntrySource returns the realistic entries from seed one at a time,
// so that a big log need not be held in memory: entry i (0-based) happened
// at realStart + i×10 ms.
func realEntrySource(seed uint64) func() Entry {
	rng := rand.New(rand.NewPCG(seed, 0x5eed))
	hex := func(digits int) string {
		const alphabet = "0123456789abcdef"
		b := make([]byte, digits)
		for i := range b {
			b[i] = alphabet[rng.IntN(16)]
		}
		return string(b)
	}
	i := 0
	return func() Entry {
		e := Entry{
			Time:      realStart.Add(time.Duration(i) * realStep),
			EventType: realEventTypes[rng.IntN(len(realEventTypes))],
			Actor:     realActor(rng.IntN(realActors)),
			Resource:  fmt.Sprintf("/projects/%06d/items/%05d", rng.IntN(1_000_000), rng.IntN(100_000)),
			Outcome:   realOutcomes[rng.IntN(len(realOutcomes))],
			RequestID: hex(32),
			Details: map[string]any{
				"ip":         fmt.Sprintf("10.%d.%d.%d", rng.IntN(256), rng.IntN(256), rng.IntN(256)),
				"user_agent": "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/126.0 Safari/537.36",
				"method":     []string{"GET", "POST", "PUT", "DELETE"}[rng.IntN(4)],
				"status":     float64([]int{200, 201, 204, 403, 404, 500}[rng.IntN(6)]),
				"latency_ms": float64(rng.IntN(5000)) / 10,
				"session":    hex(24),
			},
		}
		i++
		return e
	}
}

// realOnly returns the filter of AUDIT_REALISTIC_CASES, a regular
// expression of the case names to run (all when unset), for profiling one
// case; the ratios of the cases left out are not reported.
func realOnly(b *testing.B) func(name string) bool {
	v := os.Getenv("AUDIT_REALISTIC_CASES")
	if v == "" {
		return func(string) bool { return true }
	}
	re, err := regexp.Compile(v)
	require.NoError(b, err, "AUDIT_REALISTIC_CASES")
	return re.MatchString
}
