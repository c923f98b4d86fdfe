//go:build unix

package audit

import (
	"context"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/cleveragents/audit/internal/testutil"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func init() { helperRoles["ping-readonly"] = childPingReadOnly }

// childPingReadOnly pings the log at AUDIT_CHILD_PATH and tries to write
// one entry, printing Ping's and Flush's errors, one a line.
func childPingReadOnly() int {
	ctx, cancel := context.WithTimeout(context.Background(), hangLimit)
	defer cancel()
	s, err := New(WithSQLite(os.Getenv("AUDIT_CHILD_PATH")), WithLogger(testutil.Discard()))
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	fmt.Println("ping:", s.Ping(ctx))
	if err := s.Record(ctx, Entry{EventType: "e", Actor: "a"}); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	fmt.Println("flush:", s.Flush(ctx))
	sctx, scancel := context.WithTimeout(ctx, 100*time.Millisecond)
	defer scancel()
	_ = s.Shutdown(sctx)
	return 0
}

// TestPingReadOnlyFile opens a log whose file is 0444 in a 0555 directory.
// Root writes through file modes, so as root the check runs in a child
// process of this test binary as the user nobody (uid 65534), for whom the
// modes hold; as any other user it runs as that user.
func TestPingReadOnlyFile(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a process")
	}
	dir, err := os.MkdirTemp("", "audit-ro-")
	require.NoError(t, err)
	t.Cleanup(func() {
		_ = os.Chmod(dir, 0o755)
		_ = os.RemoveAll(dir)
	})
	path := filepath.Join(dir, "audit.db")
	seed := newServiceAt(t, WithSQLite(path))
	queueN(t, seed, 0, 3)
	require.NoError(t, seed.Close())
	bin := os.Args[0]
	var cred *syscall.Credential
	if os.Geteuid() == 0 {
		// The test binary's own directory is root's alone: a copy nobody
		// can run.
		bin = filepath.Join(dir, "audit.test")
		in, err := os.Open(os.Args[0])
		require.NoError(t, err)
		out, err := os.OpenFile(bin, os.O_CREATE|os.O_WRONLY, 0o755)
		require.NoError(t, err)
		_, err = io.Copy(out, in)
		require.NoError(t, err)
		require.NoError(t, out.Close())
		_ = in.Close()
		cred = &syscall.Credential{Uid: 65534, Gid: 65534}
	}
	require.NoError(t, os.Chmod(path, 0o444))
	require.NoError(t, os.Chmod(dir, 0o555))

	cmd := exec.Command(bin, "-test.run=^$")
	cmd.Env = append(os.Environ(), helperRoleEnv+"=ping-readonly", "AUDIT_CHILD_PATH="+path)
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: cred}
	cmd.Stderr = os.Stderr
	out, err := cmd.Output()
	require.NoError(t, err, "child: %s", out)
	t.Logf("child (uid %s):\n%s", map[bool]string{true: "65534", false: strconv.Itoa(os.Geteuid())}[cred != nil], out)
	lines := strings.Split(strings.TrimSpace(string(out)), "\n")
	require.Len(t, lines, 2, "%s", out)
	for i, prefix := range []string{"ping: audit: ping: open database ", "flush: audit: flush: not committed"} {
		assert.True(t, strings.HasPrefix(lines[i], prefix), "%q begins with %q", lines[i], prefix)
		assert.Contains(t, lines[i], strconv.Quote(path))
		assert.Contains(t, lines[i], "is read-only")
	}
}
