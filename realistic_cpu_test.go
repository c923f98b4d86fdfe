package audit

import (
	"bufio"
	"crypto/sha256"
	"os"
	"os/exec"
	"strconv"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// The realistic benchmarks read CPU times from /proc/PID/stat, where the
// process's name, in parentheses, may hold spaces and parentheses of its
// own: the fields are counted after the last ')'.
func TestRealParseProcNameWithParentheses(t *testing.T) {
	p, ok := realParseProc("4242 (a (b) c) S 17 4242 4242 0 -1 4194560 5 0 0 0 123 45 6 7 20 0 1 0 99 0 0\n")
	require.True(t, ok)
	require.Equal(t, realProc{comm: "a (b) c", parent: "17", own: 168 * realTick, children: 13 * realTick}, p,
		"own: utime 123 + stime 45 ticks; children: cutime 6 + cstime 7")

	for _, bad := range []string{
		"4242 no name here",
		"4242 (short) S 17 4242",
		"4242 (x) S 17 4242 4242 0 -1 4194560 5 0 0 0 12x 45 6 7 20",
	} {
		_, ok := realParseProc(bad)
		require.False(t, ok, bad)
	}
}

// realCPU's own CPU time grows with work this process does: hash until
// it has grown by two ticks (20 ms), or fail after some 10 million
// hashes, a few seconds of CPU (bounded by work, not by time: CPU time
// does not pass on a busy machine while this waits for a core).
func TestRealCPUCountsThisProcess(t *testing.T) {
	if _, err := os.Stat("/proc/self/stat"); err != nil {
		t.Skip("no /proc:", err)
	}
	before, ok := realCPU()
	require.True(t, ok)
	require.False(t, before.serverOK, "measured a server with none set")
	sum := sha256.Sum256(nil)
	for range 1000 {
		for range 10_000 {
			sum = sha256.Sum256(sum[:])
		}
		now, ok := realCPU()
		require.True(t, ok)
		if now.self-before.self >= 2*realTick {
			return
		}
	}
	t.Fatal("10 million hashes did not add two ticks to this process's CPU time")
}

// The server's CPU time counts the postmaster's children while they run
// and after they are reaped (its cutime and cstime). This process stands
// in for the postmaster, and a shell that burns CPU for its child: the
// children's share (the server's time less this process's own) has grown
// by the shell's work while it waits, and has not fallen once it has
// ended and been reaped. The shell says when it is done on a pipe.
func TestRealServerCPUCountsChildrenLiveAndReaped(t *testing.T) {
	if _, err := os.Stat("/proc/self/stat"); err != nil {
		t.Skip("no /proc:", err)
	}
	me := strconv.Itoa(os.Getpid())
	share := func() time.Duration {
		t.Helper()
		server, ok := realServerCPU(me)
		require.True(t, ok)
		self, ok := realProcCPU(me) // read after: never more children than there are
		require.True(t, ok)
		return server - self.own
	}
	before := share()
	sh := exec.Command("sh", "-c", `i=0; while [ $i -lt 300000 ]; do i=$((i+1)); done; echo done; read x; exit 0`)
	stdin, err := sh.StdinPipe()
	require.NoError(t, err)
	stdout, err := sh.StdoutPipe()
	require.NoError(t, err)
	require.NoError(t, sh.Start())
	line, err := bufio.NewReader(stdout).ReadString('\n')
	require.NoError(t, err)
	require.Equal(t, "done\n", line)
	alive := share()
	require.GreaterOrEqual(t, alive-before, 2*realTick, "the live shell's CPU time is not counted")
	require.NoError(t, stdin.Close())
	require.NoError(t, sh.Wait())
	reaped := share()
	// A tick of slack: this process's own time, read after the server's,
	// may cross a tick between the two reads.
	require.GreaterOrEqual(t, reaped, alive-realTick, "the reaped shell's CPU time was lost")

	_, ok := realServerCPU("0")
	require.False(t, ok, "no process 0 in /proc")
}
