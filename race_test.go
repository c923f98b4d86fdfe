package audit

import (
	"context"
	"fmt"
	"runtime/debug"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// The race tests (TestRace*, beside the code they race: store_race_test.go,
// audit_race_test.go, query_race_test.go) release many goroutines at once
// (they park on a start channel that is closed only when every one of them
// runs) and then assert exact outcomes: counts, open calls, the IDs and
// links of the chain. None synchronises with time.Sleep; testutil.WaitFor
// polls only for background effects. This file holds their helpers.

// raceRelease runs fn(0) through fn(n-1) in n goroutines, parks them until
// every one has started, releases them together by closing one channel and
// waits until all have returned. A panic in fn fails the test instead of
// the binary.
func raceRelease(tb testing.TB, n int, fn func(i int)) {
	tb.Helper()
	var ready, done sync.WaitGroup
	start := make(chan struct{})
	ready.Add(n)
	done.Add(n)
	for i := 0; i < n; i++ {
		go func() {
			defer done.Done()
			defer func() {
				if r := recover(); r != nil {
					tb.Errorf("goroutine %d panicked: %v\n%s", i, r, debug.Stack())
				}
			}()
			ready.Done()
			<-start
			fn(i)
		}()
	}
	ready.Wait()
	close(start)
	done.Wait()
}

// raceCtx returns the context of a test's calls: a deadline turns a hang
// into a failure.
func raceCtx(tb testing.TB) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	tb.Cleanup(cancel)
	return ctx
}

// raceEntry returns a valid entry of goroutine g's k-th Record: the actor
// names g, the request ID names g and k, so every entry is unique.
func raceEntry(g, k int) Entry {
	e := sampleEntry(k)
	e.Actor = raceActor(g)
	e.RequestID = fmt.Sprintf("race-g%d-k%d", g, k)
	e.Details = map[string]any{"g": float64(g), "k": float64(k)}
	return e
}

func raceActor(g int) string { return fmt.Sprintf("race-actor-%d", g) }

// raceAllEntries lists every committed entry in ID order, page by page.
func raceAllEntries(tb testing.TB, s *AuditService) []Entry {
	tb.Helper()
	var all []Entry
	var after int64
	for {
		page, err := s.List(context.Background(), Filter{AfterID: after, Limit: MaxListLimit})
		require.NoError(tb, err)
		all = append(all, page...)
		if len(page) < MaxListLimit {
			return all
		}
		after = page[len(page)-1].ID
	}
}

// raceRequireChain checks that all holds IDs 1..len(all) in order, each
// linked to the one before it: the chain has neither gaps nor forks.
func raceRequireChain(tb testing.TB, all []Entry) {
	tb.Helper()
	prev := ""
	for i, e := range all {
		require.EqualValues(tb, i+1, e.ID, "IDs must be contiguous from 1")
		require.Equal(tb, prev, e.PrevHash, "entry %d must link to entry %d", e.ID, e.ID-1)
		require.NotEmpty(tb, e.Hash)
		prev = e.Hash
	}
}

// raceRequireVerified runs Verify and checks that it covers exactly n
// entries, 1..n.
func raceRequireVerified(tb testing.TB, s *AuditService, n int) VerifyReport {
	tb.Helper()
	rep, err := s.Verify(context.Background())
	require.NoError(tb, err)
	require.EqualValues(tb, n, rep.Entries)
	require.EqualValues(tb, n, rep.LastID)
	if n > 0 {
		require.EqualValues(tb, 1, rep.FirstID)
		require.NotEmpty(tb, rep.Head)
	}
	return rep
}

// raceCount returns Count(f) and fails the test on an error.
func raceCount(tb testing.TB, s *AuditService, f Filter) int64 {
	tb.Helper()
	n, err := s.Count(context.Background(), f)
	require.NoError(tb, err)
	return n
}
