package purego

import (
	"context"
	"database/sql"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/cleveragents/audit"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"
)

// Goroutines released together record, sync and async, and read while they
// do: every entry is committed exactly once, in one unforked chain.
func TestRaceConcurrentRecorders(t *testing.T) {
	ctx := context.Background()
	l := freshLog(t)
	async := l.service(t, audit.WithBatchSize(16))
	sync_ := l.service(t, audit.WithAsync(false))
	const workers, each = 8, 40
	start := make(chan struct{})
	var wg sync.WaitGroup
	for g := 0; g < workers; g++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			<-start
			s := async
			if g%2 == 1 {
				s = sync_
			}
			for i := 0; i < each; i++ {
				e := sampleEntry(g*each + i)
				e.RequestID = fmt.Sprintf("g%d-%d", g, i)
				assert.NoError(t, s.Record(ctx, e))
				if i%10 == 0 {
					_, err := s.List(ctx, audit.Filter{Actor: e.Actor, Limit: 5})
					assert.NoError(t, err)
				}
			}
		}()
	}
	close(start)
	wg.Wait()
	require.NoError(t, async.Flush(ctx))

	all, err := async.List(ctx, audit.Filter{Limit: 10000})
	require.NoError(t, err)
	require.Len(t, all, workers*each)
	assert.Equal(t, seq(1, workers*each), ids(all))
	seen := map[string]bool{}
	for i, e := range all {
		assert.False(t, seen[e.RequestID], "%s committed twice", e.RequestID)
		seen[e.RequestID] = true
		if i > 0 {
			assert.Equal(t, all[i-1].Hash, e.PrevHash, "no fork at ID %d", e.ID)
		}
	}
	for g := 0; g < workers; g++ {
		for i := 0; i < each; i++ {
			assert.True(t, seen[fmt.Sprintf("g%d-%d", g, i)])
		}
	}
	rep, err := sync_.Verify(ctx)
	require.NoError(t, err)
	assert.Equal(t, int64(workers*each), rep.Entries)
	assert.Equal(t, uint64(workers/2*each), async.Stats().Written)
	assert.Equal(t, uint64(workers/2*each), sync_.Stats().Written)
}

// Two services on one new file, started together, contend for the WAL
// switch, the schema and every write lock: all entries of both are
// committed in one chain, and no busy error surfaced as a failure.
func TestRaceTwoServicesOneFile(t *testing.T) {
	ctx := context.Background()
	l := freshLog(t)
	svcs := []*audit.AuditService{
		l.service(t, audit.WithAsync(false), audit.WithBatchSize(4)),
		l.service(t, audit.WithAsync(false), audit.WithBatchSize(4)),
	}
	const goroutines, each = 4, 30
	start := make(chan struct{})
	var wg sync.WaitGroup
	for si, s := range svcs {
		for g := 0; g < goroutines; g++ {
			wg.Add(1)
			go func() {
				defer wg.Done()
				<-start
				for i := 0; i < each; i++ {
					e := sampleEntry(i)
					e.RequestID = fmt.Sprintf("s%d-g%d-%d", si, g, i)
					assert.NoError(t, s.Record(ctx, e))
				}
			}()
		}
	}
	close(start)
	wg.Wait()

	total := int64(len(svcs) * goroutines * each)
	for _, s := range svcs {
		n, err := s.Count(ctx, audit.Filter{})
		require.NoError(t, err)
		assert.Equal(t, total, n)
		rep, err := s.Verify(ctx)
		require.NoError(t, err)
		assert.Equal(t, audit.VerifyReport{Entries: total, FirstID: 1, LastID: total, Head: rep.Head}, rep)
		st := s.Stats()
		assert.Equal(t, uint64(goroutines*each), st.Written)
		assert.Zero(t, st.Failures, "a busy database is waited for, not a failure: %v", st.LastWriteError)
	}
}

// While another connection holds SQLite's write lock, the library retries
// the pure-Go driver's SQLITE_BUSY instead of failing: Ping keeps trying
// until its ctx ends, the writers of two other services wait, and once the
// lock is released everything commits with no failure counted.
func TestBusyIsRetried(t *testing.T) {
	ctx := context.Background()
	l := freshLog(t)
	a := l.service(t, audit.WithAsync(false))
	b := l.service(t, audit.WithAsync(false))
	// The prober has no writes of its own: a service's write transactions
	// take turns, and Ping would queue behind the writer's.
	prober := l.service(t)
	for _, s := range []*audit.AuditService{a, b, prober} {
		require.NoError(t, s.Ping(ctx))
	}

	release := holdWriteLock(t, l.raw)
	done := make(chan error, 2)
	for i, s := range []*audit.AuditService{a, b} {
		go func() { done <- s.Record(ctx, sampleEntry(i)) }()
	}

	// An unrecognised busy error would end Ping at once, its ctx alive.
	// Its second is also the writers' time to find the lock taken.
	pctx, cancel := context.WithTimeout(ctx, time.Second)
	defer cancel()
	err := prober.Ping(pctx)
	require.Error(t, err, "the write lock is held")
	assert.Error(t, pctx.Err(), "Ping retried the busy database until its ctx ended: %v", err)
	select {
	case err := <-done:
		t.Fatalf("a Record returned while the write lock was held: %v", err)
	default:
	}

	release()
	require.NoError(t, <-done)
	require.NoError(t, <-done)
	n, err := b.Count(ctx, audit.Filter{})
	require.NoError(t, err)
	assert.Equal(t, int64(2), n)
	_, err = a.Verify(ctx)
	require.NoError(t, err)
	assert.Zero(t, a.Stats().Failures, "%v", a.Stats().LastWriteError)
	assert.Zero(t, b.Stats().Failures, "%v", b.Stats().LastWriteError)
}

// holdWriteLock takes SQLite's write lock on a connection of raw and holds
// it until the returned function is called (at the test's end at the
// latest).
func holdWriteLock(tb testing.TB, raw *sql.DB) (release func()) {
	tb.Helper()
	ctx := context.Background()
	conn, err := raw.Conn(ctx)
	require.NoError(tb, err)
	_, err = conn.ExecContext(ctx, "BEGIN IMMEDIATE")
	require.NoError(tb, err)
	var once sync.Once
	release = func() {
		once.Do(func() {
			_, err := conn.ExecContext(ctx, "ROLLBACK")
			assert.NoError(tb, err)
			_ = conn.Close()
		})
	}
	tb.Cleanup(release)
	return release
}

// Shutdown drains everything accepted and leaves nothing running: no
// writer, no retention pruner, no driver or pool goroutine.
func TestShutdownLeavesNothingRunning(t *testing.T) {
	ignore := goleak.IgnoreCurrent()
	ctx := context.Background()
	l := freshLog(t)
	require.NoError(t, l.raw.Close()) // this test's own pool would show as a leak
	s, err := audit.New(audit.WithDialector(l.dialector()), audit.WithLogger(discard()),
		audit.WithRetention(24*time.Hour), audit.WithQueueSize(64))
	require.NoError(t, err)
	for i := 0; i < 200; i++ {
		require.NoError(t, s.Record(ctx, sampleEntry(i)))
	}
	require.NoError(t, s.Shutdown(ctx))
	goleak.VerifyNone(t, ignore)
	assert.ErrorIs(t, s.Record(ctx, sampleEntry(0)), audit.ErrClosed)

	// Everything accepted was committed before Shutdown returned.
	s2, err := audit.New(audit.WithDialector(l.dialector()), audit.WithLogger(discard()))
	require.NoError(t, err)
	n, err := s2.Count(ctx, audit.Filter{})
	require.NoError(t, err)
	assert.Equal(t, int64(200), n)
	require.NoError(t, s2.Shutdown(ctx))
	goleak.VerifyNone(t, ignore)
}
