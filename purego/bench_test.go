package purego

import (
	"context"
	"math/rand/v2"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/cleveragents/audit"
	"github.com/stretchr/testify/require"
)

// BenchmarkPureGoVsMattn measures the pure-Go driver against
// mattn/go-sqlite3 (audit.WithSQLite, cgo) in the same run, interleaved
// round by round so that the load of a shared machine falls on both alike,
// and reports the ratios ("x-mattn": the pure-Go driver's time over
// mattn's; above 1 is slower):
//
//	go test -run '^$' -bench PureGoVsMattn -benchtime 20x .
//
// ingest: one round is ingestChunk async Records from 16 goroutines
// released together, then Flush, on each driver's own log. get: one round
// is getChunk Gets of random IDs from one goroutine, on logs of getRows
// entries each. Both drivers have the same settings (WAL, busy timeout 5 s,
// synchronous=FULL).
func BenchmarkPureGoVsMattn(b *testing.B) {
	if !cgoEnabled {
		b.Skip("the baseline, mattn/go-sqlite3, needs cgo")
	}
	ctx := context.Background()
	open := func(b *testing.B, name string, pure bool) *audit.AuditService {
		path := filepath.Join(b.TempDir(), name+".db")
		var o audit.Option = audit.WithSQLite(path)
		if pure {
			o = audit.WithDialector(pureDriver.open(path))
		}
		s, err := audit.New(o, audit.WithLogger(discard()))
		require.NoError(b, err)
		b.Cleanup(func() { _ = s.Close() })
		require.NoError(b, s.Ping(ctx))
		return s
	}

	b.Run("ingest", func(b *testing.B) {
		mattn, pure := open(b, "mattn", false), open(b, "pure", true)
		var tm, tp time.Duration
		for i := 0; i < b.N; i++ {
			// Alternate which goes first, so neither always finds a warm
			// cache or a quiet disk.
			if i%2 == 0 {
				tm += ingest(b, mattn, i*ingestChunk)
				tp += ingest(b, pure, i*ingestChunk)
			} else {
				tp += ingest(b, pure, i*ingestChunk)
				tm += ingest(b, mattn, i*ingestChunk)
			}
		}
		report(b, tm, tp, b.N*ingestChunk, "entry")
	})

	b.Run("get", func(b *testing.B) {
		mattn, pure := open(b, "mattn", false), open(b, "pure", true)
		for _, s := range []*audit.AuditService{mattn, pure} {
			for i := 0; i < getRows; i++ {
				require.NoError(b, s.Record(ctx, sampleEntry(i)))
			}
			require.NoError(b, s.Flush(ctx))
		}
		rng := rand.New(rand.NewPCG(1, 2))
		var tm, tp time.Duration
		for i := 0; i < b.N; i++ {
			ids := make([]int64, getChunk)
			for j := range ids {
				ids[j] = 1 + rng.Int64N(getRows)
			}
			if i%2 == 0 {
				tm += get(b, mattn, ids)
				tp += get(b, pure, ids)
			} else {
				tp += get(b, pure, ids)
				tm += get(b, mattn, ids)
			}
		}
		report(b, tm, tp, b.N*getChunk, "get")
	})
}

const (
	ingestChunk = 4096
	getChunk    = 2000
	getRows     = 20000
)

// ingest records sampleEntry(from) .. from+ingestChunk-1 from 16 goroutines
// released together, flushes, and returns how long that took.
func ingest(b *testing.B, s *audit.AuditService, from int) time.Duration {
	b.Helper()
	const callers = 16
	ctx := context.Background()
	start := make(chan struct{})
	var wg sync.WaitGroup
	for g := 0; g < callers; g++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			<-start
			for i := g; i < ingestChunk; i += callers {
				if err := s.Record(ctx, sampleEntry(from+i)); err != nil {
					b.Error(err)
					return
				}
			}
		}()
	}
	began := time.Now()
	close(start)
	wg.Wait()
	require.NoError(b, s.Flush(ctx))
	return time.Since(began)
}

// get reads ids one after another and returns how long that took.
func get(b *testing.B, s *audit.AuditService, ids []int64) time.Duration {
	b.Helper()
	ctx := context.Background()
	began := time.Now()
	for _, id := range ids {
		if _, err := s.Get(ctx, id); err != nil {
			b.Fatal(err)
		}
	}
	return time.Since(began)
}

// report gives each driver's ns per op and the pure-Go driver's time over
// mattn's.
func report(b *testing.B, mattn, pure time.Duration, ops int, unit string) {
	b.ReportMetric(float64(mattn.Nanoseconds())/float64(ops), "mattn-ns/"+unit)
	b.ReportMetric(float64(pure.Nanoseconds())/float64(ops), pureDriver.name+"-ns/"+unit)
	b.ReportMetric(float64(pure)/float64(mattn), "x-mattn")
	b.ReportMetric(0, "ns/op") // the round's total says nothing: the ratio does
}
