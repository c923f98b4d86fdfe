// Package testutil holds the test helpers that several packages of this
// module share: a log sink, SQLite lock holders and polling. It is for
// tests only; nothing outside the module can import it.
package testutil

import (
	"bytes"
	"context"
	"database/sql"
	"log/slog"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// TempDB returns the path of a new SQLite file in the test's temp dir.
func TempDB(tb testing.TB) string {
	tb.Helper()
	return filepath.Join(tb.TempDir(), "audit.db")
}

// RawDB opens a second, independent connection pool on the SQLite file at
// path, as an operator's tool or another process would, and closes it when
// the test ends.
func RawDB(tb testing.TB, path string) *sql.DB {
	tb.Helper()
	db, err := sql.Open("sqlite3", path+"?_busy_timeout=5000")
	require.NoError(tb, err)
	tb.Cleanup(func() { _ = db.Close() })
	require.NoError(tb, db.Ping())
	return db
}

// HoldWriteLock takes SQLite's write lock on path through a second
// connection and returns the function that releases it (also called when
// the test ends).
func HoldWriteLock(tb testing.TB, path string) (release func()) {
	tb.Helper()
	conn, err := RawDB(tb, path).Conn(context.Background())
	require.NoError(tb, err)
	_, err = TakeWriteLock(context.Background(), conn)
	require.NoError(tb, err, "take the write lock")
	return HoldConn(tb, conn)
}

// TakeWriteLock takes SQLite's write lock (BEGIN IMMEDIATE) on conn,
// trying again at once while it is busy, for up to a minute. A busy
// timeout would not do against a writer that commits batch after batch:
// SQLite's busy handler sleeps between its tries and nearly always wakes
// while the writer holds the lock again, so a second connection can starve
// for longer than its timeout. Trying without sleeping catches the gap
// between two of the writer's transactions.
func TakeWriteLock(ctx context.Context, conn *sql.Conn) (waited time.Duration, err error) {
	began := time.Now()
	if _, err := conn.ExecContext(ctx, "PRAGMA busy_timeout = 0"); err != nil {
		return 0, err
	}
	for {
		_, err := conn.ExecContext(ctx, "BEGIN IMMEDIATE")
		if err == nil || !IsBusy(err) || time.Since(began) > time.Minute {
			return time.Since(began), err
		}
	}
}

// HoldConn returns the function that ends the transaction conn holds open
// (and so its locks) and closes conn; it runs at most once, and at the
// test's end if the test does not call it.
func HoldConn(tb testing.TB, conn *sql.Conn) (release func()) {
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

// WaitFor polls cond until it holds or the deadline passes: for effects of
// background work that no call can wait on (retention, say). The deadline
// is a bound on a hang, not a timing goal: make it generous.
func WaitFor(tb testing.TB, within time.Duration, cond func() bool, msg string) {
	tb.Helper()
	deadline := time.Now().Add(within)
	for !cond() {
		if time.Now().After(deadline) {
			tb.Fatalf("timed out after %v waiting for %s", within, msg)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// LogBuffer collects what a logger writes. It is safe for a service's
// goroutines and the test's at once.
type LogBuffer struct {
	mu  sync.Mutex // guards buf
	buf bytes.Buffer
}

// Write appends p.
func (b *LogBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

// String returns what was written so far.
func (b *LogBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// Logger returns a text logger that writes to b.
func (b *LogBuffer) Logger() *slog.Logger {
	return slog.New(slog.NewTextHandler(b, nil))
}

// JSONLogger returns a JSON logger that writes to b.
func (b *LogBuffer) JSONLogger() *slog.Logger {
	return slog.New(slog.NewJSONHandler(b, nil))
}

// Discard returns a logger that drops everything.
func Discard() *slog.Logger {
	return slog.New(slog.DiscardHandler)
}

// HangBound is how long ReturnsWithin waits: far above anything a busy
// machine adds, far below the "for ever" it exists to catch.
const HangBound = 30 * time.Second

// ReturnsWithin runs fn and fails the test if it has not returned within
// bound: a hang detector, not a timing goal (timing goals belong in
// benchmarks). fn keeps running if it hangs; the test fails at once.
func ReturnsWithin(tb testing.TB, bound time.Duration, what string, fn func()) {
	tb.Helper()
	done := make(chan struct{})
	go func() {
		defer close(done)
		fn()
	}()
	select {
	case <-done:
	case <-time.After(bound):
		tb.Fatalf("%s did not return within %v: it hangs", what, bound)
	}
}
