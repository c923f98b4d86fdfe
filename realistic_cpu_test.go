package audit

import (
	"crypto/sha256"
	"os"
	"testing"

	"github.com/stretchr/testify/require"
)

// The realistic benchmarks read CPU times from /proc/PID/stat, where the
// process's name, in parentheses, may hold spaces and parentheses of its
// own: the fields are those after the last ')'.
func TestRealParseStatNameWithParentheses(t *testing.T) {
	name, f, ok := realParseStat("4242 (a (b) c) S 17 4242 4242 0 -1 4194560 5 0 0 0 123 45 6 7 20 0 1 0 99 0 0\n")
	require.True(t, ok)
	require.Equal(t, "a (b) c", name)
	require.Equal(t, "S", f[0])
	require.Equal(t, "17", f[1], "the parent's PID")
	require.Equal(t, []string{"123", "45"}, f[11:13], "utime and stime")
	require.Equal(t, []string{"6", "7"}, f[13:15], "cutime and cstime")

	_, _, ok = realParseStat("4242 no name here")
	require.False(t, ok)
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
	sum := sha256.Sum256(nil)
	for range 1000 {
		for range 10_000 {
			sum = sha256.Sum256(sum[:])
		}
		now, ok := realCPU()
		require.True(t, ok)
		require.GreaterOrEqual(t, now.server, before.server, "the server's CPU time went back")
		if now.self-before.self >= 2*realTick {
			return
		}
	}
	t.Fatal("10 million hashes did not add two ticks to this process's CPU time")
}
