package audit

import (
	"bytes"
	"context"
	"database/sql"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
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

// tempDB returns the path of a new SQLite file in the test's temp dir.
func tempDB(tb testing.TB) string {
	tb.Helper()
	return filepath.Join(tb.TempDir(), "audit.db")
}

// newService starts a service on a new SQLite file (unless opts choose
// another database) and closes it when the test ends.
func newService(tb testing.TB, opts ...Option) (*AuditService, string) {
	tb.Helper()
	path := tempDB(tb)
	s, err := New(append([]Option{WithSQLite(path)}, opts...)...)
	require.NoError(tb, err)
	tb.Cleanup(func() { _ = s.Close() })
	return s, path
}

// newServiceAt starts a service with exactly opts and closes it when the
// test ends.
func newServiceAt(tb testing.TB, opts ...Option) *AuditService {
	tb.Helper()
	s, err := New(opts...)
	require.NoError(tb, err)
	tb.Cleanup(func() { _ = s.Close() })
	return s
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

// rawDB opens a second, independent connection pool on the SQLite file at
// path, as an operator's tool or another process would.
func rawDB(tb testing.TB, path string) *sql.DB {
	tb.Helper()
	db, err := sql.Open("sqlite3", path+"?_busy_timeout=5000")
	require.NoError(tb, err)
	tb.Cleanup(func() { _ = db.Close() })
	require.NoError(tb, db.Ping())
	return db
}

// holdWriteLock takes SQLite's write lock on path through a second
// connection and returns the function that releases it.
func holdWriteLock(tb testing.TB, path string) (release func()) {
	tb.Helper()
	conn, err := rawDB(tb, path).Conn(context.Background())
	require.NoError(tb, err)
	_, err = takeWriteLock(context.Background(), conn)
	require.NoError(tb, err, "take the write lock")
	return holdConn(tb, conn)
}

// takeWriteLock takes SQLite's write lock (BEGIN IMMEDIATE) on conn,
// trying again at once while it is busy, for up to a minute. A busy
// timeout would not do against a writer that commits batch after batch:
// SQLite's busy handler sleeps between its tries and nearly always wakes
// while the writer holds the lock again, so a second connection can starve
// for longer than its timeout. Trying without sleeping catches the gap
// between two of the writer's transactions.
func takeWriteLock(ctx context.Context, conn *sql.Conn) (waited time.Duration, err error) {
	began := time.Now()
	if _, err := conn.ExecContext(ctx, "PRAGMA busy_timeout = 0"); err != nil {
		return 0, err
	}
	for {
		_, err := conn.ExecContext(ctx, "BEGIN IMMEDIATE")
		if err == nil || !sqliteBusy(err) || time.Since(began) > time.Minute {
			return time.Since(began), err
		}
	}
}

// holdConn returns the function that ends the transaction conn holds open
// (and so its locks) and closes conn; it runs at most once, and at the
// test's end if the test does not call it.
func holdConn(tb testing.TB, conn *sql.Conn) (release func()) {
	var once sync.Once
	release = func() {
		once.Do(func() {
			_, err := conn.ExecContext(context.Background(), "ROLLBACK")
			assert.NoError(tb, err)
			assert.NoError(tb, conn.Close())
		})
	}
	tb.Cleanup(release)
	return release
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

// waitFor polls cond until it holds or the deadline passes: for effects of
// background work that no call can wait on (retention, say).
func waitFor(tb testing.TB, within time.Duration, cond func() bool, msg string) {
	tb.Helper()
	deadline := time.Now().Add(within)
	for !cond() {
		if time.Now().After(deadline) {
			tb.Fatalf("timed out after %v waiting for %s", within, msg)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// logBuffer collects what a service logs. It is safe for the writer's
// goroutine and the test's at once.
type logBuffer struct {
	mu  sync.Mutex // guards buf
	buf bytes.Buffer
}

func (b *logBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

// String returns what was written so far.
func (b *logBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// logger returns a text logger that writes to b.
func (b *logBuffer) logger() *slog.Logger {
	return slog.New(slog.NewTextHandler(b, nil))
}

// jsonLogger returns a JSON logger that writes to b.
func (b *logBuffer) jsonLogger() *slog.Logger {
	return slog.New(slog.NewJSONHandler(b, nil))
}
