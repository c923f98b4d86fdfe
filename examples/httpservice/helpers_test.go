package main

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/cleveragents/audit/audithttp"
	"github.com/stretchr/testify/require"
)

// The walkthrough's helpers: building and running the service and the
// CLI, and reading what they print.

// goBuild builds the package in pkgDir into dir/name and returns the
// binary's path. It builds from inside pkgDir (go -C), so that pkgDir's own
// module is used: cmd/auditctl is a module of its own, which a build from
// here finds only through the go.work, not with GOWORK=off.
func goBuild(t *testing.T, dir, name, pkgDir string) string {
	t.Helper()
	goBin, err := exec.LookPath("go")
	if err != nil {
		t.Skipf("the go command is not on PATH: %v", err)
	}
	bin := filepath.Join(dir, name)
	res := runCmd(t, goBin, "-C", pkgDir, "build", "-o", bin, ".")
	require.Equal(t, 0, res.code, "go build %s: %s", pkgDir, res)
	return bin
}

// result is what one finished command did.
type result struct {
	stdout, stderr string
	code           int
}

func (r result) String() string {
	return fmt.Sprintf("exit %d\nstdout:\n%s\nstderr:\n%s", r.code, r.stdout, r.stderr)
}

// runCmd runs a command to its end (killed after processTimeout).
func runCmd(t *testing.T, name string, args ...string) result {
	t.Helper()
	cmd := exec.Command(name, args...)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	cmd.WaitDelay = time.Second
	require.NoError(t, cmd.Start(), "start %s", name)
	timer := time.AfterFunc(processTimeout, func() { _ = cmd.Process.Kill() })
	err := cmd.Wait()
	timer.Stop()
	var exitErr *exec.ExitError
	if err != nil && !errors.As(err, &exitErr) {
		require.NoError(t, err, "run %s", name)
	}
	return result{stdout: stdout.String(), stderr: stderr.String(), code: cmd.ProcessState.ExitCode()}
}

// service is the running example.
type service struct {
	cmd    *exec.Cmd
	url    string        // http://127.0.0.1:PORT, from its first line
	exited chan struct{} // closed once the process has exited and its output is read
	err    error         // Wait's result; set before exited closes

	mu     sync.Mutex // guards stdout
	stdout []string   // lines so far
	stderr bytes.Buffer
}

// startService starts the example and waits until it prints the address
// it listens on. A cleanup kills it if the test has not stopped it.
func startService(t *testing.T, bin string, args ...string) *service {
	t.Helper()
	s := &service{cmd: exec.Command(bin, args...), exited: make(chan struct{})}
	s.cmd.Stderr = &s.stderr // written by exec's goroutine; read only after exited
	stdout, err := s.cmd.StdoutPipe()
	require.NoError(t, err)
	require.NoError(t, s.cmd.Start())
	t.Cleanup(func() {
		select {
		case <-s.exited:
		default:
			_ = s.cmd.Process.Kill()
			<-s.exited
		}
	})

	ready := make(chan string, 1)
	go func() {
		defer close(s.exited)
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			line := sc.Text()
			s.mu.Lock()
			s.stdout = append(s.stdout, line)
			s.mu.Unlock()
			if url, ok := strings.CutPrefix(line, "listening on "); ok {
				select {
				case ready <- url:
				default:
				}
			}
		}
		_, _ = io.Copy(io.Discard, stdout) // after a line too long to scan
		s.err = s.cmd.Wait()               // once stdout is read to its end
	}()

	select {
	case s.url = <-ready:
	case <-s.exited:
		t.Fatalf("the service exited before listening: %v\nstdout:\n%s\nstderr:\n%s", s.err, s.output(), s.stderr.String())
	case <-time.After(processTimeout):
		_ = s.cmd.Process.Kill()
		<-s.exited
		t.Fatalf("the service did not print its address within %v\nstderr:\n%s", processTimeout, s.stderr.String())
	}
	require.True(t, strings.HasPrefix(s.url, "http://127.0.0.1:"), s.url)
	return s
}

// stop sends SIGTERM and requires the service to exit with status 0.
func (s *service) stop(t *testing.T) {
	t.Helper()
	require.NoError(t, s.cmd.Process.Signal(syscall.SIGTERM))
	select {
	case <-s.exited:
	case <-time.After(processTimeout):
		_ = s.cmd.Process.Kill()
		<-s.exited
		t.Fatalf("the service did not exit within %v of SIGTERM\nstderr:\n%s", processTimeout, s.stderr.String())
	}
	require.NoError(t, s.err, "exit status\nstdout:\n%s\nstderr:\n%s", s.output(), s.stderr.String())
}

// output returns the lines the service printed so far.
func (s *service) output() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return strings.Join(s.stdout, "\n")
}

// client makes the walk-through's requests.
type client struct {
	t    *testing.T
	base string
	http *http.Client
}

// response is one request and what came back.
type response struct {
	method, path, user string
	status             int
	body               string
	reqID              string // the response's X-Request-ID
}

// do sends a request as curl does in the README: user in X-User, reqID
// (when not empty) in X-Request-ID, body as JSON.
func (c *client) do(method, path, user, reqID, body string) response {
	c.t.Helper()
	req, err := http.NewRequest(method, c.base+path, strings.NewReader(body))
	require.NoError(c.t, err)
	if body != "" {
		req.Header.Set("Content-Type", "application/json")
	}
	if user != "" {
		req.Header.Set("X-User", user)
	}
	if reqID != "" {
		req.Header.Set(audithttp.RequestIDHeader, reqID)
	}
	resp, err := c.http.Do(req)
	require.NoError(c.t, err, "%s %s", method, path)
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	require.NoError(c.t, err)
	return response{
		method: method, path: path, user: user,
		status: resp.StatusCode,
		body:   string(b),
		reqID:  resp.Header.Get(audithttp.RequestIDHeader),
	}
}

// logEntry is one line of auditctl list --json.
type logEntry struct {
	ID        int64          `json:"id"`
	Time      time.Time      `json:"time"`
	EventType string         `json:"event_type"`
	Actor     string         `json:"actor"`
	Resource  string         `json:"resource"`
	Outcome   string         `json:"outcome"`
	RequestID string         `json:"request_id"`
	Details   map[string]any `json:"details"`
	PrevHash  string         `json:"prev_hash"`
	Hash      string         `json:"hash"`
}

func (e logEntry) String() string {
	return fmt.Sprintf("#%d %s %s %s %s %s", e.ID, e.EventType, e.Actor, e.Resource, e.Outcome, e.RequestID)
}

func parseEntries(t *testing.T, jsonLines string) []logEntry {
	t.Helper()
	var entries []logEntry
	dec := json.NewDecoder(strings.NewReader(jsonLines))
	for dec.More() {
		var e logEntry
		require.NoError(t, dec.Decode(&e))
		entries = append(entries, e)
	}
	return entries
}

// modelEntry returns the one entry of eventType among entries.
func modelEntry(t *testing.T, entries []logEntry, eventType string) logEntry {
	t.Helper()
	var found []logEntry
	for _, e := range entries {
		if e.EventType == eventType {
			found = append(found, e)
		}
	}
	require.Len(t, found, 1, "%s among %v", eventType, entries)
	return found[0]
}

// object returns m[key], which must be a JSON object.
func object(t *testing.T, m map[string]any, key string) map[string]any {
	t.Helper()
	v, ok := m[key].(map[string]any)
	require.True(t, ok, "%q is not an object in %v", key, m)
	return v
}
