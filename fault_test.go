//go:build cgo

package audit

import (
	"bytes"
	"context"
	"database/sql"
	"database/sql/driver"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/cleveragents/audit/internal/testutil"
	"github.com/mattn/go-sqlite3"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"gorm.io/driver/sqlite"
)

// Reliability (issue 3, item 2): while the process lives no accepted entry
// is lost through any database fault. Real faults: a second connection
// holding the write lock, a full tmpfs, a missing directory, a table renamed
// away under the writer. The load is relStartLoad's (reliability_test.go).

// relNoTmpfsEnv, set to 1, makes the disk-full test behave as if mounting
// were not permitted (to exercise the injected SQLITE_FULL as root).
const relNoTmpfsEnv = "AUDIT_TEST_NO_TMPFS"

// relMountTmpfs mounts a tmpfs of the given size on dir and unmounts it
// when the test ends. It returns why it could not ("" when mounted).
func relMountTmpfs(t *testing.T, dir, size string) (why string) {
	t.Helper()
	switch {
	case os.Getenv(relNoTmpfsEnv) == "1":
		return relNoTmpfsEnv + "=1"
	case os.Geteuid() != 0:
		return "not running as root"
	}
	if out, err := exec.Command("mount", "-t", "tmpfs", "-o", "size="+size, "tmpfs", dir).CombinedOutput(); err != nil {
		return fmt.Sprintf("mount -t tmpfs: %v: %s", err, bytes.TrimSpace(out))
	}
	t.Cleanup(func() {
		if out, err := exec.Command("umount", dir).CombinedOutput(); err != nil {
			t.Errorf("umount %s: %v: %s", dir, err, bytes.TrimSpace(out))
			_ = exec.Command("umount", "-l", dir).Run()
		}
	})
	return ""
}

// relFill writes path until the filesystem is full and returns how many
// bytes it took.
func relFill(t *testing.T, path string) int64 {
	t.Helper()
	f, err := os.Create(path)
	require.NoError(t, err)
	defer f.Close()
	block := bytes.Repeat([]byte{0xa5}, 4096)
	var n int64
	for {
		w, err := f.Write(block)
		n += int64(w)
		if err != nil {
			require.ErrorIs(t, err, syscall.ENOSPC)
			return n
		}
	}
}

// TestFaultMatrix: each fault while relGoroutines goroutines keep
// recording; each ends with nothing accepted lost, each goroutine's order
// kept and the chain verifying.
func TestFaultMatrix(t *testing.T) {
	t.Run("write lock held for 6s/async", func(t *testing.T) { relFaultBusy(t, false) })
	t.Run("write lock held for 6s/sync", func(t *testing.T) { relFaultBusy(t, true) })
	mounted := false
	t.Run("disk full", func(t *testing.T) { relFaultDiskFull(t, &mounted) })
	if !mounted {
		t.Run("disk full, injected", relFaultDiskFullInjected)
	}
	t.Run("first opens fail", relFaultOpenFails)
	t.Run("directory missing at start", relFaultDirMissing)
	t.Run("caller ctx cancelled while its entry is in a batch", relFaultCtxCancelled)
}

// relBusyFor is how long another connection holds the write lock: longer
// than the 5 s after which a busy database counts as a failure.
const relBusyFor = 6 * time.Second

func relFaultBusy(t *testing.T, syncMode bool) {
	path := testutil.TempDB(t)
	s := relService(t, WithSQLite(path), WithAsync(!syncMode))
	name := "busy-async"
	if syncMode {
		name = "busy-sync"
	}
	l := relStartLoad(t, s, name, syncMode, 0)
	relWaitWritten(t, s, 200, 30*time.Second, "the first commits")

	before := s.Stats()
	release := testutil.HoldWriteLock(t, path)
	// The fault's length. Written is read a second in: a commit that ended
	// just before the lock was taken may be counted a moment after.
	<-time.After(time.Second)
	held := s.Stats()
	<-time.After(relBusyFor - time.Second)
	assert.Equal(t, held.Written, s.Stats().Written, "nothing commits while another connection holds the write lock")
	release()
	testutil.WaitFor(t, 10*time.Second, func() bool { return s.Stats().Failures >= before.Failures+1 }, "the busy database counted as a failure")
	relWaitWritten(t, s, 200, 30*time.Second, "writing resumes by itself after the lock is released")
	l.finish(t)
	relCheck(t, s, l, 0, 30*time.Second)
	assert.GreaterOrEqual(t, s.Stats().Failures, uint64(1))
}

// relTmpfsSize is the size of the disk-full test's filesystem.
const relTmpfsSize = "2m"

// relFaultDiskFull fills a small tmpfs under a running service: a real
// SQLITE_FULL. It sets *mounted once the tmpfs is mounted; where it cannot
// be, it skips (which CI=true forbids).
func relFaultDiskFull(t *testing.T, mounted *bool) {
	dir := filepath.Join(t.TempDir(), "tmpfs")
	require.NoError(t, os.Mkdir(dir, 0o755))
	if why := relMountTmpfs(t, dir, relTmpfsSize); why != "" {
		msg := "the disk-full test needs a small tmpfs, and mounting one needs root (" + why + "); an injected SQLITE_FULL runs instead"
		if os.Getenv("CI") == "true" {
			t.Fatal(msg + ", but under CI=true the real one must run")
		}
		t.Skip(msg)
	}
	*mounted = true
	path := filepath.Join(dir, "audit.db")
	logs := &testutil.LogBuffer{}
	// A small queue: what is queued during the fault must fit on the
	// filesystem once it is freed.
	s := relService(t, WithSQLite(path), WithQueueSize(256), WithLogger(slog.New(slog.NewTextHandler(logs, nil))))
	l := relStartLoad(t, s, "disk-full", false, 0)
	relWaitWritten(t, s, 100, 30*time.Second, "the first commits")

	filler := filepath.Join(dir, "filler")
	filled := relFill(t, filler)
	before := s.Stats().Failures
	testutil.WaitFor(t, 30*time.Second, func() bool { return s.Stats().Failures > before }, "a failed write on the full filesystem")
	// The writer counts a failure just before it logs it.
	testutil.WaitFor(t, 5*time.Second, func() bool { return strings.Contains(logs.String(), "database or disk is full") },
		"the write failing with SQLITE_FULL in the log")
	fctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	err := s.Flush(fctx)
	cancel()
	require.ErrorIs(t, err, context.DeadlineExceeded, "Flush cannot succeed while the disk is full")
	assert.Contains(t, err.Error(), "database or disk is full", "Flush's error names the last write error")
	t.Logf("disk-full: filler took %d KiB; %d failures while full", filled/1024, s.Stats().Failures-before)

	require.NoError(t, os.Remove(filler))
	relWaitWritten(t, s, 100, 30*time.Second, "writing resumes by itself once space is freed")
	l.finish(t)
	relCheck(t, s, l, 0, 30*time.Second)
	var sizes []string
	for _, suffix := range []string{"", "-wal", "-shm"} {
		if fi, err := os.Stat(path + suffix); err == nil {
			sizes = append(sizes, fmt.Sprintf("audit.db%s %d KiB", suffix, fi.Size()/1024))
		}
	}
	t.Logf("disk-full: files on the %s tmpfs at the end: %s", relTmpfsSize, strings.Join(sizes, ", "))
}

// relFull switches the injected SQLITE_FULL of relFullDriver on and off.
var relFull atomic.Bool

var relRegisterFullDriver = sync.OnceFunc(func() {
	sql.Register("rel-sqlite3-full", relFullDriver{})
})

// relFullDriver is go-sqlite3 with a fault: while relFull is set, inserts
// into the default table fail with SQLITE_FULL, as on a full disk.
type relFullDriver struct{ sqlite3.SQLiteDriver }

func (d relFullDriver) Open(dsn string) (driver.Conn, error) {
	c, err := d.SQLiteDriver.Open(dsn)
	if err != nil {
		return nil, err
	}
	return relFullConn{c.(*sqlite3.SQLiteConn)}, nil
}

type relFullConn struct{ *sqlite3.SQLiteConn }

func (c relFullConn) ExecContext(ctx context.Context, query string, args []driver.NamedValue) (driver.Result, error) {
	if relFull.Load() && strings.HasPrefix(query, "INSERT INTO "+quote(DefaultTable)) {
		return nil, sqlite3.Error{Code: sqlite3.ErrFull}
	}
	return c.SQLiteConn.ExecContext(ctx, query, args)
}

// relFaultDiskFullInjected covers the disk-full path where no tmpfs can be
// mounted: SQLITE_FULL injected through a wrapping driver.
func relFaultDiskFullInjected(t *testing.T) {
	relRegisterFullDriver()
	t.Cleanup(func() { relFull.Store(false) })
	dsn, _ := sqliteDSN(testutil.TempDB(t))
	logs := &testutil.LogBuffer{}
	s := relService(t, WithDialector(sqlite.New(sqlite.Config{DriverName: "rel-sqlite3-full", DSN: dsn})),
		WithLogger(slog.New(slog.NewTextHandler(logs, nil))))
	l := relStartLoad(t, s, "disk-full-injected", false, 0)
	relWaitWritten(t, s, 100, 30*time.Second, "the first commits")

	relFull.Store(true)
	before := s.Stats().Failures
	testutil.WaitFor(t, 30*time.Second, func() bool { return s.Stats().Failures >= before+2 }, "failed writes while the disk is full")
	// The writer counts a failure just before it logs it.
	testutil.WaitFor(t, 5*time.Second, func() bool { return strings.Contains(logs.String(), "database or disk is full") },
		"the write failing with SQLITE_FULL in the log")
	relFull.Store(false)
	relWaitWritten(t, s, 100, 30*time.Second, "writing resumes by itself once space is freed")
	l.finish(t)
	relCheck(t, s, l, 0, 30*time.Second)
}

func relFaultOpenFails(t *testing.T) {
	st := freshSQLite(t)
	const failFirst = 3
	d := countOpens(st.dialector(), failFirst)
	s := relService(t, WithDialector(d), WithTable(st.table))
	l := relStartLoad(t, s, "open-fails", false, 0)
	relWaitWritten(t, s, 500, 30*time.Second, "writing after the failed opens")
	l.finish(t)
	relCheck(t, s, l, 0, 30*time.Second)
	assert.Equal(t, int64(failFirst+1), d.opens.Load(), "opened once after the failures, and not again")
	assert.Equal(t, uint64(failFirst), s.Stats().Failures, "each failed open counted")
}

func relFaultDirMissing(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "later")
	s := relService(t, WithSQLite(filepath.Join(dir, "audit.db")))
	l := relStartLoad(t, s, "dir-missing", false, 0)
	testutil.WaitFor(t, 30*time.Second, func() bool { return s.Stats().Failures >= 2 }, "failed opens while the directory is missing")
	assert.Zero(t, s.Stats().Written)
	require.NoError(t, os.Mkdir(dir, 0o755))
	relWaitWritten(t, s, 500, 30*time.Second, "writing once the directory exists")
	l.finish(t)
	relCheck(t, s, l, 0, 30*time.Second)
	_, err := os.Stat(filepath.Join(dir, "audit.db"))
	assert.NoError(t, err, "the file is where WithSQLite said")
}

// relFaultCtxCancelled: in sync mode, a caller gives up (its ctx is
// cancelled) while the batch holding its entry waits for the write lock.
// Record returns the ctx's error, but the batch must not run under the
// caller's ctx: once the lock is released the entry is committed, first in
// line.
func relFaultCtxCancelled(t *testing.T) {
	ctx := context.Background()
	path := testutil.TempDB(t)
	s := relService(t, WithSQLite(path), WithAsync(false))
	opening := Entry{EventType: "rel.open", Actor: "ctx-opening", RequestID: "ctx-opening"}
	require.NoError(t, s.Record(ctx, opening), "opens the database and creates the schema")

	release := testutil.HoldWriteLock(t, path)
	special := Entry{EventType: "rel.cancelled", Actor: "ctx-special", RequestID: "ctx-special"}
	cctx, cancel := context.WithCancel(ctx)
	defer cancel()
	got := make(chan error, 1)
	go func() { got <- s.Record(cctx, special) }()
	testutil.WaitFor(t, 10*time.Second, func() bool { return s.Stats().Queued == 1 }, "the entry queued, taken into the writer's batch")

	// The load queues behind it, while the lock is held.
	l := relStartLoad(t, s, "ctx-load", true, 0)
	testutil.WaitFor(t, 10*time.Second, func() bool { return s.Stats().Queued == 1+relGoroutines }, "every load goroutine waiting for its commit")
	cancel()
	err := <-got
	require.ErrorIs(t, err, context.Canceled, "Record returns its ctx's error")
	assert.Equal(t, uint64(1), s.Stats().Written, "nothing committed while the lock is held")

	release()
	relWaitWritten(t, s, 300, 30*time.Second, "writing after the lock is released")
	l.finish(t)
	relCheck(t, s, l, 2, 30*time.Second)

	list, err := s.List(ctx, Filter{RequestID: special.RequestID})
	require.NoError(t, err)
	require.Len(t, list, 1, "the cancelled caller's entry was committed all the same")
	assert.Equal(t, int64(2), list[0].ID, "in its place in line")
}
