package audit

import (
	"context"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/cleveragents/audit/internal/testutil"
	"github.com/stretchr/testify/require"
)

// BenchmarkRealisticQuery is Get, List (an actor and a 10% time window,
// Limit 100) and Count (an event type) on a log of realistic entries, each
// beside the same query hand-written with database/sql on its own pool
// over the same file, decoded into the same Entry values (perfQueryPairs,
// shared with BenchmarkQuery). The logs are realEntries(realFixtureSeed,
// n) written by Record, kept between runs (realFixture). Per round, each
// query runs its batch of calls by hand and through the library, taking
// turns at going first; cost-x-sql is the median of the per-round ratios
// of time per call.
func BenchmarkRealisticQuery(b *testing.B) {
	rounds := realEnvInt(b, "AUDIT_REALISTIC_ROUNDS", 3)
	sizes := []int{200_000}
	if v := os.Getenv("AUDIT_REALISTIC_READ"); v != "" {
		sizes = sizes[:0]
		for _, f := range strings.Split(v, ",") {
			n, err := strconv.Atoi(strings.TrimSpace(f))
			require.NoError(b, err, "AUDIT_REALISTIC_READ")
			sizes = append(sizes, n)
		}
	}
	for _, size := range sizes {
		b.Run("entries="+strconv.Itoa(size), func(b *testing.B) { realQuery(b, size, rounds) })
	}
}

// realQuery is BenchmarkRealisticQuery on a log of size entries
// (realFixture).
func realQuery(b *testing.B, size, rounds int) {
	ctx := context.Background()
	path := realFixture(b, size)
	s := newServiceAt(b, WithSQLite(path), WithLogger(testutil.Discard()))
	_, err := s.Get(ctx, 1) // open before timing
	require.NoError(b, err)
	span := time.Duration(size-1) * realStep
	set := perfQuerySet{
		getID: func(i int) int64 { return 1 + int64(i)*7919%int64(size) },
		listFilter: func(i int) Filter {
			since := realStart.Add(span * time.Duration(i%9) / 10)
			return Filter{Actor: realActor(i * 37 % realActors), Since: since, Until: since.Add(span / 10), Limit: 100}
		},
		countType: func(i int) string { return realEventTypes[i%len(realEventTypes)] },
	}
	if size >= 100_000 {
		set.minList = 1
	}
	calls := map[string]int{ // per round
		"get": 20000, "list": 5000,
		"count": max(100, 1000*200_000/size), // a Count reads a sixth of the log
	}
	for _, q := range perfQueryPairs(b, s, path, set) {
		var hand, lib, ratios []float64
		for round := range rounds {
			var h, l float64
			if round%2 == 0 { // the one that runs second finds the cache warmer: take turns
				h = realOps(b, calls[q.name], round, q.hand)
				l = realOps(b, calls[q.name], round, q.lib)
			} else {
				l = realOps(b, calls[q.name], round, q.lib)
				h = realOps(b, calls[q.name], round, q.hand)
			}
			hand, lib, ratios = append(hand, h), append(lib, l), append(ratios, l/h)
		}
		b.Run(q.name+"/sql", func(b *testing.B) {
			b.ReportMetric(median(hand), "ns/op")
		})
		b.Run(q.name+"/audit", func(b *testing.B) {
			b.ReportMetric(median(lib), "ns/op")
			realReportRatio(b, ratios, "cost-x-sql")
		})
	}
}

// realOps times calls calls of op, with parameters that differ from round
// to round, and returns ns per call.
func realOps(b *testing.B, calls, round int, op func(i int) error) float64 {
	began := time.Now()
	for i := range calls {
		if err := op(round*calls + i); err != nil {
			b.Fatal(err)
		}
	}
	return float64(time.Since(began).Nanoseconds()) / float64(calls)
}
