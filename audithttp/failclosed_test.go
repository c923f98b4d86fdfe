package audithttp_test

import (
	"context"
	"net/http"
	"net/http/httptest"
	"sync/atomic"
	"testing"
	"time"

	"github.com/cleveragents/audit"
	"github.com/cleveragents/audit/audithttp"
	"github.com/cleveragents/audit/internal/testutil"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestFailClosed(t *testing.T) {
	t.Run("a request that cannot be recorded is refused with 503", func(t *testing.T) {
		svc, _ := newService(t)
		var logs testutil.LogBuffer
		a := newAuditor(t, svc, audithttp.WithFailClosed(true), audithttp.WithLogger(logs.Logger()))
		var calls atomic.Int64
		h := a.Handler(http.HandlerFunc(func(http.ResponseWriter, *http.Request) { calls.Add(1) }))
		require.NoError(t, svc.Close())

		w := serve(h, httptest.NewRequest(http.MethodPost, "/transfer", nil))
		assert.Equal(t, http.StatusServiceUnavailable, w.Code)
		assert.Regexp(t, hexID, w.Header().Get("X-Request-ID"))
		assert.Zero(t, calls.Load(), "the handler must not run")
		assert.Equal(t, uint64(1), a.Dropped())
		assert.Contains(t, logs.String(), "audit: record: service closed")
	})

	t.Run("a full queue refuses requests, and only those", func(t *testing.T) {
		svc, release := fullQueue(t)
		a := newAuditor(t, svc, audithttp.WithFailClosed(true), audithttp.WithLogger(testutil.Discard()))
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
		h := wrap(t, svc, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			w.WriteHeader(http.StatusAccepted)
		}), audithttp.WithFailClosed(true))
		w := serve(h, httptest.NewRequest(http.MethodPut, "/x?y=2", nil))
		assert.Equal(t, http.StatusAccepted, w.Code)

		es := recorded(t, svc)
		require.Len(t, es, 2)
		assert.Equal(t, "started", es[0].Outcome)
		assert.Equal(t, map[string]any{"remote_addr": "192.0.2.1:1234", "method": "PUT", "host": "example.com", "query": "y=2"}, es[0].Details)
		assert.Equal(t, "/x", es[0].Resource)
		assert.Equal(t, es[0].Resource, es[1].Resource)
		assert.Equal(t, "success", es[1].Outcome)
		assert.Equal(t, float64(http.StatusAccepted), es[1].Details["status"])
		assert.Equal(t, es[0].RequestID, es[1].RequestID)
		assert.Equal(t, w.Header().Get("X-Request-ID"), es[0].RequestID)
	})
}

// TestStalledLog holds SQLite's write lock, as another process would, so
// that the service's writer cannot commit. A fail-closed request must then
// be refused within its bound instead of waiting for the lock. The bound is
// small only where the stall is certain (the lock is held); the requests
// after the stall get a generous one, so that a slow machine cannot turn a
// commit's duration into a 503.
func TestStalledLog(t *testing.T) {
	const small, generous = 50 * time.Millisecond, time.Minute

	t.Run("sync: a fail-closed request is refused with 503 at the bound, and served once the lock is released", func(t *testing.T) {
		svc, path := newService(t, audit.WithAsync(false))
		warmUp(t, svc)
		var calls atomic.Int64
		handler := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			calls.Add(1)
			w.WriteHeader(http.StatusCreated)
		})
		release := testutil.HoldWriteLock(t, path)

		var logs testutil.LogBuffer
		stalled := newAuditor(t, svc, audithttp.WithFailClosed(true), audithttp.WithFailClosedTimeout(small),
			audithttp.WithLogger(logs.Logger()))
		// A client that would wait a minute: the bound, not the client
		// giving up, must end the wait.
		client, cancel := context.WithTimeout(context.Background(), generous)
		defer cancel()
		r := httptest.NewRequestWithContext(client, http.MethodPost, "/transfer", nil)
		r.Header.Set(audithttp.RequestIDHeader, "stalled-1")
		w := serve(stalled.Handler(handler), r)
		require.NoError(t, client.Err(), "refused at the bound, before the client gave up")
		assert.Equal(t, http.StatusServiceUnavailable, w.Code)
		assert.Zero(t, calls.Load(), "the handler must not run")
		assert.Equal(t, uint64(1), stalled.Dropped())
		assert.Contains(t, logs.String(), "request not audited")
		assert.Contains(t, logs.String(), context.DeadlineExceeded.Error())

		release()
		// The sync service kept the refused request's started entry queued:
		// it commits now.
		require.NoError(t, svc.Flush(context.Background()))
		after := newAuditor(t, svc, audithttp.WithFailClosed(true), audithttp.WithFailClosedTimeout(generous))
		for _, id := range []string{"after-1", "after-2"} {
			r := httptest.NewRequest(http.MethodPost, "/transfer", nil)
			r.Header.Set(audithttp.RequestIDHeader, id)
			assert.Equal(t, http.StatusCreated, serve(after.Handler(handler), r).Code, id)
		}
		assert.Equal(t, int64(2), calls.Load())
		assert.Zero(t, after.Dropped())

		es := recorded(t, svc)
		var got []string
		for _, e := range es[1:] { // after warm.up
			got = append(got, e.RequestID+" "+e.Outcome)
			assert.Equal(t, "/transfer", e.Resource)
		}
		assert.Equal(t, []string{
			"stalled-1 started", // refused: no final entry
			"after-1 started", "after-1 success",
			"after-2 started", "after-2 success",
		}, got)
	})

	t.Run("async: a full queue under OverflowBlock refuses at the bound instead of waiting for room", func(t *testing.T) {
		svc, path := newService(t, audit.WithQueueSize(1), audit.WithOverflow(audit.OverflowBlock))
		warmUp(t, svc)
		release := testutil.HoldWriteLock(t, path)
		a := newAuditor(t, svc, audithttp.WithFailClosed(true), audithttp.WithFailClosedTimeout(small),
			audithttp.WithLogger(testutil.Discard()))
		var calls atomic.Int64
		h := a.Handler(http.HandlerFunc(func(http.ResponseWriter, *http.Request) { calls.Add(1) }))

		// The writer holds one blocked batch and the queue one entry more:
		// a few requests fill both, and the next is refused.
		client, cancel := context.WithTimeout(context.Background(), generous)
		defer cancel()
		served := 0
		for {
			code := serve(h, httptest.NewRequestWithContext(client, http.MethodGet, "/", nil)).Code
			require.NoError(t, client.Err(), "answered at the bound, before the client gave up")
			if code == http.StatusServiceUnavailable {
				break
			}
			require.Equal(t, http.StatusOK, code)
			served++
			require.Less(t, served, 10, "no request was refused")
		}
		assert.Equal(t, int64(served), calls.Load(), "a refused request's handler does not run")
		assert.NotZero(t, a.Dropped())

		release()
		es := recorded(t, svc)
		// Each served request had its started entry accepted; what the full
		// queue refused is counted in Dropped, and the rest was recorded.
		assert.Equal(t, 1+2*served+1-int(a.Dropped()), len(es), "warm.up, then every Record not counted as dropped: %d served", served)
	})
}
