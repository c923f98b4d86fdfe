package main

import (
	"bufio"
	"context"
	"io"
	"net/http"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/cleveragents/audit/internal/testutil"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// startInProcess runs the service (run) on a free port until the test
// ends, and returns its URL.
func startInProcess(t *testing.T, dbPath string) string {
	t.Helper()
	var out testutil.LogBuffer
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- run(ctx, "127.0.0.1:0", dbPath, &out, testutil.Discard()) }()
	t.Cleanup(func() {
		cancel()
		require.NoError(t, <-done, "run's result")
		assert.Contains(t, out.String(), "stopped: ")
	})
	var url string
	testutil.WaitFor(t, processTimeout, func() bool {
		select {
		case err := <-done:
			t.Fatalf("run returned before listening: %v", err)
		default:
		}
		line, _, _ := strings.Cut(out.String(), "\n")
		var ok bool
		url, ok = strings.CutPrefix(line, "listening on ")
		return ok
	}, "the service to listen")
	return url
}

// get returns the status and body of GET base+path.
func get(t *testing.T, base, path string) (int, string) {
	t.Helper()
	c := &http.Client{Timeout: processTimeout}
	resp, err := c.Get(base + path)
	require.NoError(t, err, "GET %s", path)
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	require.NoError(t, err)
	return resp.StatusCode, string(b)
}

// metricValue returns the value of the Prometheus sample whose name is
// name (with any labels), and whether there is one.
func metricValue(t *testing.T, text, name string) (float64, bool) {
	t.Helper()
	sc := bufio.NewScanner(strings.NewReader(text))
	for sc.Scan() {
		line := sc.Text()
		rest, ok := strings.CutPrefix(line, name)
		if !ok || rest == "" || (rest[0] != '{' && rest[0] != ' ') {
			continue
		}
		fields := strings.Fields(line)
		v, err := strconv.ParseFloat(fields[len(fields)-1], 64)
		require.NoError(t, err, line)
		return v, true
	}
	return 0, false
}

// /healthz is 200 while the audit log works, 503 with the reason while
// another connection holds the database's write lock and entries wait,
// and 200 again once the lock is gone; /metrics shows the same story.
func TestHealthzAndMetrics(t *testing.T) {
	dbPath := filepath.Join(t.TempDir(), "httpservice.db")
	base := startInProcess(t, dbPath)

	status, body := get(t, base, "/healthz")
	require.Equal(t, http.StatusOK, status, body)
	assert.Equal(t, "ok\n", body)

	// One request that changes an account: the model change and the
	// request are two entries.
	resp, err := http.Post(base+"/accounts", "application/json", strings.NewReader(`{"owner":"alice","email":"alice@example.com"}`))
	require.NoError(t, err)
	require.NoError(t, resp.Body.Close())
	require.Equal(t, http.StatusCreated, resp.StatusCode)
	testutil.WaitFor(t, processTimeout, func() bool {
		_, text := get(t, base, "/metrics")
		written, _ := metricValue(t, text, "audit_entries_written_total")
		return written == 2
	}, "2 entries written in /metrics")
	status, text := get(t, base, "/metrics")
	require.Equal(t, http.StatusOK, status, text)
	for _, name := range []string{"audit_entries_queued", "audit_writer_batches_total", "audit_writer_failures_total",
		"audit_entries_rejected_total", "audit_writer_commit_duration_seconds", "audit_writer_oldest_uncommitted_age_seconds",
		"audit_writer_last_commit_age_seconds"} {
		_, ok := metricValue(t, text, name)
		assert.True(t, ok, "%s in /metrics:\n%s", name, text)
	}

	release := testutil.HoldWriteLock(t, dbPath)
	// A read still works in WAL mode; its request entry cannot be committed.
	status, body = get(t, base, "/accounts/1")
	require.Equal(t, http.StatusOK, status, body)
	testutil.WaitFor(t, processTimeout, func() bool {
		status, body = get(t, base, "/healthz")
		return status == http.StatusServiceUnavailable
	}, "/healthz to answer 503 while the write lock is held")
	assert.Contains(t, body, "audit: healthy: the writer is failing with 1 entries waiting")
	_, text = get(t, base, "/metrics")
	queued, _ := metricValue(t, text, "audit_entries_queued")
	assert.EqualValues(t, 1, queued)
	failures, _ := metricValue(t, text, "audit_writer_failures_total")
	assert.Positive(t, failures)
	oldest, _ := metricValue(t, text, "audit_writer_oldest_uncommitted_age_seconds")
	assert.Positive(t, oldest)

	release()
	testutil.WaitFor(t, processTimeout, func() bool {
		status, body = get(t, base, "/healthz")
		return status == http.StatusOK
	}, "/healthz to answer 200 once the lock is released")
	assert.Equal(t, "ok\n", body)
	testutil.WaitFor(t, processTimeout, func() bool {
		_, text := get(t, base, "/metrics")
		written, _ := metricValue(t, text, "audit_entries_written_total")
		return written == 3
	}, "the waiting entry written")
	_, text = get(t, base, "/metrics")
	oldest, _ = metricValue(t, text, "audit_writer_oldest_uncommitted_age_seconds")
	assert.Zero(t, oldest, "nothing waits")
}
