package purego

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// This module builds with CGO_ENABLED=0, its test binary included, and what
// it builds works: cmd/cgofree records and verifies, and the cgo-free test
// binary passes the round trip and the busy retry (where the library's
// busy detection is its non-cgo build). Skipped under -short and where no
// go command is on PATH.
func TestBuildsAndRunsWithoutCgo(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the module again without cgo: skipped under -short")
	}
	gobin, err := exec.LookPath("go")
	if err != nil {
		t.Skip("no go command on PATH")
	}
	dir := t.TempDir()
	env := append(os.Environ(), "CGO_ENABLED=0")
	run := func(name string, args ...string) string {
		t.Helper()
		cmd := exec.Command(name, args...)
		cmd.Env = env
		out, err := cmd.CombinedOutput()
		require.NoError(t, err, "CGO_ENABLED=0 %s %s:\n%s", name, strings.Join(args, " "), out)
		return string(out)
	}

	run(gobin, "vet", "./...")
	cgofree := filepath.Join(dir, "cgofree")
	run(gobin, "build", "-o", cgofree, "./cmd/cgofree")
	assert.Contains(t, run(gobin, "version", "-m", cgofree), "CGO_ENABLED=0")
	out := run(cgofree, "-db", filepath.Join(dir, "audit.db"))
	assert.Contains(t, out, "entries=1 head=")

	test := filepath.Join(dir, "purego.test")
	run(gobin, "test", "-c", "-o", test, ".")
	out = run(test, "-test.run", "^(TestRoundTripEveryField|TestBusyIsRetried)$", "-test.v")
	assert.Contains(t, out, "--- PASS: TestRoundTripEveryField")
	assert.Contains(t, out, "--- PASS: TestBusyIsRetried")
}
