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
	h := audithttp.Middleware(svc, audithttp.WithActor(userHeader))(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.WriteHeader(http.StatusCreated)
		_, _ = io.WriteString(w, "hello")
		_, _ = io.WriteString(w, ", world")
	}))
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
	assert.Equal(t, "POST /things/42%2F7", e.Resource)
	assert.Equal(t, "success", e.Outcome)
	assert.Equal(t, "abc-123", e.RequestID)
	assert.Equal(t, float64(http.StatusCreated), e.Details["status"])
	assert.Equal(t, float64(len("hello, world")), e.Details["bytes"])
	assert.Equal(t, r.RemoteAddr, e.Details["remote_addr"])
	require.IsType(t, float64(0), e.Details["duration_ms"])
	assert.GreaterOrEqual(t, e.Details["duration_ms"].(float64), 0.0)
	assert.Len(t, e.Details, 4)
}

func TestRequestIDs(t *testing.T) {
	svc, _ := newService(t)
	var seen []string
	h := audithttp.Middleware(svc)(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		id, ok := audit.RequestIDFromContext(r.Context())
		require.True(t, ok)
		seen = append(seen, id)
	}))

	var got []string
	for _, in := range []string{
		"",                       // none
		"",                       // none again: a different ID
		strings.Repeat("x", 129), // too long
		"has space",              // not visible ASCII
		"caf\u00e9",              // not ASCII
		"ok\x00",                 // NUL
	} {
		r := httptest.NewRequest(http.MethodGet, "/", nil)
		if in != "" {
			r.Header.Set("X-Request-ID", in)
		}
		got = append(got, serve(h, r).Header().Get("X-Request-ID"))
	}
	for _, id := range got {
		assert.Regexp(t, hexID, id)
	}
	assert.NotEqual(t, got[0], got[1])
	assert.Equal(t, got, seen, "the handler sees the ID set on the response")

	kept := strings.Repeat("k", 128)
	r := httptest.NewRequest(http.MethodGet, "/", nil)
	r.Header.Set("X-Request-ID", kept)
	assert.Equal(t, kept, serve(h, r).Header().Get("X-Request-ID"))

	es := recorded(t, svc)
	require.Len(t, es, len(got)+1)
	for i, id := range append(got, kept) {
		assert.Equal(t, id, es[i].RequestID)
	}
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
	h := audithttp.Middleware(svc)(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
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
	h := audithttp.Middleware(svc, audithttp.WithSkipPaths("/healthz", "/readyz"))(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		calls.Add(1)
		_, ok := audit.RequestIDFromContext(r.Context())
		assert.Equal(t, r.URL.Path == "/healthz/deep", ok)
	}))
	w := serve(h, httptest.NewRequest(http.MethodGet, "/healthz", nil))
	assert.Empty(t, w.Header().Get("X-Request-ID"))
	serve(h, httptest.NewRequest(http.MethodGet, "/readyz?verbose=1", nil))
	serve(h, httptest.NewRequest(http.MethodGet, "/healthz/deep", nil)) // exact match only

	assert.Equal(t, int64(3), calls.Load())
	es := recorded(t, svc)
	require.Len(t, es, 1)
	assert.Equal(t, "GET /healthz/deep", es[0].Resource)
}

func TestActorAndEventType(t *testing.T) {
	svc, _ := newService(t)
	ok := http.HandlerFunc(func(http.ResponseWriter, *http.Request) {})
	serve(audithttp.Middleware(svc)(ok), httptest.NewRequest(http.MethodGet, "/a", nil))
	serve(audithttp.Middleware(svc, audithttp.WithActor(userHeader))(ok), httptest.NewRequest(http.MethodGet, "/b", nil))
	serve(audithttp.Middleware(svc, audithttp.WithEventType("api.call"), audithttp.WithActor(func(*http.Request) string {
		return strings.Repeat("z", 300) // too long for an Actor: clipped, not lost
	}))(ok), httptest.NewRequest(http.MethodDelete, "/c", nil))

	es := recorded(t, svc)
	require.Len(t, es, 3)
	assert.Equal(t, "anonymous", es[0].Actor)
	assert.Equal(t, "anonymous", es[1].Actor, "an empty name is anonymous")
	assert.Equal(t, "http.request", es[1].EventType)
	assert.Equal(t, strings.Repeat("z", 256), es[2].Actor)
	assert.Equal(t, "api.call", es[2].EventType)
	assert.Equal(t, "DELETE /c", es[2].Resource)
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
	require.NoError(t, db.Use(gormaudit.New(svc)))

	h := audithttp.Middleware(svc, audithttp.WithActor(userHeader))(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		actor, ok := audit.ActorFromContext(r.Context())
		assert.True(t, ok)
		assert.Equal(t, "bob", actor)
		// An entry with neither Actor nor RequestID takes both from ctx.
		assert.NoError(t, svc.Record(r.Context(), audit.Entry{EventType: "note.viewed"}))
		assert.NoError(t, db.WithContext(r.Context()).Create(&Note{Text: "hi"}).Error)
	}))
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
	h := audithttp.Middleware(svc)(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		panic("boom")
	}))
	assert.PanicsWithValue(t, "boom", func() { serve(h, httptest.NewRequest(http.MethodGet, "/p", nil)) })

	es := recorded(t, svc)
	require.Len(t, es, 1)
	assert.Equal(t, "failure", es[0].Outcome)
	assert.Equal(t, float64(500), es[0].Details["status"])
	assert.Equal(t, true, es[0].Details["panic"])
}

func TestResponseWriterKeepsInterfaces(t *testing.T) {
	svc, _ := newService(t)
	h := audithttp.Middleware(svc)(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.WriteString(w, "a")
		f, ok := w.(http.Flusher)
		require.True(t, ok, "http.Flusher")
		f.Flush()
		require.NoError(t, http.NewResponseController(w).Flush(), "ResponseController through Unwrap")
		n, err := io.Copy(w, strings.NewReader("bcd")) // io.ReaderFrom
		require.NoError(t, err)
		assert.Equal(t, int64(3), n)
	}))
	w := serve(h, httptest.NewRequest(http.MethodGet, "/", nil))
	assert.True(t, w.Flushed)
	assert.Equal(t, "abcd", w.Body.String())
	es := recorded(t, svc)
	require.Len(t, es, 1)
	assert.Equal(t, float64(4), es[0].Details["bytes"])
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
	srv := httptest.NewServer(audithttp.Middleware(svc, audithttp.WithActor(userHeader))(mux))
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
	assert.Equal(t, "GET /stream", es[0].Resource)
	assert.Equal(t, "carol", es[0].Actor)
	assert.Equal(t, "stream-1", es[0].RequestID)
	assert.Equal(t, "success", es[0].Outcome)
	assert.Equal(t, float64(len("first\nsecond\n")), es[0].Details["bytes"])
	assert.True(t, strings.HasPrefix(es[0].Details["remote_addr"].(string), "127.0.0.1:"), es[0].Details["remote_addr"])

	assert.Equal(t, "GET /forbidden", es[1].Resource)
	assert.Equal(t, "denied", es[1].Outcome)
	assert.Equal(t, generated, es[1].RequestID)

	assert.Equal(t, "GET /hijack", es[2].Resource)
	assert.Equal(t, float64(101), es[2].Details["status"])
	assert.Equal(t, true, es[2].Details["hijacked"])
}

// fullQueue returns a service whose queue (of one) cannot drain: SQLite's
// write lock is held by another connection until release is called.
func fullQueue(t *testing.T) (svc *audit.AuditService, release func()) {
	t.Helper()
	svc, path := newService(t, audit.WithOverflow(audit.OverflowFail), audit.WithQueueSize(1),
		audit.WithLogger(new(logBuffer).logger()))
	// Open the database and create the schema before taking the lock.
	require.NoError(t, svc.Record(context.Background(), audit.Entry{EventType: "warm.up", Actor: "test"}))
	require.NoError(t, svc.Flush(context.Background()))
	return svc, holdWriteLock(t, path)
}

func TestOverflowIsCountedNotFailed(t *testing.T) {
	svc, release := fullQueue(t)
	var logs logBuffer
	a := audithttp.New(svc, audithttp.WithLogger(logs.logger()))
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
	assert.Contains(t, logs.String(), audit.ErrQueueFull.Error())

	release()
	es := recorded(t, svc)
	assert.Equal(t, 1+n-int(a.Dropped()), len(es), "every request not counted as dropped was recorded")
}

func TestFailClosed(t *testing.T) {
	t.Run("a request that cannot be recorded is refused with 503", func(t *testing.T) {
		svc, _ := newService(t)
		var logs logBuffer
		a := audithttp.New(svc, audithttp.WithFailClosed(true), audithttp.WithLogger(logs.logger()))
		var calls atomic.Int64
		h := a.Handler(http.HandlerFunc(func(http.ResponseWriter, *http.Request) { calls.Add(1) }))
		require.NoError(t, svc.Close())

		w := serve(h, httptest.NewRequest(http.MethodPost, "/transfer", nil))
		assert.Equal(t, http.StatusServiceUnavailable, w.Code)
		assert.Regexp(t, hexID, w.Header().Get("X-Request-ID"))
		assert.Zero(t, calls.Load(), "the handler must not run")
		assert.Equal(t, uint64(1), a.Dropped())
		assert.Contains(t, logs.String(), audit.ErrClosed.Error())
	})

	t.Run("a full queue refuses requests, and only those", func(t *testing.T) {
		svc, release := fullQueue(t)
		a := audithttp.New(svc, audithttp.WithFailClosed(true), audithttp.WithLogger(new(logBuffer).logger()))
		var calls atomic.Int64
		h := a.Handler(http.HandlerFunc(func(http.ResponseWriter, *http.Request) { calls.Add(1) }))
		served, refused := 0, 0
		for refused == 0 {
			require.Less(t, served, 10, "no request was refused")
			switch code := serve(h, httptest.NewRequest(http.MethodGet, "/", nil)).Code; code {
			case http.StatusOK:
				served++
			case http.StatusServiceUnavailable:
				refused++
			default:
				t.Fatalf("status %d", code)
			}
		}
		assert.Equal(t, int64(served), calls.Load())
		release()
		recorded(t, svc)
	})

	t.Run("a recorded request has a started and a final entry", func(t *testing.T) {
		svc, _ := newService(t)
		h := audithttp.Middleware(svc, audithttp.WithFailClosed(true))(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			w.WriteHeader(http.StatusAccepted)
		}))
		w := serve(h, httptest.NewRequest(http.MethodPut, "/x", nil))
		assert.Equal(t, http.StatusAccepted, w.Code)

		es := recorded(t, svc)
		require.Len(t, es, 2)
		assert.Equal(t, "started", es[0].Outcome)
		assert.Equal(t, map[string]any{"remote_addr": "192.0.2.1:1234"}, es[0].Details)
		assert.Equal(t, "success", es[1].Outcome)
		assert.Equal(t, float64(http.StatusAccepted), es[1].Details["status"])
		assert.Equal(t, es[0].RequestID, es[1].RequestID)
		assert.Equal(t, w.Header().Get("X-Request-ID"), es[0].RequestID)
	})
}

func TestNewPanicsOnInvalidOptions(t *testing.T) {
	svc, _ := newService(t)
	for name, f := range map[string]func(){
		"nil service":      func() { audithttp.New(nil) },
		"nil option":       func() { audithttp.New(svc, nil) },
		"empty event type": func() { audithttp.New(svc, audithttp.WithEventType("")) },
		"nil actor":        func() { audithttp.New(svc, audithttp.WithActor(nil)) },
		"nil logger":       func() { audithttp.Middleware(svc, audithttp.WithLogger(nil)) },
	} {
		assert.Panics(t, f, name)
	}
	assert.NotPanics(t, func() { audithttp.New(svc, audithttp.WithSkipPaths(), audithttp.WithFailClosed(false)) })
}
