package audithttp_test

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/cleveragents/audit"
	"github.com/cleveragents/audit/audithttp"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestRequestIDs(t *testing.T) {
	svc, _ := newService(t)
	var seen []string
	h := wrap(t, svc, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
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

// The method, the path, the query and the host each have their own limit:
// a long one keeps what fits, says it was cut, and pushes out no other.
func TestFieldLimits(t *testing.T) {
	nothing := http.HandlerFunc(func(http.ResponseWriter, *http.Request) {})

	t.Run("a 1 KB method on a real server leaves the path whole", func(t *testing.T) {
		svc, _ := newService(t)
		srv := httptest.NewServer(wrap(t, svc, nothing))
		t.Cleanup(srv.Close)
		method := strings.Repeat("M", 1024) // a token: Go's server accepts it
		conn, err := net.Dial("tcp", srv.Listener.Addr().String())
		require.NoError(t, err)
		defer conn.Close()
		_, err = fmt.Fprintf(conn, "%s /accounts/42/close?why=moving HTTP/1.1\r\nHost: bank.test\r\nConnection: close\r\n\r\n", method)
		require.NoError(t, err)
		resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
		require.NoError(t, err)
		_, _ = io.Copy(io.Discard, resp.Body)
		require.NoError(t, resp.Body.Close())
		require.Equal(t, http.StatusOK, resp.StatusCode)

		es := recorded(t, svc)
		require.Len(t, es, 1)
		e := es[0]
		assert.Equal(t, "/accounts/42/close", e.Resource)
		assert.Equal(t, "why=moving", e.Details["query"])
		assert.Equal(t, "bank.test", e.Details["host"])
		m := e.Details["method"].(string)
		assert.Len(t, m, audithttp.MaxMethodLen)
		assert.Equal(t, method[:audithttp.MaxMethodLen-len(audithttp.Truncated)]+audithttp.Truncated, m)
		assert.Equal(t, map[string]any{"method": float64(1024)}, e.Details["truncated"])
	})

	t.Run("a 5 KB path keeps what fits and is marked", func(t *testing.T) {
		svc, _ := newService(t)
		path := "/files/" + strings.Repeat("a", 5000)
		serve(wrap(t, svc, nothing), httptest.NewRequest(http.MethodGet, path+"?v=2", nil))

		es := recorded(t, svc)
		require.Len(t, es, 1)
		e := es[0]
		assert.Len(t, e.Resource, audit.MaxResourceLen)
		assert.Equal(t, path[:audit.MaxResourceLen-len(audithttp.Truncated)]+audithttp.Truncated, e.Resource)
		assert.Equal(t, map[string]any{"path": float64(len(path))}, e.Details["truncated"])
		assert.Equal(t, "GET", e.Details["method"])
		assert.Equal(t, "v=2", e.Details["query"])
	})

	t.Run("the query is recorded as sent, a long one cut at its limit", func(t *testing.T) {
		svc, _ := newService(t)
		h := wrap(t, svc, nothing)
		serve(h, httptest.NewRequest(http.MethodGet, "/search?q=caf%C3%A9&page=2&q=tea", nil))
		long := "q=" + strings.Repeat("x", audithttp.MaxQueryLen)
		serve(h, httptest.NewRequest(http.MethodGet, "/search?"+long, nil))
		serve(h, httptest.NewRequest(http.MethodGet, "/search", nil))

		es := recorded(t, svc)
		require.Len(t, es, 3)
		assert.Equal(t, "q=caf%C3%A9&page=2&q=tea", es[0].Details["query"])
		assert.Equal(t, "/search", es[0].Resource)
		assert.NotContains(t, es[0].Details, "truncated")
		assert.Equal(t, long[:audithttp.MaxQueryLen-len(audithttp.Truncated)]+audithttp.Truncated, es[1].Details["query"])
		assert.Equal(t, map[string]any{"query": float64(len(long))}, es[1].Details["truncated"])
		assert.Equal(t, "/search", es[1].Resource)
		assert.NotContains(t, es[2].Details, "query", "no query, no field")
	})

	t.Run("a long host and every cut field are noted together", func(t *testing.T) {
		svc, _ := newService(t)
		r := httptest.NewRequest(strings.Repeat("P", 100), "/h?"+strings.Repeat("k", 5000), nil)
		r.Host = strings.Repeat("h", 300) + ".test"
		serve(wrap(t, svc, nothing), r)

		es := recorded(t, svc)
		require.Len(t, es, 1)
		e := es[0]
		assert.Equal(t, "/h", e.Resource)
		assert.Len(t, e.Details["host"], audit.MaxFieldLen)
		assert.True(t, strings.HasSuffix(e.Details["host"].(string), audithttp.Truncated))
		assert.Equal(t, map[string]any{"method": float64(100), "query": float64(5000), "host": float64(305)}, e.Details["truncated"])
	})

	t.Run("invalid UTF-8 and NUL in a constructed request are made acceptable, not dropped", func(t *testing.T) {
		svc, _ := newService(t)
		a := newAuditor(t, svc, audithttp.WithActor(func(*http.Request) string { return "b\x00ob\xff" }))
		r := httptest.NewRequest(http.MethodGet, "/u", nil)
		r.Host = "h\x00ost\xfe"
		serve(a.Handler(nothing), r)
		es := recorded(t, svc)
		require.Len(t, es, 1)
		assert.Zero(t, a.Dropped())
		assert.Equal(t, "bob\uFFFD", es[0].Actor)
		assert.Equal(t, "host\uFFFD", es[0].Details["host"])
	})

	t.Run("WithRedactKeys on the service hashes the query", func(t *testing.T) {
		svc, _ := newService(t, audit.WithRedactKeys([]byte("k"), "query"))
		serve(wrap(t, svc, nothing), httptest.NewRequest(http.MethodGet, "/login?token=s3cret", nil))
		es := recorded(t, svc)
		require.Len(t, es, 1)
		q := es[0].Details["query"].(string)
		assert.True(t, strings.HasPrefix(q, audit.RedactedPrefix), q)
		assert.NotContains(t, q, "s3cret")
		assert.Equal(t, "/login", es[0].Resource)
	})
}
