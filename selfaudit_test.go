package audit

import (
	"bufio"
	"context"
	"fmt"
	"os"
	"os/exec"
	"syscall"
	"testing"
	"time"

	"github.com/cleveragents/audit/internal/testutil"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func init() {
	helperRoles["selfaudit-crash"] = childSelfAuditCrash
}

// events lists the event types of the log, in ID order.
func events(t *testing.T, s *AuditService) []string {
	t.Helper()
	got, err := s.List(context.Background(), Filter{Limit: MaxListLimit})
	require.NoError(t, err)
	var out []string
	for _, e := range got {
		out = append(out, e.EventType)
	}
	return out
}

// The service records its own start, stop, prunes and verifications, and
// nothing of the kind without WithSelfAudit.
func TestSelfAudit(t *testing.T) {
	ctx := context.Background()
	path := testutil.TempDB(t)
	now := time.Date(2025, 12, 31, 0, 0, 0, 0, time.UTC) // before every sampleEntry
	s := newServiceAt(t, WithSQLite(path), WithSelfAudit(), WithClock(func() time.Time { return now }))
	recordN(t, s, 0, 3)
	n, err := s.Prune(ctx, time.Date(2026, 1, 1, 0, 0, 2, 0, time.UTC))
	require.NoError(t, err)
	require.Equal(t, int64(3), n, "the start and the first two logins")
	_, err = s.Verify(ctx)
	require.NoError(t, err)
	require.NoError(t, s.Close())

	r := newServiceAt(t, WithSQLite(path))
	assert.Equal(t, []string{"user.login", EventPrune, EventVerify, EventStop}, events(t, r),
		"the start and the first two logins were pruned away; the prune, the verification and the stop were recorded")
	got, err := r.List(ctx, Filter{EventType: EventPrune})
	require.NoError(t, err)
	require.Len(t, got, 1)
	assert.Equal(t, SelfActor, got[0].Actor)
	assert.Equal(t, float64(3), got[0].Details["deleted"])
	rep, err := r.Verify(ctx)
	require.NoError(t, err, "self-audit entries are chained like any other")
	assert.Equal(t, int64(4), rep.Entries)

	plainPath := testutil.TempDB(t)
	plain := newServiceAt(t, WithSQLite(plainPath))
	recordN(t, plain, 0, 2)
	_, err = plain.Verify(ctx)
	require.NoError(t, err)
	require.NoError(t, plain.Close())
	assert.Equal(t, []string{"user.login", "user.login"}, events(t, newServiceAt(t, WithSQLite(plainPath))), "no self-audit by default")
}

// childSelfAuditCrash starts a self-auditing service, flushes its start,
// says so, and waits to be killed.
func childSelfAuditCrash() int {
	s, err := New(WithSQLite(os.Getenv("AUDIT_SELF_PATH")), WithSelfAudit())
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	if err := s.Flush(context.Background()); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	fmt.Println("started")
	select {}
}

// A service that was killed leaves a start with no stop: the next start
// follows it directly.
func TestSelfAuditShowsACrash(t *testing.T) {
	path := testutil.TempDB(t)
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), helperRoleEnv+"=selfaudit-crash", "AUDIT_SELF_PATH="+path)
	cmd.Stderr = os.Stderr
	out, err := cmd.StdoutPipe()
	require.NoError(t, err)
	require.NoError(t, cmd.Start())
	line, err := bufio.NewReader(out).ReadString('\n')
	require.NoError(t, err)
	require.Equal(t, "started\n", line)
	require.NoError(t, cmd.Process.Signal(syscall.SIGKILL))
	_ = cmd.Wait()

	s := newServiceAt(t, WithSQLite(path), WithSelfAudit())
	require.NoError(t, s.Flush(context.Background()))
	require.NoError(t, s.Close())
	assert.Equal(t, []string{EventStart, EventStart, EventStop}, events(t, newServiceAt(t, WithSQLite(path))),
		"the killed service's start has no stop before the next start")
}
