//go:build cgo

package audit

// Reliability (issue 3, items 1 and 2): what is acknowledged survives a
// SIGKILL, and while the process lives no accepted entry is lost through
// any database fault. Real processes, real SQLite files, real faults: a
// second connection holding the write lock, a full tmpfs, a missing
// directory, a table renamed away under the writer.

import (
	"bufio"
	"bytes"
	"context"
	"database/sql"
	"database/sql/driver"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/mattn/go-sqlite3"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"gorm.io/driver/sqlite"
)

func init() {
	helperRoles["rel-crash"] = relChildCrash
}

// relGoroutines is how many goroutines record at once, in the child of the
// crash tests and in the fault matrix's load.
const relGoroutines = 8

// --- 1. Crash durability ---------------------------------------------------

const (
	relCrashRounds = 4
	relPathEnv     = "AUDIT_REL_PATH"
	relRoundEnv    = "AUDIT_REL_ROUND"
	relModeEnv     = "AUDIT_REL_MODE" // "sync" or "async"
)

func relCrashActor(round, g int) string { return fmt.Sprintf("crash-r%d-g%d", round, g) }

func relCrashReqID(round, g, k int) string { return fmt.Sprintf("crash-r%d-g%d-%07d", round, g, k) }

// relChildCrash is the child of the crash tests. It records from
// relGoroutines goroutines, each in its own sequence, until it is killed.
// In sync mode it prints the RequestID of every entry whose Record
// returned nil; in async mode a Flush loop prints "flushed <n> <c0> ...
// <c7>" after every Flush that returned nil, where c_g is how many entries
// goroutine g had recorded before that Flush began (n their sum). A line
// is one write(2) under a mutex: the parent never sees a torn line.
func relChildCrash() int {
	round, err := strconv.Atoi(os.Getenv(relRoundEnv))
	if err != nil {
		fmt.Fprintln(os.Stderr, "rel-crash:", relRoundEnv, err)
		return 2
	}
	async := os.Getenv(relModeEnv) == "async"
	logger := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelError}))
	s, err := New(WithSQLite(os.Getenv(relPathEnv)), WithAsync(async), WithLogger(logger))
	if err != nil {
		fmt.Fprintln(os.Stderr, "rel-crash:", err)
		return 1
	}
	fail := make(chan error, relGoroutines+2)
	var outMu sync.Mutex // serialises the lines on stdout
	emit := func(line string) {
		outMu.Lock()
		defer outMu.Unlock()
		if _, err := os.Stdout.WriteString(line); err != nil {
			select {
			case fail <- err:
			default:
			}
		}
	}
	var recorded [relGoroutines]atomic.Int64 // entries each goroutine has had accepted
	ctx := context.Background()
	for g := range relGoroutines {
		go func() {
			for k := 0; ; k++ {
				e := Entry{
					EventType: "rel.crash", Actor: relCrashActor(round, g), RequestID: relCrashReqID(round, g, k),
					Resource: "doc/" + strconv.Itoa(k%13), Details: map[string]any{"g": g, "k": k},
				}
				if err := s.Record(ctx, e); err != nil {
					fail <- fmt.Errorf("record %s: %w", e.RequestID, err)
					return
				}
				recorded[g].Store(int64(k + 1))
				if !async {
					emit(e.RequestID + "\n")
				}
			}
		}()
	}
	if async {
		go func() {
			tick := time.NewTicker(10 * time.Millisecond)
			defer tick.Stop()
			for range tick.C {
				var b strings.Builder
				var total int64
				for g := range recorded {
					n := recorded[g].Load() // before Flush begins: accepted before it
					total += n
					b.WriteString(" " + strconv.FormatInt(n, 10))
				}
				if err := s.Flush(ctx); err != nil {
					fail <- fmt.Errorf("flush: %w", err)
					return
				}
				emit("flushed " + strconv.FormatInt(total, 10) + b.String() + "\n")
			}
		}()
	}
	select {
	case err := <-fail:
		fmt.Fprintln(os.Stderr, "rel-crash:", err)
		return 1
	case <-time.After(3 * time.Minute):
		fmt.Fprintln(os.Stderr, "rel-crash: not killed within 3 minutes")
		return 1
	}
}

// relStartCrashChild starts the crash child on path and returns it with
// its stdout.
func relStartCrashChild(t *testing.T, path string, round int, mode string) (*exec.Cmd, *bufio.Reader) {
	t.Helper()
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), helperRoleEnv+"=rel-crash",
		relPathEnv+"="+path, relRoundEnv+"="+strconv.Itoa(round), relModeEnv+"="+mode)
	cmd.Stderr = os.Stderr
	out, err := cmd.StdoutPipe()
	require.NoError(t, err)
	require.NoError(t, cmd.Start())
	t.Cleanup(func() {
		_ = cmd.Process.Kill() // "already finished" after a normal round
		_ = cmd.Wait()
	})
	return cmd, bufio.NewReaderSize(out, 1<<16)
}

// relCrashRound runs one child on path and SIGKILLs it once killAfter
// entries are guaranteed (acknowledged in sync mode, flushed in async
// mode). It returns, per goroutine, how many of its entries (a prefix of
// its sequence) the child guaranteed, and in sync mode the RequestIDs of
// every acknowledgement, including those read after the kill.
func relCrashRound(t *testing.T, path string, round int, async bool, killAfter int) (guaranteed [relGoroutines]int, acks []string) {
	t.Helper()
	mode := "sync"
	if async {
		mode = "async"
	}
	cmd, out := relStartCrashChild(t, path, round, mode)
	// A child that stops printing must not hang the test.
	watchdog := time.AfterFunc(2*time.Minute, func() { _ = cmd.Process.Kill() })
	defer watchdog.Stop()

	killed := false
	kill := func() {
		if !killed {
			killed = true
			require.NoError(t, cmd.Process.Signal(syscall.SIGKILL))
		}
	}
	for {
		line, err := out.ReadString('\n')
		if err != nil {
			require.ErrorIs(t, err, io.EOF)
			require.Empty(t, line, "a torn line from the child")
			break
		}
		line = strings.TrimSuffix(line, "\n")
		if !async {
			var r, g, k int
			_, err := fmt.Sscanf(line, "crash-r%d-g%d-%d", &r, &g, &k)
			require.NoError(t, err, "line %q", line)
			require.Equal(t, round, r, "line %q", line)
			require.Equal(t, guaranteed[g], k, "goroutine %d acknowledges in its own order", g)
			guaranteed[g] = k + 1
			acks = append(acks, line)
			if len(acks) >= killAfter {
				kill()
			}
			continue
		}
		fields := strings.Fields(line)
		require.Len(t, fields, 2+relGoroutines, "line %q", line)
		require.Equal(t, "flushed", fields[0], "line %q", line)
		total, err := strconv.Atoi(fields[1])
		require.NoError(t, err)
		for g := range guaranteed {
			c, err := strconv.Atoi(fields[2+g])
			require.NoError(t, err)
			require.GreaterOrEqual(t, c, guaranteed[g], "flushed counts only grow")
			guaranteed[g] = c
		}
		if total >= killAfter {
			kill()
		}
	}
	err := cmd.Wait()
	require.True(t, killed, "the child ended before it was killed: %v", err)
	var exitErr *exec.ExitError
	require.ErrorAs(t, err, &exitErr, "the child's end")
	ws, ok := exitErr.Sys().(syscall.WaitStatus)
	require.True(t, ok)
	require.True(t, ws.Signaled() && ws.Signal() == syscall.SIGKILL, "the child died of SIGKILL, not %v", err)
	return guaranteed, acks
}

// relIntegrityCheck runs PRAGMA integrity_check on the file through an
// independent connection (which also recovers the WAL of a killed writer).
func relIntegrityCheck(t *testing.T, path string) {
	t.Helper()
	db := rawDB(t, path)
	defer db.Close()
	var res string
	require.NoError(t, db.QueryRow("PRAGMA integrity_check").Scan(&res))
	require.Equal(t, "ok", res, "PRAGMA integrity_check")
}

// relListActor returns every committed entry of actor, in ID order.
func relListActor(t *testing.T, s *AuditService, actor string) []Entry {
	t.Helper()
	ctx := context.Background()
	var all []Entry
	f := Filter{Actor: actor, Limit: MaxListLimit}
	for {
		page, err := s.List(ctx, f)
		require.NoError(t, err)
		all = append(all, page...)
		if len(page) < f.Limit {
			return all
		}
		f.AfterID = page[len(page)-1].ID
	}
}

// relCrash runs relCrashRounds rounds of a child killed mid-stream on one
// file, and after each requires every guaranteed entry present, each
// goroutine's entries a gapless prefix of its sequence, Verify to pass over
// the whole file (the chain continues across the crashes, IDs contiguous)
// and the file to pass SQLite's integrity check.
func relCrash(t *testing.T, async bool) {
	if testing.Short() {
		t.Skip("starts processes")
	}
	ctx := context.Background()
	path := tempDB(t)
	var total int64
	for round := range relCrashRounds {
		killAfter := 300 + 150*round // acknowledged entries
		if async {
			killAfter = 1500 + 750*round // flushed entries
		}
		guaranteed, acks := relCrashRound(t, path, round, async, killAfter)

		relIntegrityCheck(t, path)
		s := relService(t, WithSQLite(path))
		var sumGuaranteed, found, lost int
		extra := 0 // committed but not (yet) acknowledged when the child died
		seqs := make([][]Entry, relGoroutines)
		for g := range relGoroutines {
			seqs[g] = relListActor(t, s, relCrashActor(round, g))
			sumGuaranteed += guaranteed[g]
			found += len(seqs[g])
			lost += max(0, guaranteed[g]-len(seqs[g]))
			extra += max(0, len(seqs[g])-guaranteed[g])
		}
		n, err := s.Count(ctx, Filter{})
		require.NoError(t, err)
		what := "acknowledged"
		if async {
			what = "flushed"
		}
		t.Logf("round %d: %s %d, found %d (%d more committed but not %s), lost %d; %d entries in the file",
			round, what, sumGuaranteed, found, extra, what, lost, n)

		for g, seq := range seqs {
			require.GreaterOrEqual(t, len(seq), guaranteed[g], "goroutine %d: every %s entry survives the crash", g, what)
			if !async {
				// A goroutine's next Record starts only after it printed
				// the previous acknowledgement: at most one more commits.
				require.LessOrEqual(t, len(seq), guaranteed[g]+1, "goroutine %d: only the entry in flight may be committed unacknowledged", g)
			}
			for k, e := range seq {
				require.Equal(t, relCrashReqID(round, g, k), e.RequestID, "goroutine %d: its entries, in order and without gaps", g)
			}
		}
		for _, id := range acks {
			c, err := s.Count(ctx, Filter{RequestID: id})
			require.NoError(t, err)
			require.Equal(t, int64(1), c, "acknowledged %s is there once", id)
		}
		total += int64(found)
		require.Equal(t, total, n, "every round's entries, and nothing else")
		rep, err := s.Verify(ctx)
		require.NoError(t, err, "the chain verifies after crash %d", round)
		require.Equal(t, VerifyReport{Entries: n, FirstID: 1, LastID: n, Head: rep.Head}, rep, "IDs contiguous across the crashes")
		require.NoError(t, s.Close())
	}
}

// TestCrashDurabilitySync: once Record returns nil in sync mode, the entry
// survives SIGKILL.
func TestCrashDurabilitySync(t *testing.T) { relCrash(t, false) }

// TestCrashDurabilityAsync: once Flush returns nil in async mode,
// everything accepted before it survives SIGKILL.
func TestCrashDurabilityAsync(t *testing.T) { relCrash(t, true) }

// --- 2. Fault matrix --------------------------------------------------------

// relService starts a service with opts (logging nowhere unless opts say
// otherwise) and shuts it down when the test ends, within a deadline, so
// that a fault left in place by a failed test cannot hang the run.
func relService(t *testing.T, opts ...Option) *AuditService {
	t.Helper()
	s, err := New(append([]Option{WithLogger(slog.New(slog.DiscardHandler))}, opts...)...)
	require.NoError(t, err)
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
		defer cancel()
		if err := s.Shutdown(ctx); err != nil {
			t.Errorf("shutdown: %v", err)
		}
	})
	return s
}

// relLoad is relGoroutines goroutines recording into one service, each as
// its own Actor with sequential RequestIDs, until stopped (or perG each).
type relLoad struct {
	s        *AuditService
	name     string
	sync     bool
	stop     chan struct{}
	stopOnce sync.Once
	cancel   context.CancelFunc
	done     chan struct{} // closed when every goroutine has returned
	accepted [relGoroutines]atomic.Int64

	mu   sync.Mutex // guards errs
	errs []error
}

func (l *relLoad) actor(g int) string { return l.name + "-g" + strconv.Itoa(g) }

func (l *relLoad) reqID(g, k int) string { return fmt.Sprintf("%s-g%d-%07d", l.name, g, k) }

func (l *relLoad) total() int64 {
	var n int64
	for g := range l.accepted {
		n += l.accepted[g].Load()
	}
	return n
}

// relStartLoad starts the load. In async mode an entry is accepted when
// Record returns nil; stopping cancels the ctx of a Record blocked on a
// full queue, which then returns an error and queues nothing. In sync mode
// Record's ctx is never cancelled while the test goes well (a sync Record
// that ends with its ctx may still be committed), so stopping waits for
// the Records in flight to commit.
func relStartLoad(t *testing.T, s *AuditService, name string, syncMode bool, perG int) *relLoad {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	l := &relLoad{s: s, name: name, sync: syncMode, stop: make(chan struct{}), cancel: cancel, done: make(chan struct{})}
	var wg sync.WaitGroup
	for g := range relGoroutines {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for k := 0; perG == 0 || k < perG; k++ {
				select {
				case <-l.stop:
					return
				default:
				}
				err := s.Record(ctx, Entry{
					EventType: "rel.fault", Actor: l.actor(g), RequestID: l.reqID(g, k),
					Outcome: "success", Details: map[string]any{"k": k},
				})
				if err != nil {
					if !syncMode && errors.Is(err, context.Canceled) && errors.Is(err, ErrQueueFull) {
						return // stopped while waiting for room: not accepted
					}
					l.mu.Lock()
					l.errs = append(l.errs, fmt.Errorf("%s: %w", l.reqID(g, k), err))
					l.mu.Unlock()
					return
				}
				l.accepted[g].Add(1)
			}
		}()
	}
	go func() {
		wg.Wait()
		close(l.done)
	}()
	// After a failed test: give up at once, whatever is in flight.
	t.Cleanup(func() {
		l.stopOnce.Do(func() { close(l.stop) })
		cancel()
		<-l.done
	})
	return l
}

// finish stops the load, waits for its goroutines and requires that no
// Record failed unexpectedly.
func (l *relLoad) finish(t *testing.T) {
	t.Helper()
	l.stopOnce.Do(func() { close(l.stop) })
	if !l.sync {
		l.cancel()
	}
	<-l.done
	l.cancel()
	l.mu.Lock()
	defer l.mu.Unlock()
	require.Empty(t, l.errs, "Records that failed")
}

// relCheck flushes s (within flushWithin) and requires the outcome of a
// fault scenario: Count == accepted (+ extra entries the scenario recorded
// itself), each goroutine's entries all there in its own order, Verify
// passing over contiguous IDs, and Written agreeing. It logs accepted /
// found / lost and the failures counted.
func relCheck(t *testing.T, s *AuditService, l *relLoad, extra int64, flushWithin time.Duration) {
	t.Helper()
	fctx, cancel := context.WithTimeout(context.Background(), flushWithin)
	defer cancel()
	require.NoError(t, s.Flush(fctx), "Flush after the fault cleared")
	ctx := context.Background()

	accepted := l.total()
	var found int64
	seqs := make([][]Entry, relGoroutines)
	for g := range relGoroutines {
		seqs[g] = relListActor(t, s, l.actor(g))
		found += int64(len(seqs[g]))
	}
	n, err := s.Count(ctx, Filter{})
	require.NoError(t, err)
	st := s.Stats()
	t.Logf("%s: accepted %d, found %d, lost %d; Failures %d, Batches %d, Written %d",
		l.name, accepted, found, max(0, accepted-found), st.Failures, st.Batches, st.Written)

	for g, seq := range seqs {
		require.Len(t, seq, int(l.accepted[g].Load()), "goroutine %d: every accepted entry committed, once", g)
		for k, e := range seq {
			require.Equal(t, l.reqID(g, k), e.RequestID, "goroutine %d: its entries in its own order", g)
		}
	}
	require.Equal(t, accepted+extra, n, "Count == accepted")
	require.Equal(t, uint64(n), st.Written, "Stats.Written")
	require.Zero(t, st.Queued, "Stats.Queued after Flush")
	rep, err := s.Verify(ctx)
	require.NoError(t, err)
	require.Equal(t, VerifyReport{Entries: n, FirstID: 1, LastID: n, Head: rep.Head}, rep, "the chain, over contiguous IDs")
}

// relWaitWritten waits until the service has committed n more entries
// than it had.
func relWaitWritten(t *testing.T, s *AuditService, n uint64, within time.Duration, msg string) {
	t.Helper()
	from := s.Stats().Written
	waitFor(t, within, func() bool { return s.Stats().Written >= from+n }, msg)
}

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
	path := tempDB(t)
	s := relService(t, WithSQLite(path), WithAsync(!syncMode))
	name := "busy-async"
	if syncMode {
		name = "busy-sync"
	}
	l := relStartLoad(t, s, name, syncMode, 0)
	relWaitWritten(t, s, 200, 30*time.Second, "the first commits")

	before := s.Stats()
	release := holdWriteLock(t, path)
	// The fault's length. Written is read a second in: a commit that ended
	// just before the lock was taken may be counted a moment after.
	<-time.After(time.Second)
	held := s.Stats()
	<-time.After(relBusyFor - time.Second)
	assert.Equal(t, held.Written, s.Stats().Written, "nothing commits while another connection holds the write lock")
	release()
	waitFor(t, 10*time.Second, func() bool { return s.Stats().Failures >= before.Failures+1 }, "the busy database counted as a failure")
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
	logs := &logBuffer{}
	// A small queue: what is queued during the fault must fit on the
	// filesystem once it is freed.
	s := relService(t, WithSQLite(path), WithQueueSize(256), WithLogger(slog.New(slog.NewTextHandler(logs, nil))))
	l := relStartLoad(t, s, "disk-full", false, 0)
	relWaitWritten(t, s, 100, 30*time.Second, "the first commits")

	filler := filepath.Join(dir, "filler")
	filled := relFill(t, filler)
	before := s.Stats().Failures
	waitFor(t, 30*time.Second, func() bool { return s.Stats().Failures > before }, "a failed write on the full filesystem")
	// The writer counts a failure just before it logs it.
	waitFor(t, 5*time.Second, func() bool { return strings.Contains(logs.String(), "database or disk is full") },
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
	dsn, _ := sqliteDSN(tempDB(t))
	logs := &logBuffer{}
	s := relService(t, WithDialector(sqlite.New(sqlite.Config{DriverName: "rel-sqlite3-full", DSN: dsn})),
		WithLogger(slog.New(slog.NewTextHandler(logs, nil))))
	l := relStartLoad(t, s, "disk-full-injected", false, 0)
	relWaitWritten(t, s, 100, 30*time.Second, "the first commits")

	relFull.Store(true)
	before := s.Stats().Failures
	waitFor(t, 30*time.Second, func() bool { return s.Stats().Failures >= before+2 }, "failed writes while the disk is full")
	// The writer counts a failure just before it logs it.
	waitFor(t, 5*time.Second, func() bool { return strings.Contains(logs.String(), "database or disk is full") },
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
	waitFor(t, 30*time.Second, func() bool { return s.Stats().Failures >= 2 }, "failed opens while the directory is missing")
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
	path := tempDB(t)
	s := relService(t, WithSQLite(path), WithAsync(false))
	opening := Entry{EventType: "rel.open", Actor: "ctx-opening", RequestID: "ctx-opening"}
	require.NoError(t, s.Record(ctx, opening), "opens the database and creates the schema")

	release := holdWriteLock(t, path)
	special := Entry{EventType: "rel.cancelled", Actor: "ctx-special", RequestID: "ctx-special"}
	cctx, cancel := context.WithCancel(ctx)
	defer cancel()
	got := make(chan error, 1)
	go func() { got <- s.Record(cctx, special) }()
	waitFor(t, 10*time.Second, func() bool { return s.Stats().Queued == 1 }, "the entry queued, taken into the writer's batch")

	// The load queues behind it, while the lock is held.
	l := relStartLoad(t, s, "ctx-load", true, 0)
	waitFor(t, 10*time.Second, func() bool { return s.Stats().Queued == 1+relGoroutines }, "every load goroutine waiting for its commit")
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

// --- the chaos run ----------------------------------------------------------

const (
	relChaosSeedEnv = "AUDIT_CHAOS_SEED"
	relChaosTotal   = 50000
)

// relChaosStats counts the faults the chaos run injected.
type relChaosStats struct {
	locks, renames, pauses int
	faulty                 time.Duration
}

// relChaos switches faults on and off at random until loadDone is closed:
// another connection holding the write lock, or the table renamed away,
// each for 10–300 ms, between fault-free pauses as long.
func relChaos(rng *rand.Rand, raw *sql.DB, loadDone <-chan struct{}, st *relChaosStats) error {
	ctx := context.Background()
	conn, err := raw.Conn(ctx) // the faults' own connection
	if err != nil {
		return err
	}
	defer conn.Close()
	// inTx runs stmts as one write transaction, or (none) just holds the
	// write lock for hold.
	inTx := func(hold time.Duration, stmts ...string) error {
		if _, err := takeWriteLock(ctx, conn); err != nil {
			return fmt.Errorf("take the write lock: %w", err)
		}
		for _, stmt := range stmts {
			if _, err := conn.ExecContext(ctx, stmt); err != nil {
				_, _ = conn.ExecContext(ctx, "ROLLBACK")
				return fmt.Errorf("%s: %w", stmt, err)
			}
		}
		if hold > 0 {
			<-time.After(hold) // the fault's length
		}
		end := "COMMIT"
		if len(stmts) == 0 {
			end = "ROLLBACK"
		}
		_, err := conn.ExecContext(ctx, end)
		return err
	}
	away := "ALTER TABLE " + quote(DefaultTable) + ` RENAME TO "rel_chaos_away"`
	back := `ALTER TABLE "rel_chaos_away" RENAME TO ` + quote(DefaultTable)
	for {
		select {
		case <-loadDone:
			return nil
		default:
		}
		d := time.Duration(10+rng.IntN(291)) * time.Millisecond
		switch rng.IntN(3) {
		case 0: // another connection holds the write lock
			if err := inTx(d); err != nil {
				return err
			}
			st.locks++
			st.faulty += d
		case 1: // the table is renamed away, and back
			if err := inTx(0, away); err != nil {
				return err
			}
			<-time.After(d) // the fault's length
			if err := inTx(0, back); err != nil {
				return err
			}
			st.renames++
			st.faulty += d
		default:
			<-time.After(d)
			st.pauses++
		}
	}
}

// TestChaos: 50k Records from relGoroutines goroutines (async,
// OverflowBlock) while faults come and go at random. The seed is logged;
// AUDIT_CHAOS_SEED replays the same fault schedule.
func TestChaos(t *testing.T) {
	seed := uint64(time.Now().UnixNano())
	if v := os.Getenv(relChaosSeedEnv); v != "" {
		var err error
		seed, err = strconv.ParseUint(v, 10, 64)
		require.NoError(t, err, relChaosSeedEnv)
	}
	t.Logf("chaos seed %d (replay the fault schedule with %s=%d)", seed, relChaosSeedEnv, seed)
	rng := rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15))

	ctx := context.Background()
	path := tempDB(t)
	s := relService(t, WithSQLite(path), WithOverflow(OverflowBlock))
	_, err := s.Count(ctx, Filter{}) // creates the table the faults act on
	require.NoError(t, err)
	raw := rawDB(t, path)

	began := time.Now()
	l := relStartLoad(t, s, "chaos", false, relChaosTotal/relGoroutines)
	var st relChaosStats
	chaosErr := make(chan error, 1)
	go func() { chaosErr <- relChaos(rng, raw, l.done, &st) }()
	<-l.done
	require.NoError(t, <-chaosErr)
	l.finish(t)
	recorded := time.Since(began)
	relCheck(t, s, l, 0, time.Minute)
	t.Logf("chaos: %d Records in %v; faults: %d write-lock holds, %d table renames (%v faulty), %d fault-free pauses",
		l.total(), recorded.Round(time.Millisecond), st.locks, st.renames, st.faulty.Round(time.Millisecond), st.pauses)
	require.Equal(t, int64(relChaosTotal), l.total(), "every Record accepted")
	if st.renames > 0 {
		assert.GreaterOrEqual(t, s.Stats().Failures, uint64(1), "writes into a renamed-away table failed and were retried")
	}
}
