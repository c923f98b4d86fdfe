package audit

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/cleveragents/audit/internal/testutil"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"gorm.io/driver/postgres"
)

// tailUntil collects what Tail yields until it has n entries, then ends the
// loop; errors are collected beside them. It fails the test if the tail
// ends before.
func tailUntil(ctx context.Context, s *AuditService, f Filter, n int) (got []Entry, errs []error) {
	if n == 0 {
		return nil, nil
	}
	for e, err := range s.Tail(ctx, f) {
		if err != nil {
			errs = append(errs, err)
			continue
		}
		got = append(got, e)
		if len(got) == n {
			break
		}
	}
	return got, errs
}

// listAll returns every entry of the log in ID order.
func listAll(tb testing.TB, s *AuditService) []Entry {
	tb.Helper()
	var all []Entry
	for f := (Filter{Limit: MaxListLimit}); ; {
		page, err := s.List(context.Background(), f)
		require.NoError(tb, err)
		if len(page) == 0 {
			return all
		}
		all = append(all, page...)
		f.AfterID = page[len(page)-1].ID
	}
}

// TestTailDeliversEveryEntryInOrder follows a log while four goroutines of
// the tailing service and a second process write it: the tail yields
// exactly the table's entries, in ID order, each once, and a filtered tail
// exactly the entries it selects. The second process's commits reach the
// tail only by polling, and on PostgreSQL they interleave with the
// service's own transactions.
func TestTailDeliversEveryEntryInOrder(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a process")
	}
	forEachBackend(t, func(t *testing.T, st *backend) {
		const goroutines, each, childN = 4, 400, 1500
		const total = goroutines*each + childN
		ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
		defer cancel()
		s := st.service(t, WithBatchSize(32))
		_, err := s.Count(ctx, Filter{}) // the schema, before the child opens it
		require.NoError(t, err)

		type result struct {
			got  []Entry
			errs []error
		}
		all, child := make(chan result, 1), make(chan result, 1)
		go func() {
			got, errs := tailUntil(ctx, s, Filter{Limit: 50}, total)
			all <- result{got, errs}
		}()
		go func() {
			got, errs := tailUntil(ctx, s, Filter{Actor: "child"}, childN)
			child <- result{got, errs}
		}()

		cmd, barrier := startHelper(t, "record",
			"AUDIT_CHILD_DSN="+st.dsn, "AUDIT_CHILD_PATH="+st.path, "AUDIT_CHILD_TABLE="+st.table,
			"AUDIT_CHILD_NAME=child", "AUDIT_CHILD_N="+strconv.Itoa(childN))
		start := make(chan struct{})
		var wg sync.WaitGroup
		for g := 0; g < goroutines; g++ {
			wg.Add(1)
			go func() {
				defer wg.Done()
				<-start
				for i := 0; i < each; i++ {
					e := Entry{EventType: "tail.write", Actor: "g" + strconv.Itoa(g), RequestID: fmt.Sprintf("g%d-%06d", g, i)}
					if !assert.NoError(t, s.Record(ctx, e)) {
						return
					}
				}
			}()
		}
		close(start)
		require.NoError(t, barrier.Close())
		wg.Wait()
		require.NoError(t, cmd.Wait(), "the writing process")
		require.NoError(t, s.Flush(ctx))

		table := listAll(t, s)
		require.Len(t, table, total)
		got := <-all
		assert.Empty(t, got.errs)
		require.Len(t, got.got, total, "every entry, each once")
		assert.Equal(t, table, got.got, "exactly the table, in ID order")
		assert.True(t, slices.IsSortedFunc(got.got, func(a, b Entry) int { return int(a.ID - b.ID) }))

		var want []Entry
		for _, e := range table {
			if e.Actor == "child" {
				want = append(want, e)
			}
		}
		fromChild := <-child
		assert.Empty(t, fromChild.errs)
		assert.Equal(t, want, fromChild.got, "the filter selects the child's entries, all of them, in order")
		for i, e := range fromChild.got {
			require.Equal(t, fmt.Sprintf("child-%06d", i), e.RequestID)
		}
		for g := 0; g < goroutines; g++ {
			var seq []string
			for _, e := range got.got {
				if e.Actor == "g"+strconv.Itoa(g) {
					seq = append(seq, e.RequestID)
				}
			}
			require.Len(t, seq, each)
			assert.True(t, sort.StringsAreSorted(seq), "goroutine %d's entries in its own order", g)
		}
	})
}

// TestTailResumes ends a tail's ctx midway, then starts another from the
// last ID seen: together they yield every entry once.
func TestTailResumes(t *testing.T) {
	s, _ := newService(t)
	bg := context.Background()
	for i := 0; i < 10; i++ {
		require.NoError(t, s.Record(bg, sampleEntry(i)))
	}
	require.NoError(t, s.Flush(bg))

	ctx, cancel := context.WithCancel(bg)
	var first []Entry
	for e, err := range s.Tail(ctx, Filter{}) {
		require.NoError(t, err)
		first = append(first, e)
		if len(first) == 4 {
			cancel() // the loop goes on; the tail must end by itself
		}
	}
	require.Len(t, first, 4, "nothing after ctx ended")

	for i := 10; i < 20; i++ {
		require.NoError(t, s.Record(bg, sampleEntry(i)))
	}
	ctx, cancel = context.WithTimeout(bg, time.Minute)
	defer cancel()
	rest, errs := tailUntil(ctx, s, Filter{AfterID: first[len(first)-1].ID}, 16)
	assert.Empty(t, errs)
	assert.Equal(t, listAll(t, s), append(first, rest...))
}

// TestTailAfterCutConnection terminates the PostgreSQL connections of a
// tailing service (and its writer) while entries arrive: the tail goes on
// from where it was and misses nothing.
func TestTailAfterCutConnection(t *testing.T) {
	st := freshPostgres(t)
	const app = "audit_tail_cut"
	s := newServiceAt(t, WithDialector(postgres.Open(st.dsn+"&application_name="+app)), WithTable(st.table))
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	for i := 0; i < 50; i++ {
		require.NoError(t, s.Record(ctx, sampleEntry(i)))
	}
	require.NoError(t, s.Flush(ctx))
	var got []Entry
	cut := false
	for e, err := range s.Tail(ctx, Filter{Limit: 10}) {
		if err != nil {
			t.Logf("yielded: %v", err) // a cut may surface once; the tail retries
			continue
		}
		got = append(got, e)
		if len(got) == 25 && !cut {
			cut = true
			var n int
			require.NoError(t, st.raw.QueryRow(`SELECT COUNT(pg_terminate_backend(pid)) FROM pg_stat_activity WHERE application_name = $1`, app).Scan(&n))
			require.Positive(t, n, "connections cut")
			for i := 50; i < 100; i++ {
				require.NoError(t, s.Record(ctx, sampleEntry(i)))
			}
		}
		if len(got) == 100 {
			break
		}
	}
	require.NoError(t, s.Flush(ctx))
	assert.Equal(t, listAll(t, s), got)
}

// TestTailSlowConsumer holds a tail's loop body still while the service
// records and commits thousands of entries through a small queue: Record
// and Flush do not wait for the consumer, which then gets everything.
func TestTailSlowConsumer(t *testing.T) {
	s, _ := newService(t, WithQueueSize(16), WithBatchSize(16))
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	require.NoError(t, s.Record(ctx, sampleEntry(0)))
	entered, release := make(chan struct{}), make(chan struct{})
	done := make(chan []Entry, 1)
	go func() {
		var got []Entry
		for e, err := range s.Tail(ctx, Filter{}) {
			if !assert.NoError(t, err) {
				break
			}
			if len(got) == 0 {
				close(entered)
				<-release
			}
			got = append(got, e)
			if len(got) == 3001 {
				break
			}
		}
		done <- got
	}()
	<-entered
	for i := 1; i <= 3000; i++ {
		require.NoError(t, s.Record(ctx, sampleEntry(i)))
	}
	require.NoError(t, s.Flush(ctx), "committed while the consumer is stuck")
	close(release)
	assert.Equal(t, listAll(t, s), <-done)
}

// TestTailRefusesBadFilters: a filter a tail cannot follow is one
// ErrInvalidFilter naming the field, and the end.
func TestTailRefusesBadFilters(t *testing.T) {
	s, _ := newService(t)
	for _, tc := range []struct {
		name  string
		f     Filter
		field string
	}{
		{"descending", Filter{Desc: true}, "Desc"},
		{"before an ID", Filter{BeforeID: 9}, "BeforeID"},
		{"negative page", Filter{Limit: -1}, "Limit"},
		{"page too large", Filter{Limit: MaxListLimit + 1}, "Limit"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var errs []error
			for e, err := range s.Tail(context.Background(), tc.f) {
				require.Zero(t, e)
				errs = append(errs, err)
			}
			require.Len(t, errs, 1)
			assert.ErrorIs(t, errs[0], ErrInvalidFilter)
			assert.ErrorContains(t, errs[0], tc.field)
			assert.Equal(t, 1, strings.Count(errs[0].Error(), "audit:"), errs[0].Error())
		})
	}
}

// TestTailEndsWhenServiceCloses: a following tail yields ErrClosed once
// the service shuts down, and ends.
func TestTailEndsWhenServiceCloses(t *testing.T) {
	s, _ := newService(t)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	require.NoError(t, s.Record(ctx, sampleEntry(0)))
	var got []Entry
	var errs []error
	for e, err := range s.Tail(ctx, Filter{}) {
		if err != nil {
			errs = append(errs, err)
			continue
		}
		got = append(got, e)
		require.NoError(t, s.Close())
	}
	assert.Len(t, got, 1)
	require.Len(t, errs, 1)
	assert.True(t, errors.Is(errs[0], ErrClosed), errs[0])
	assert.NoError(t, ctx.Err(), "it ended on ErrClosed, not on ctx")
}

// BenchmarkTailLatency measures how long an entry takes from Record to a
// following tail on SQLite, beside the commit itself (Record + Flush) in
// the same run: "woken" tails the writing service (its commits wake the
// tail), "polled" tails through a second service on the same file, which
// sees the commits as another process's would, by polling. Entries are
// paced at random gaps so that they fall at every phase of the poll.
//
//	go test -run '^$' -bench BenchmarkTailLatency -benchtime 400x .
func BenchmarkTailLatency(b *testing.B) {
	for _, mode := range []string{"woken", "polled"} {
		b.Run(mode, func(b *testing.B) {
			path := testutil.TempDB(b)
			writer := newServiceAt(b, WithSQLite(path), WithLogger(testutil.Discard()))
			tailer := writer
			if mode == "polled" {
				tailer = newServiceAt(b, WithSQLite(path), WithLogger(testutil.Discard()))
			}
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			require.NoError(b, writer.Record(ctx, sampleEntry(0)))
			require.NoError(b, writer.Flush(ctx))
			first, err := writer.List(ctx, Filter{})
			require.NoError(b, err)
			delivered := make(chan time.Time, 1)
			done := make(chan struct{})
			go func() {
				defer close(done)
				for _, err := range tailer.Tail(ctx, Filter{AfterID: first[0].ID}) {
					if err == nil {
						delivered <- time.Now()
					}
				}
			}()
			rng := rand.New(rand.NewPCG(1, 2))
			toDelivery := make([]time.Duration, 0, b.N)
			toCommit := make([]time.Duration, 0, b.N)
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				time.Sleep(time.Duration(rng.IntN(int(2 * TailPollInterval))))
				t0 := time.Now()
				require.NoError(b, writer.Record(ctx, sampleEntry(i+1)))
				require.NoError(b, writer.Flush(ctx))
				tc := time.Now()
				td := <-delivered
				toDelivery = append(toDelivery, td.Sub(t0))
				toCommit = append(toCommit, tc.Sub(t0))
			}
			b.StopTimer()
			cancel()
			<-done
			ms := func(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }
			p50d, p99d := percentile(toDelivery, 50), percentile(toDelivery, 99)
			p50c, p99c := percentile(toCommit, 50), percentile(toCommit, 99)
			b.ReportMetric(ms(p50d), "p50-deliver-ms")
			b.ReportMetric(ms(p99d), "p99-deliver-ms")
			b.ReportMetric(ms(p50c), "p50-commit-ms")
			b.ReportMetric(ms(p99c), "p99-commit-ms")
			b.ReportMetric(float64(p99d)/float64(p99c), "p99-deliver/commit")
		})
	}
}

// percentile returns the p-th percentile of ds (nearest rank).
func percentile(ds []time.Duration, p int) time.Duration {
	if len(ds) == 0 {
		return 0
	}
	s := slices.Clone(ds)
	slices.Sort(s)
	return s[min(len(s)-1, (len(s)*p+99)/100-1)]
}
