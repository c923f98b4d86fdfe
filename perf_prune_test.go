package audit

import (
	"context"
	"slices"
	"testing"
	"time"

	"github.com/cleveragents/audit/internal/testutil"
	"github.com/stretchr/testify/require"
)

// perfStall is what perfPruneStall measured.
type perfStall struct {
	pruned                 int64
	prune                  time.Duration // how long Prune took
	quietMax, quietP99     time.Duration // sync Record latency before Prune
	max, p99               time.Duration // and while it ran
	quietRecords, recorded int
}

// perfStallCase is a prune for perfPruneStall to measure.
type perfStallCase struct {
	fixture string            // the log, of which the prune deletes from a copy
	before  time.Time         // Prune's argument
	pruned  int64             // how many entries that deletes
	entry   func(i int) Entry // the entries that the writer records meanwhile
}

// perfPruneStall runs c's prune on a copy of its log while a goroutine
// calls Record in sync mode without pause, and measures how long those
// calls took: first in a quiet phase, then while Prune runs.
func perfPruneStall(tb testing.TB, c perfStallCase) perfStall {
	tb.Helper()
	ctx := context.Background()
	s := newServiceAt(tb, WithSQLite(perfCopy(tb, c.fixture)), WithAsync(false), WithLogger(testutil.Discard()))
	_, err := s.Get(ctx, 1) // open
	require.NoError(tb, err)

	var st perfStall
	const quiet = 200
	lat := make([]time.Duration, 0, quiet)
	for i := range quiet {
		began := time.Now()
		require.NoError(tb, s.Record(ctx, c.entry(i)))
		lat = append(lat, time.Since(began))
	}
	st.quietRecords = quiet
	st.quietMax, st.quietP99 = perfMaxP99(lat)

	stop := make(chan struct{})
	started := make(chan struct{})
	type result struct {
		lat []time.Duration
		err error
	}
	results := make(chan result, 1)
	go func() {
		var r result
		defer func() { results <- r }()
		for i := quiet; ; i++ {
			select {
			case <-stop:
				return
			default:
			}
			began := time.Now()
			if r.err = s.Record(ctx, c.entry(i)); r.err != nil {
				return
			}
			r.lat = append(r.lat, time.Since(began))
			if i == quiet {
				close(started)
			}
		}
	}()
	<-started
	began := time.Now()
	st.pruned, err = s.Prune(ctx, c.before)
	st.prune = time.Since(began)
	close(stop)
	r := <-results
	require.NoError(tb, err)
	require.NoError(tb, r.err)
	require.Equal(tb, c.pruned, st.pruned)
	st.recorded = len(r.lat)
	st.max, st.p99 = perfMaxP99(r.lat)
	return st
}

// perfSampleStall is the prune of BenchmarkPruneStall and
// TestPerfPruneStall: the oldest 10% of the sample fixture, while the
// writer records sample entries.
func perfSampleStall(tb testing.TB) perfStallCase {
	return perfStallCase{fixture: perfFixture(tb), before: perfFixtureStart.Add(perfFixtureEntries / 10 * perfFixtureStep),
		pruned: perfFixtureEntries / 10, entry: sampleEntry}
}

func perfMaxP99(lat []time.Duration) (maxLat, p99 time.Duration) {
	s := slices.Clone(lat)
	slices.Sort(s)
	return s[len(s)-1], s[len(s)*99/100]
}

// BenchmarkPruneStall reports the longest sync Record call (max-stall-ms)
// while Prune deletes the oldest 10% of the 1M-entry fixture, beside the
// longest in a quiet phase just before (quiet-max-ms), and Prune's rate.
// Run it with -benchtime 1x: each iteration prunes a new copy.
func BenchmarkPruneStall(b *testing.B) {
	c := perfSampleStall(b) // the fixture built outside the timing
	b.ResetTimer()
	var st perfStall
	for range b.N {
		st = perfPruneStall(b, c)
	}
	ms := func(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }
	b.ReportMetric(ms(st.max), "max-stall-ms")
	b.ReportMetric(ms(st.p99), "p99-stall-ms")
	b.ReportMetric(ms(st.quietMax), "quiet-max-ms")
	b.ReportMetric(ms(st.quietP99), "quiet-p99-ms")
	b.ReportMetric(float64(st.pruned)/st.prune.Seconds(), "pruned/s")
	b.ReportMetric(float64(st.recorded), "records-during")
}

// TestPerfPruneStall checks that Prune's chunks let the writer in: sync
// Records commit while a prune of 100,000 entries runs, and the prune
// deletes exactly its 10%. It asserts no wall-clock figure (CI runs on busy
// machines); BenchmarkPruneStall reports the longest stall against its
// goal. It needs the 1M-entry fixture, so
// it does not run under -short or the race detector (.ci/run runs it in a
// step without).
func TestPerfPruneStall(t *testing.T) {
	if testing.Short() || perfRace {
		t.Skip("needs the 1M-entry fixture: runs without -short and without -race")
	}
	st := perfPruneStall(t, perfSampleStall(t))
	t.Logf("pruned %d entries in %v; sync Record latency while pruning: max %v, p99 %v over %d calls (quiet: max %v, p99 %v)",
		st.pruned, st.prune.Round(time.Millisecond), st.max, st.p99, st.recorded, st.quietMax, st.quietP99)
	require.Positive(t, st.recorded, "sync Records committed while Prune ran: its chunks interleave with the writer")
}
