//go:build cgo

package audit

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/cleveragents/audit/internal/testutil"
	"github.com/stretchr/testify/require"
)

// Reliability (issue 3, item 1): what is acknowledged survives a SIGKILL.
// Real processes on real SQLite files: a child records until it is killed,
// and the parent checks what it acknowledged. fault_test.go has the
// database faults; reliability_test.go the load and the chaos run.

func init() {
	helperRoles["rel-crash"] = relChildCrash
}

// relGoroutines is how many goroutines record at once, in the child of the
// crash tests and in the fault matrix's load.
const relGoroutines = 8

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
	db := testutil.RawDB(t, path)
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
	path := testutil.TempDB(t)
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
