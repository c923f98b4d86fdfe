package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// The tests in this file run the auditctl binary as an operator would, for
// what only a real process shows: that main exits with run's status, and
// how it answers signals. Everything else runs in-process (runCLI).

var (
	binOnce sync.Once
	binDir  string // holds the binary; TestMain removes it
	bin     string
	binErr  error
)

func TestMain(m *testing.M) {
	code := m.Run()
	if binDir != "" {
		os.RemoveAll(binDir)
	}
	os.Exit(code)
}

// binary builds auditctl once per test run and returns its path.
func binary(t *testing.T) string {
	t.Helper()
	binOnce.Do(func() {
		if binDir, binErr = os.MkdirTemp("", "auditctl-test-"); binErr != nil {
			return
		}
		bin = filepath.Join(binDir, "auditctl")
		out, err := exec.Command("go", "build", "-o", bin, ".").CombinedOutput()
		if err != nil {
			binErr = fmt.Errorf("build auditctl: %w\n%s", err, out)
		}
	})
	require.NoError(t, binErr)
	return bin
}

// runBinary runs the auditctl binary with args.
func runBinary(t *testing.T, args ...string) result {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, binary(t), args...)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	r := result{stdout: stdout.String(), stderr: stderr.String()}
	var exitErr *exec.ExitError
	switch {
	case err == nil:
	case errors.As(err, &exitErr):
		r.code = exitErr.ExitCode()
	default:
		require.NoError(t, err, "run auditctl")
	}
	return r
}

func TestBinaryExitStatus(t *testing.T) {
	path := makeDB(t, 10)

	r := runBinary(t, "--db", path, "verify")
	require.Equal(t, 0, r.code, r)
	assert.Contains(t, r.stdout, "OK: the chain verifies")

	r = runBinary(t, "--db", path, "list", "--bogus")
	require.Equal(t, 2, r.code, r)
	assert.Contains(t, r.stderr, "unknown flag: --bogus")

	execSQL(t, path, `UPDATE audit_entries SET actor = 'mallory' WHERE id = 5`)
	r = runBinary(t, "--db", path, "verify")
	require.Equal(t, 1, r.code, r)
	assert.Regexp(t, `^auditctl: verify: chain verification failed at ID 5: \S`, r.stderr)
	assert.NotContains(t, r.stderr, "audit: ")
}

// TestBinaryInterrupt: Ctrl-C stops an export that is writing to a pipe
// nobody reads (blocked in the kernel, where no context reaches) with
// status 130. The 20 s bound catches a hang; it is not a timing goal.
func TestBinaryInterrupt(t *testing.T) {
	path := makeDB(t, 2500) // about 800 KB of JSON lines: far more than a pipe holds
	pr, pw, err := os.Pipe()
	require.NoError(t, err)
	defer pr.Close()
	cmd := exec.Command(binary(t), "--db", path, "export")
	cmd.Stdout = pw
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	require.NoError(t, cmd.Start())
	pw.Close()
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()

	// The first byte of output: auditctl is exporting, and main has taken
	// over SIGINT long before. Then the pipe fills, and nobody reads it.
	_, err = pr.Read(make([]byte, 1))
	require.NoError(t, err)
	require.NoError(t, cmd.Process.Signal(syscall.SIGINT))

	select {
	case err := <-exited:
		var exitErr *exec.ExitError
		require.True(t, errors.As(err, &exitErr), "exit status: %v; stderr: %s", err, stderr.String())
		assert.Equal(t, exitInterrupted, exitErr.ExitCode(), "stderr: %s", stderr.String())
		assert.True(t, strings.HasSuffix(stderr.String(), "auditctl: interrupted\n"), stderr.String())
	case <-time.After(20 * time.Second):
		_ = cmd.Process.Kill()
		<-exited
		t.Fatalf("export ignored SIGINT for 20 s; stderr: %s", stderr.String())
	}
}
