package audit

import (
	"os"
	"os/exec"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
)

// TestBuildsWithoutCgo builds the module with CGO_ENABLED=0, as a
// PostgreSQL-only user cross-compiling or building a static binary does,
// and runs the NoCgo tests there (SQLite's open then says cgo is needed).
// It needs the go command on PATH.
func TestBuildsWithoutCgo(t *testing.T) {
	if testing.Short() {
		t.Skip("runs go build and go test")
	}
	goBin, err := exec.LookPath("go")
	if err != nil {
		t.Skip("no go command on PATH")
	}
	run := func(args ...string) string {
		t.Helper()
		cmd := exec.Command(goBin, args...)
		cmd.Env = append(os.Environ(), "CGO_ENABLED=0", helperRoleEnv+"=")
		out, err := cmd.CombinedOutput()
		require.NoError(t, err, "CGO_ENABLED=0 go %s:\n%s", strings.Join(args, " "), out)
		return string(out)
	}
	run("build", "./...")
	out := run("test", "-count=1", "-v", "-run", "NoCgo", ".")
	require.Contains(t, out, "--- PASS: TestNoCgoSQLiteOpenSaysCgoIsNeeded", "the NoCgo tests ran")
}
