package audit

import (
	"context"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// The ingest benchmarks measure entries per second end to end, each beside
// the baseline a service would otherwise hand-write: one GORM Create per
// entry, from as many goroutines, on the same SQLite settings and indexes.
// Run them together, so the ratios come from one run:
//
//	go test -run '^$' -bench 'NaiveGormCreate|Record' .
//
// BenchmarkNaiveGormCreate runs first (source order) and leaves its figures
// for the others to report "x-naive": how many times faster they are.

// naiveNsPerEntry holds the baseline's last measurement per backend and
// caller count.
var naiveNsPerEntry sync.Map // "sqlite/callers=16" -> float64

// naiveRow is the hand-written model: the same columns and indexes.
type naiveRow struct {
	ID        int64  `gorm:"primaryKey"`
	Time      string `gorm:"index"`
	EventType string `gorm:"index"`
	Actor     string `gorm:"index"`
	Resource  string `gorm:"index"`
	Outcome   string `gorm:"index"`
	RequestID string `gorm:"index"`
	Details   string
}

func BenchmarkNaiveGormCreate(b *testing.B) {
	for _, be := range backends {
		for _, callers := range []int{16, 64} {
			b.Run(be.name+"/"+callersName(callers), func(b *testing.B) {
				ns := perfNaiveCreate(b, be, callers)
				naiveNsPerEntry.Store(be.name+"/"+callersName(callers), ns)
			})
		}
	}
}

// BenchmarkRecord is async ingest: 16 goroutines Record, then Flush.
func BenchmarkRecord(b *testing.B) {
	benchRecord(b, 16, WithAsync(true))
}

// BenchmarkRecordSync is sync mode under 64 concurrent callers: each Record
// waits for its commit, and concurrent callers share transactions.
func BenchmarkRecordSync(b *testing.B) {
	benchRecord(b, 64, WithAsync(false))
}

func benchRecord(b *testing.B, callers int, opts ...Option) {
	for _, be := range backends {
		name := be.name + "/" + callersName(callers)
		b.Run(name, func(b *testing.B) {
			s := be.fresh(b).service(b, opts...)
			ctx := context.Background()
			_, err := s.Count(ctx, Filter{}) // open before timing
			require.NoError(b, err)
			ns := runCallers(b, callers, func(i int) error {
				return s.Record(ctx, sampleEntry(i))
			}, func() error { return s.Flush(ctx) })
			if naive, ok := naiveNsPerEntry.Load(name); ok {
				b.ReportMetric(naive.(float64)/ns, "x-naive")
			}
		})
	}
}

// runCallers splits b.N calls of op among callers goroutines released
// together, runs finish (if any) inside the timing, reports entries/s and
// returns ns per entry.
func runCallers(b *testing.B, callers int, op func(i int) error, finish func() error) float64 {
	b.Helper()
	start := make(chan struct{})
	errs := make(chan error, callers)
	var wg sync.WaitGroup
	for g := 0; g < callers; g++ {
		n := b.N / callers
		if g < b.N%callers {
			n++
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			<-start
			for i := 0; i < n; i++ {
				if err := op(g*n + i); err != nil {
					errs <- err
					return
				}
			}
		}()
	}
	b.ResetTimer()
	began := time.Now()
	close(start)
	wg.Wait()
	if finish != nil {
		require.NoError(b, finish())
	}
	elapsed := time.Since(began)
	b.StopTimer()
	close(errs)
	for err := range errs {
		require.NoError(b, err)
	}
	ns := float64(elapsed.Nanoseconds()) / float64(b.N)
	b.ReportMetric(1e9/ns, "entries/s")
	return ns
}

func callersName(n int) string {
	return "callers=" + itoa(int64(n))
}
