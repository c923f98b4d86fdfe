package audit

import (
	"context"
	"errors"
	"fmt"
	"os"
	"sync/atomic"
	"testing"
	"time"

	"github.com/cleveragents/audit/internal/testutil"
	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"
	"gorm.io/driver/sqlite"
	"gorm.io/gorm"
)

// TestMain fails the run if any goroutine outlives the tests: every
// service's writer, retention loop and database pool must end with
// Shutdown.
// A child process of the helper-process pattern runs its role instead.
func TestMain(m *testing.M) {
	if code, ok := runHelperRole(); ok {
		os.Exit(code)
	}
	goleak.VerifyTestMain(m)
}

// newService starts a service on a new SQLite file (unless opts choose
// another database) and closes it when the test ends.
func newService(tb testing.TB, opts ...Option) (*AuditService, string) {
	tb.Helper()
	path := testutil.TempDB(tb)
	return newServiceAt(tb, append([]Option{WithSQLite(path)}, opts...)...), path
}

// newServiceAt starts a service with exactly opts and shuts it down when
// the test ends, with a deadline, so that a writer that never drains (a
// fault a failed test left in place) fails the test instead of hanging it.
func newServiceAt(tb testing.TB, opts ...Option) *AuditService {
	tb.Helper()
	s, err := New(opts...)
	require.NoError(tb, err)
	tb.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), cleanupWithin)
		defer cancel()
		_ = s.Shutdown(ctx)
	})
	return s
}

// cleanupWithin bounds the Shutdown at a test's end: a bound on a hang, not
// a timing goal.
const cleanupWithin = 20 * time.Second

// recordN records sampleEntry(from) through sampleEntry(from+n-1) on s and
// flushes: all n are committed when it returns.
func recordN(tb testing.TB, s *AuditService, from, n int) {
	tb.Helper()
	queueN(tb, s, from, n)
	require.NoError(tb, s.Flush(context.Background()))
}

// queueN records sampleEntry(from) through sampleEntry(from+n-1) on s, one
// after another, and does not flush: in async mode (the default) they may
// still be queued when it returns, as while a test holds the write lock.
func queueN(tb testing.TB, s *AuditService, from, n int) {
	tb.Helper()
	for i := from; i < from+n; i++ {
		require.NoError(tb, s.Record(context.Background(), sampleEntry(i)))
	}
}

// recordAll records entries on s in order and flushes: all are committed
// when it returns.
func recordAll(tb testing.TB, s *AuditService, entries ...Entry) {
	tb.Helper()
	ctx := context.Background()
	for _, e := range entries {
		require.NoError(tb, s.Record(ctx, e))
	}
	require.NoError(tb, s.Flush(ctx))
}

// sampleEntry returns a valid entry whose fields derive from i.
func sampleEntry(i int) Entry {
	return Entry{
		Time:      time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC).Add(time.Duration(i) * time.Second),
		EventType: "user.login",
		Actor:     fmt.Sprintf("user-%d", i%7),
		Resource:  fmt.Sprintf("doc/%d", i%11),
		Outcome:   []string{"success", "failure", "denied"}[i%3],
		RequestID: fmt.Sprintf("req-%d", i),
		Details:   map[string]any{"i": float64(i), "ip": "10.0.0.1"},
	}
}

// countingDialector wraps a dialector to count its opens (Initialize calls)
// and to fail the first failFirst of them: the fault a real database cannot
// produce on demand.
type countingDialector struct {
	gorm.Dialector
	opens     *atomic.Int64
	failFirst int64
}

var errInjectedOpen = errors.New("injected open failure")

func newCountingDialector(path string, failFirst int64) countingDialector {
	dsn, _ := sqliteDSN(path)
	return countOpens(sqlite.Open(dsn), failFirst)
}

// countOpens wraps d to count its opens and fail the first failFirst.
func countOpens(d gorm.Dialector, failFirst int64) countingDialector {
	return countingDialector{Dialector: d, opens: new(atomic.Int64), failFirst: failFirst}
}

func (d countingDialector) Initialize(db *gorm.DB) error {
	if n := d.opens.Add(1); n <= d.failFirst {
		return fmt.Errorf("%w %d", errInjectedOpen, n)
	}
	return d.Dialector.Initialize(db)
}
