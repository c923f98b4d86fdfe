package audit

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/cleveragents/audit/internal/testutil"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestNewDoesNotTouchDatabase(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "missing")
	s, err := New(WithSQLite(filepath.Join(dir, "audit.db")))
	require.NoError(t, err)
	require.NoError(t, s.Close())
	_, err = os.Stat(dir)
	assert.True(t, os.IsNotExist(err), "New or Close created %s", dir)
}

func TestQueuedEntriesAreNotVisibleUntilFlush(t *testing.T) {
	forEachBackend(t, func(t *testing.T, st *backend) {
		ctx := context.Background()
		s := st.service(t)
		require.NoError(t, s.Record(ctx, sampleEntry(0)))
		require.NoError(t, s.Flush(ctx)) // opens the database and creates the table
		release := st.holdWriteLock(t)
		require.NoError(t, s.Record(ctx, sampleEntry(1)))
		n, err := s.Count(ctx, Filter{})
		require.NoError(t, err)
		assert.Equal(t, int64(1), n, "a queued entry is not visible")
		assert.Equal(t, 1, s.Stats().Queued)
		release()
		require.NoError(t, s.Flush(ctx))
		n, err = s.Count(ctx, Filter{})
		require.NoError(t, err)
		assert.Equal(t, int64(2), n)
		assert.Equal(t, 0, s.Stats().Queued)
	})
}

func TestShutdownDrainsEverything(t *testing.T) {
	forEachBackend(t, func(t *testing.T, st *backend) {
		ctx := context.Background()
		s, err := New(append(st.opts(), WithBatchSize(64))...)
		require.NoError(t, err)
		queueN(t, s, 0, 1000)
		require.NoError(t, s.Shutdown(ctx))
		require.ErrorIs(t, s.Record(ctx, sampleEntry(0)), ErrClosed)
		assert.Equal(t, uint64(1000), s.Stats().Written)

		s2 := st.service(t)
		n, err := s2.Count(ctx, Filter{})
		require.NoError(t, err)
		assert.Equal(t, int64(1000), n)
	})
}

func TestShutdownTimeoutLogsUncommitted(t *testing.T) {
	forEachBackend(t, func(t *testing.T, st *backend) {
		ctx := context.Background()
		logs := &testutil.LogBuffer{}
		s := st.service(t, WithLogger(logs.JSONLogger()))
		recordAll(t, s, sampleEntry(0))
		release := st.holdWriteLock(t)
		defer release()
		queueN(t, s, 1, 5)

		sctx, cancel := context.WithTimeout(ctx, 200*time.Millisecond)
		defer cancel()
		var err error
		testutil.ReturnsWithin(t, testutil.HangBound, "Shutdown with its ctx ended", func() { err = s.Shutdown(sctx) })
		require.Error(t, err)
		assert.Contains(t, err.Error(), "audit: shutdown: 5 entries not committed")
		require.ErrorIs(t, err, context.DeadlineExceeded)
		assert.Equal(t, err, s.Shutdown(ctx), "later calls return the first result")
		assert.Equal(t, 0, s.Stats().Queued)

		// Each uncommitted entry is one JSON line, recoverable from the log.
		found := map[string]bool{}
		for _, line := range strings.Split(strings.TrimSpace(logs.String()), "\n") {
			var rec struct {
				Msg   string `json:"msg"`
				Entry string `json:"entry"`
			}
			require.NoError(t, json.Unmarshal([]byte(line), &rec), line)
			if rec.Msg != "audit: entry not committed" {
				continue
			}
			var e struct {
				RequestID string         `json:"request_id"`
				Actor     string         `json:"actor"`
				Details   map[string]any `json:"details"`
			}
			require.NoError(t, json.Unmarshal([]byte(rec.Entry), &e))
			found[e.RequestID] = true
			assert.NotEmpty(t, e.Actor)
			assert.Equal(t, "10.0.0.1", e.Details["ip"])
		}
		assert.Equal(t, map[string]bool{"req-1": true, "req-2": true, "req-3": true, "req-4": true, "req-5": true}, found)
	})
}

func TestClosedServiceRefuses(t *testing.T) {
	forEachBackend(t, func(t *testing.T, st *backend) {
		ctx := context.Background()
		s := st.service(t)
		require.NoError(t, s.Record(ctx, sampleEntry(0)))
		require.NoError(t, s.Close())
		require.NoError(t, s.Close(), "idempotent")
		require.ErrorIs(t, s.Record(ctx, sampleEntry(1)), ErrClosed)
		require.ErrorIs(t, s.Flush(ctx), ErrClosed)
		_, err := s.Get(ctx, 1)
		require.ErrorIs(t, err, ErrClosed)
		_, err = s.List(ctx, Filter{})
		require.ErrorIs(t, err, ErrClosed)
		_, err = s.Count(ctx, Filter{})
		require.ErrorIs(t, err, ErrClosed)
		_, err = s.Prune(ctx, time.Now())
		require.ErrorIs(t, err, ErrClosed)
		_, err = s.Verify(ctx)
		require.ErrorIs(t, err, ErrClosed)
		stats := s.Stats()
		assert.Equal(t, uint64(1), stats.Written)
		assert.Equal(t, uint64(1), stats.Rejected)
	})
}

func TestLibraryLogsOnlyThroughItsLogger(t *testing.T) {
	// Capture the process's stdout and stderr around a failing open, which
	// GORM would report on its default logger.
	logs := &testutil.LogBuffer{}
	out := captureOutput(t, func() {
		s, err := New(WithSQLite(filepath.Join(t.TempDir(), "missing", "a.db")),
			WithLogger(logs.Logger()))
		require.NoError(t, err)
		_, err = s.Count(context.Background(), Filter{})
		require.Error(t, err)
		require.NoError(t, s.Close())
	})
	assert.Empty(t, out, "the library printed")
	assert.Contains(t, logs.String(), "open database failed")
}

// captureOutput runs f with os.Stdout and os.Stderr redirected and returns
// what was written to them.
func captureOutput(t *testing.T, f func()) string {
	t.Helper()
	r, w, err := os.Pipe()
	require.NoError(t, err)
	stdout, stderr := os.Stdout, os.Stderr
	os.Stdout, os.Stderr = w, w
	done := make(chan string)
	go func() {
		var b bytes.Buffer
		_, _ = b.ReadFrom(r)
		done <- b.String()
	}()
	defer func() {
		os.Stdout, os.Stderr = stdout, stderr
	}()
	f()
	os.Stdout, os.Stderr = stdout, stderr
	require.NoError(t, w.Close())
	return <-done
}

// TestPerfRefusedRecordsHeap checks that refused Records leave nothing
// behind: with the writer locked out of the database (another connection
// holds BEGIN IMMEDIATE) and the queue full, a million Record calls under
// OverflowFail are refused, and the live heap grows by at most 64 MiB.
// Under the race detector it refuses 100k instead, to stay quick; .ci/run
// runs the full million in a step without -race.
func TestPerfRefusedRecordsHeap(t *testing.T) {
	refusals := 1_000_000
	if perfRace {
		refusals = 100_000
	}
	ctx := context.Background()
	s, path := newService(t, WithOverflow(OverflowFail), WithLogger(testutil.Discard()))
	_, err := s.Count(ctx, Filter{}) // open: the writer then waits only for the lock
	require.NoError(t, err)
	release := testutil.HoldWriteLock(t, path)

	accepted := 0
	for ; ; accepted++ {
		if err := s.Record(ctx, sampleEntry(accepted)); err != nil {
			require.ErrorIs(t, err, ErrQueueFull)
			break
		}
	}
	entries := make([]Entry, 64)
	for i := range entries {
		entries[i] = sampleEntry(accepted + i)
	}

	before := perfHeapAlloc()
	workers := runtime.GOMAXPROCS(0)
	var wg sync.WaitGroup
	for w := range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := w; i < refusals; i += workers {
				if err := s.Record(ctx, entries[i%len(entries)]); !errors.Is(err, ErrQueueFull) {
					t.Errorf("Record %d: %v, want ErrQueueFull", i, err)
					return
				}
			}
		}()
	}
	wg.Wait()
	after := perfHeapAlloc()
	growth := int64(after) - int64(before)
	t.Logf("heap-growth-MiB %.2f (HeapAlloc %d -> %d bytes over %d refused Records)",
		float64(growth)/(1<<20), before, after, refusals)
	require.LessOrEqual(t, growth, int64(64<<20))
	require.Equal(t, uint64(refusals+1), s.Stats().Rejected)

	release()
	require.NoError(t, s.Flush(ctx))
	n, err := s.Count(ctx, Filter{})
	require.NoError(t, err)
	require.Equal(t, int64(accepted), n, "every accepted entry committed, none of the refused")
}

// perfHeapAlloc returns the live heap after a collection.
func perfHeapAlloc() uint64 {
	runtime.GC()
	var m runtime.MemStats
	runtime.ReadMemStats(&m)
	return m.HeapAlloc
}
