package audit

import (
	"context"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/cleveragents/audit/internal/testutil"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestPruneDeletesPrefixOnly(t *testing.T) {
	forEachBackend(t, func(t *testing.T, st *backend) {
		ctx := context.Background()
		s := st.service(t)
		base := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
		// Times: old, old, new, old, new. Prune stops at the first new one.
		var in []Entry
		for i, h := range []int{0, 1, 10, 2, 11} {
			e := sampleEntry(i)
			e.Time = base.Add(time.Duration(h) * time.Hour)
			in = append(in, e)
		}
		recordAll(t, s, in...)
		n, err := s.Prune(ctx, base.Add(5*time.Hour))
		require.NoError(t, err)
		assert.Equal(t, int64(2), n)
		list, err := s.List(ctx, Filter{})
		require.NoError(t, err)
		assert.Equal(t, []int64{3, 4, 5}, ids(list))

		rep, err := s.Verify(ctx)
		require.NoError(t, err, "pruning is not tampering")
		assert.Equal(t, VerifyReport{Entries: 3, FirstID: 3, LastID: 5, Head: list[2].Hash}, rep)

		// The cut is exclusive: an entry exactly at before stays.
		n, err = s.Prune(ctx, base.Add(10*time.Hour))
		require.NoError(t, err)
		assert.Zero(t, n)
		n, err = s.Prune(ctx, base.Add(10*time.Hour+1))
		require.NoError(t, err)
		assert.Equal(t, int64(2), n)
	})
}

func TestPruneEverythingThenChainContinues(t *testing.T) {
	forEachBackend(t, func(t *testing.T, st *backend) {
		ctx := context.Background()
		s := st.service(t)
		recordN(t, s, 0, 2500) // several prune transactions
		last, err := s.Get(ctx, 2500)
		require.NoError(t, err)

		n, err := s.Prune(ctx, time.Date(10000, 1, 1, 0, 0, 0, 0, time.UTC))
		require.NoError(t, err)
		assert.Equal(t, int64(2500), n)
		rep, err := s.Verify(ctx)
		require.NoError(t, err)
		assert.Equal(t, VerifyReport{Head: last.Hash}, rep, "an empty log still has its head")

		recordAll(t, s, sampleEntry(9))
		e, err := s.Get(ctx, 2501)
		require.NoError(t, err, "IDs continue after a full prune")
		assert.Equal(t, last.Hash, e.PrevHash, "the chain continues from the pruned head")
		rep, err = s.Verify(ctx)
		require.NoError(t, err)
		assert.Equal(t, int64(2501), rep.FirstID)
	})
}

// mutableClock is a clock that tests move.
type mutableClock struct{ ns atomic.Int64 }

func newMutableClock(t time.Time) *mutableClock {
	c := &mutableClock{}
	c.ns.Store(t.UnixNano())
	return c
}

func (c *mutableClock) now() time.Time { return time.Unix(0, c.ns.Load()).UTC() }

func (c *mutableClock) advance(d time.Duration) { c.ns.Add(int64(d)) }

func TestRetentionPrunesByClock(t *testing.T) {
	forEachBackend(t, func(t *testing.T, st *backend) {
		ctx := context.Background()
		base := time.Date(2026, 2, 1, 0, 0, 0, 0, time.UTC)
		seed, err := New(st.opts()...)
		require.NoError(t, err)
		for h := 0; h < 10; h++ { // one entry an hour, base to base+9h
			e := sampleEntry(h)
			e.Time = base.Add(time.Duration(h) * time.Hour)
			require.NoError(t, seed.Record(ctx, e))
		}
		require.NoError(t, seed.Close())

		clock := newMutableClock(base.Add(12 * time.Hour))
		fast := Option(func(c *config) { c.retentionEvery = 10 * time.Millisecond })
		s := st.service(t, WithRetention(6*time.Hour), WithClock(clock.now), fast, WithLogger(testutil.Discard()))
		count := func() int64 {
			n, err := s.Count(ctx, Filter{})
			require.NoError(t, err)
			return n
		}
		// The first open starts retention: entries before base+6h go.
		testutil.WaitFor(t, 5*time.Second, func() bool { return count() == 4 }, "retention at first open")
		clock.advance(2 * time.Hour)
		testutil.WaitFor(t, 5*time.Second, func() bool { return count() == 2 }, "retention on the next interval")
		rep, err := s.Verify(ctx)
		require.NoError(t, err)
		assert.Equal(t, int64(9), rep.FirstID)
	})
}

// TestConcurrentPrunesKeepTheChain prunes from two services at once while
// a third writes: the checkpoint must only move forward, so the chain
// verifies whatever the interleaving.
func TestConcurrentPrunesKeepTheChain(t *testing.T) {
	forEachBackend(t, func(t *testing.T, st *backend) {
		ctx := context.Background()
		seed := st.service(t)
		recordN(t, seed, 0, 3000)

		a, b := st.service(t), st.service(t)
		start := make(chan struct{})
		var wg sync.WaitGroup
		var pruned atomic.Int64
		for g, s := range []*AuditService{a, b, a, b} {
			wg.Add(1)
			go func() {
				defer wg.Done()
				<-start
				// Each goroutine prunes to its own cutoff: entry 1000, 1500, ...
				n, err := s.Prune(ctx, sampleEntry(1000+500*g).Time)
				assert.NoError(t, err)
				pruned.Add(n)
			}()
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			<-start
			for i := 3000; i < 3500; i++ {
				assert.NoError(t, seed.Record(ctx, sampleEntry(i)))
			}
			assert.NoError(t, seed.Flush(ctx))
		}()
		close(start)
		wg.Wait()

		assert.Equal(t, int64(2500), pruned.Load(), "every entry pruned once")
		rep, err := seed.Verify(ctx)
		require.NoError(t, err)
		assert.Equal(t, VerifyReport{Entries: 1000, FirstID: 2501, LastID: 3500, Head: rep.Head}, rep)
	})
}

// TestNextPruneChunk checks the sizing of Prune's transactions: a chunk
// that took its budget keeps its size, a slower one shrinks in
// proportion, a faster one grows at most twofold, and the size stays
// between pruneMinChunk and pruneChunk.
func TestNextPruneChunk(t *testing.T) {
	for _, c := range []struct {
		n    int
		took time.Duration
		want int
	}{
		{400, pruneBudget, 400},
		{400, 2 * pruneBudget, 200},
		{400, 4 * pruneBudget, 100},
		{400, pruneBudget / 10, 800},
		{600, pruneBudget / 10, pruneChunk},
		{pruneChunk, pruneBudget / 2, pruneChunk},
		{100, 100 * pruneBudget, pruneMinChunk},
		{pruneMinChunk, 0, 2 * pruneMinChunk},
	} {
		assert.Equal(t, c.want, nextPruneChunk(c.n, c.took), "%d entries in %v", c.n, c.took)
	}
}
