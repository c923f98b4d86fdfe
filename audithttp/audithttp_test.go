package audithttp_test

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"regexp"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/cleveragents/audit"
	"github.com/cleveragents/audit/audithttp"
	"github.com/cleveragents/audit/gormaudit"
	"github.com/cleveragents/audit/internal/testutil"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"gorm.io/driver/sqlite"
	"gorm.io/gorm"
	"gorm.io/gorm/logger"
)

var hexID = regexp.MustCompile(`^[0-9a-f]{32}$`)

// userHeader is the tests' stand-in for authentication.
func userHeader(r *http.Request) string { return r.Header.Get("X-User") }

func TestRecordsOneEntryPerRequest(t *testing.T) {
	svc, _ := newService(t)
	h := wrap(t, svc, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.WriteHeader(http.StatusCreated)
		_, _ = io.WriteString(w, "hello")
		_, _ = io.WriteString(w, ", world")
	}), audithttp.WithActor(userHeader))
	r := httptest.NewRequest(http.MethodPost, "/things/42%2F7?x=1", nil)
	r.Header.Set("X-Request-ID", "abc-123")
	r.Header.Set("X-User", "alice")
	w := serve(h, r)
	require.Equal(t, http.StatusCreated, w.Code)
	assert.Equal(t, "abc-123", w.Header().Get("X-Request-ID"))

	es := recorded(t, svc)
	require.Len(t, es, 1)
	e := es[0]
	assert.Equal(t, "http.request", e.EventType)
	assert.Equal(t, "alice", e.Actor)
	assert.Equal(t, "/things/42%2F7", e.Resource, "the escaped path, without the query")
	assert.Equal(t, "success", e.Outcome)
	assert.Equal(t, "abc-123", e.RequestID)
	assert.Equal(t, float64(http.StatusCreated), e.Details["status"])
	assert.Equal(t, float64(len("hello, world")), e.Details["bytes"])
	assert.Equal(t, r.RemoteAddr, e.Details["remote_addr"])
	assert.Equal(t, "POST", e.Details["method"])
	assert.Equal(t, "example.com", e.Details["host"])
	assert.Equal(t, "x=1", e.Details["query"])
	require.IsType(t, float64(0), e.Details["duration_ms"])
	assert.GreaterOrEqual(t, e.Details["duration_ms"].(float64), 0.0)
	assert.Len(t, e.Details, 7, "nothing was truncated: %v", e.Details)
}

func TestOutcomes(t *testing.T) {
	for _, tc := range []struct {
		status int
		want   string
	}{
		{100, "success"}, {200, "success"}, {204, "success"}, {301, "success"}, {304, "success"},
		{400, "client_error"}, {401, "denied"}, {403, "denied"}, {404, "client_error"}, {418, "client_error"}, {499, "client_error"},
		{500, "failure"}, {502, "failure"}, {503, "failure"}, {599, "failure"},
	} {
		assert.Equal(t, tc.want, audithttp.OutcomeOf(tc.status), "status %d", tc.status)
	}

	svc, _ := newService(t)
	statuses := []int{200, 204, 302, 400, 401, 403, 404, 500, 503}
	h := wrap(t, svc, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var status int
		_, _ = fmt.Sscan(r.URL.Query().Get("s"), &status)
		if status == 0 {
			return // writes nothing: 200
		}
		w.Header().Set("Link", "</style.css>; rel=preload")
		w.WriteHeader(http.StatusEarlyHints) // informational: not the final status
		w.WriteHeader(status)
	}))
	for _, s := range statuses {
		serve(h, httptest.NewRequest(http.MethodGet, fmt.Sprint("/?s=", s), nil))
	}
	serve(h, httptest.NewRequest(http.MethodGet, "/", nil))

	es := recorded(t, svc)
	require.Len(t, es, len(statuses)+1)
	for i, s := range append(statuses, 200) {
		assert.Equal(t, float64(s), es[i].Details["status"])
		assert.Equal(t, audithttp.OutcomeOf(s), es[i].Outcome, "status %d", s)
	}
}

func TestSkipPaths(t *testing.T) {
	svc, _ := newService(t)
	var calls atomic.Int64
	h := wrap(t, svc, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		calls.Add(1)
		_, ok := audit.RequestIDFromContext(r.Context())
		assert.Equal(t, r.URL.Path == "/healthz/deep", ok)
	}), audithttp.WithSkipPaths("/healthz", "/readyz"))
	w := serve(h, httptest.NewRequest(http.MethodGet, "/healthz", nil))
	assert.Empty(t, w.Header().Get("X-Request-ID"))
	serve(h, httptest.NewRequest(http.MethodGet, "/readyz?verbose=1", nil))
	serve(h, httptest.NewRequest(http.MethodGet, "/healthz/deep", nil)) // exact match only

	assert.Equal(t, int64(3), calls.Load())
	es := recorded(t, svc)
	require.Len(t, es, 1)
	assert.Equal(t, "/healthz/deep", es[0].Resource)
}

func TestActorAndEventType(t *testing.T) {
	svc, _ := newService(t)
	ok := http.HandlerFunc(func(http.ResponseWriter, *http.Request) {})
	serve(wrap(t, svc, ok), httptest.NewRequest(http.MethodGet, "/a", nil))
	serve(wrap(t, svc, ok, audithttp.WithActor(userHeader)), httptest.NewRequest(http.MethodGet, "/b", nil))
	serve(wrap(t, svc, ok, audithttp.WithEventType("api.call"), audithttp.WithActor(func(*http.Request) string {
		return strings.Repeat("z", 300) // too long for an Actor: clipped and marked, not lost
	})), httptest.NewRequest(http.MethodDelete, "/c", nil))

	es := recorded(t, svc)
	require.Len(t, es, 3)
	assert.Equal(t, "anonymous", es[0].Actor)
	assert.Equal(t, "anonymous", es[1].Actor, "an empty name is anonymous")
	assert.Equal(t, "http.request", es[1].EventType)
	assert.Equal(t, strings.Repeat("z", audit.MaxFieldLen-len(audithttp.Truncated))+audithttp.Truncated, es[2].Actor)
	assert.Equal(t, map[string]any{"actor": float64(300)}, es[2].Details["truncated"])
	assert.Equal(t, "api.call", es[2].EventType)
	assert.Equal(t, "/c", es[2].Resource)
	assert.Equal(t, "DELETE", es[2].Details["method"])
}

// Note is a model the handler of TestContextPropagation writes.
type Note struct {
	ID   uint
	Text string
}

func TestContextPropagation(t *testing.T) {
	svc, _ := newService(t)
	db, err := gorm.Open(sqlite.Open(filepath.Join(t.TempDir(), "app.db")), &gorm.Config{Logger: logger.Discard})
	require.NoError(t, err)
	sqlDB, err := db.DB()
	require.NoError(t, err)
	t.Cleanup(func() { _ = sqlDB.Close() })
	require.NoError(t, db.AutoMigrate(&Note{}))
	plugin, err := gormaudit.New(svc)
	require.NoError(t, err)
	require.NoError(t, db.Use(plugin))

	h := wrap(t, svc, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		actor, ok := audit.ActorFromContext(r.Context())
		assert.True(t, ok)
		assert.Equal(t, "bob", actor)
		// An entry with neither Actor nor RequestID takes both from ctx.
		assert.NoError(t, svc.Record(r.Context(), audit.Entry{EventType: "note.viewed"}))
		assert.NoError(t, db.WithContext(r.Context()).Create(&Note{Text: "hi"}).Error)
	}), audithttp.WithActor(userHeader))
	r := httptest.NewRequest(http.MethodPost, "/notes", nil)
	r.Header.Set("X-User", "bob")
	w := serve(h, r)
	id := w.Header().Get("X-Request-ID")
	require.Regexp(t, hexID, id)

	es := recorded(t, svc)
	require.Len(t, es, 3)
	assert.Equal(t, []string{"note.viewed", "notes.create", "http.request"}, []string{es[0].EventType, es[1].EventType, es[2].EventType})
	for _, e := range es {
		assert.Equal(t, "bob", e.Actor, e.EventType)
		assert.Equal(t, id, e.RequestID, e.EventType)
	}
}

func TestPanickingHandlerIsRecorded(t *testing.T) {
	svc, _ := newService(t)
	h := wrap(t, svc, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		panic("boom")
	}))
	assert.PanicsWithValue(t, "boom", func() { serve(h, httptest.NewRequest(http.MethodGet, "/p", nil)) })

	es := recorded(t, svc)
	require.Len(t, es, 1)
	assert.Equal(t, "failure", es[0].Outcome)
	assert.Equal(t, float64(500), es[0].Details["status"])
	assert.Equal(t, true, es[0].Details["panic"])
}

func TestRealServer(t *testing.T) {
	svc, _ := newService(t)
	proceed := make(chan struct{})
	mux := http.NewServeMux()
	mux.HandleFunc("/stream", func(w http.ResponseWriter, r *http.Request) {
		require.NoError(t, http.NewResponseController(w).SetWriteDeadline(time.Now().Add(time.Minute)),
			"ResponseController reaches the server's writer through Unwrap")
		_, _ = io.WriteString(w, "first\n")
		w.(http.Flusher).Flush()
		select { // the client reads "first" only if Flush got through
		case <-proceed:
		case <-r.Context().Done():
			return
		}
		_, _ = io.WriteString(w, "second\n")
	})
	mux.HandleFunc("/forbidden", func(w http.ResponseWriter, r *http.Request) {
		http.Error(w, "no", http.StatusForbidden)
	})
	mux.HandleFunc("/hijack", func(w http.ResponseWriter, r *http.Request) {
		conn, rw, err := w.(http.Hijacker).Hijack()
		require.NoError(t, err)
		defer conn.Close()
		_, _ = rw.WriteString("HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\nUpgrade: test\r\n\r\nhi")
		_ = rw.Flush()
	})
	srv := httptest.NewServer(wrap(t, svc, mux, audithttp.WithActor(userHeader)))
	t.Cleanup(srv.Close)
	client := newClient(t)
	client.Timeout = 10 * time.Second

	req, err := http.NewRequest(http.MethodGet, srv.URL+"/stream", nil)
	require.NoError(t, err)
	req.Header.Set("X-Request-ID", "stream-1")
	req.Header.Set("X-User", "carol")
	resp, err := client.Do(req)
	require.NoError(t, err)
	assert.Equal(t, "stream-1", resp.Header.Get("X-Request-ID"))
	br := bufio.NewReader(resp.Body)
	line, err := br.ReadString('\n')
	require.NoError(t, err)
	assert.Equal(t, "first\n", line)
	close(proceed)
	rest, err := io.ReadAll(br)
	require.NoError(t, err)
	assert.Equal(t, "second\n", string(rest))
	require.NoError(t, resp.Body.Close())

	resp, err = client.Get(srv.URL + "/forbidden")
	require.NoError(t, err)
	_, _ = io.Copy(io.Discard, resp.Body)
	require.NoError(t, resp.Body.Close())
	assert.Equal(t, http.StatusForbidden, resp.StatusCode)
	generated := resp.Header.Get("X-Request-ID")
	assert.Regexp(t, hexID, generated)

	conn, err := net.Dial("tcp", srv.Listener.Addr().String())
	require.NoError(t, err)
	_, err = io.WriteString(conn, "GET /hijack HTTP/1.1\r\nHost: test\r\nConnection: Upgrade\r\nUpgrade: test\r\n\r\n")
	require.NoError(t, err)
	raw, err := io.ReadAll(conn)
	require.NoError(t, err)
	require.NoError(t, conn.Close())
	assert.Contains(t, string(raw), "101 Switching Protocols")

	es := recorded(t, svc)
	require.Len(t, es, 3)
	assert.Equal(t, "/stream", es[0].Resource)
	assert.Equal(t, http.MethodGet, es[0].Details["method"])
	assert.Equal(t, srv.Listener.Addr().String(), es[0].Details["host"])
	assert.Equal(t, "carol", es[0].Actor)
	assert.Equal(t, "stream-1", es[0].RequestID)
	assert.Equal(t, "success", es[0].Outcome)
	assert.Equal(t, float64(len("first\nsecond\n")), es[0].Details["bytes"])
	assert.True(t, strings.HasPrefix(es[0].Details["remote_addr"].(string), "127.0.0.1:"), es[0].Details["remote_addr"])

	assert.Equal(t, "/forbidden", es[1].Resource)
	assert.Equal(t, "denied", es[1].Outcome)
	assert.Equal(t, generated, es[1].RequestID)

	assert.Equal(t, "/hijack", es[2].Resource)
	assert.Equal(t, float64(101), es[2].Details["status"])
	assert.Equal(t, true, es[2].Details["hijacked"])
}

func TestOverflowIsCountedNotFailed(t *testing.T) {
	svc, release := fullQueue(t)
	var logs testutil.LogBuffer
	a := newAuditor(t, svc, audithttp.WithLogger(logs.Logger()))
	var calls atomic.Int64
	h := a.Handler(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		calls.Add(1)
		_, _ = io.WriteString(w, "ok")
	}))

	// The writer holds at most one blocked batch and the queue one more
	// entry, so a few requests are enough to overflow it.
	n := 0
	for a.Dropped() == 0 {
		require.Less(t, n, 10, "the queue never overflowed")
		w := serve(h, httptest.NewRequest(http.MethodGet, "/", nil))
		require.Equal(t, http.StatusOK, w.Code, "an overflow must not fail the request")
		assert.Equal(t, "ok", w.Body.String())
		n++
	}
	assert.Equal(t, int64(n), calls.Load())
	assert.Contains(t, logs.String(), "request not audited")
	assert.Contains(t, logs.String(), "audit: record: queue full")

	release()
	es := recorded(t, svc)
	assert.Equal(t, 1+n-int(a.Dropped()), len(es), "every request not counted as dropped was recorded")
}

// countingRecorder is a Recorder that is not an *audit.AuditService: it
// counts the calls and passes them on.
type countingRecorder struct {
	next  audithttp.Recorder
	calls atomic.Int64
}

func (c *countingRecorder) Record(ctx context.Context, e audit.Entry) error {
	c.calls.Add(1)
	return c.next.Record(ctx, e)
}

func TestAnyRecorder(t *testing.T) {
	svc, _ := newService(t)
	rec := &countingRecorder{next: svc}
	h := wrap(t, rec, http.HandlerFunc(func(http.ResponseWriter, *http.Request) {}), audithttp.WithFailClosed(true))
	serve(h, httptest.NewRequest(http.MethodGet, "/r", nil))
	assert.Equal(t, int64(2), rec.calls.Load(), "a started and a final entry")
	es := recorded(t, svc)
	require.Len(t, es, 2)
	assert.Equal(t, "/r", es[1].Resource)
}
