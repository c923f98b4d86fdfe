package audithttp_test

import (
	"context"
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/cleveragents/audit"
	"github.com/cleveragents/audit/audithttp"
	"github.com/cleveragents/audit/internal/testutil"
	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"
)

// TestMain fails the run if a goroutine outlives the tests: every service,
// server and client connection must be closed.
func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

// newService starts a service on a new SQLite file and closes it when the
// test ends. It returns the file's path too. The service logs nowhere
// unless opts say otherwise.
func newService(tb testing.TB, opts ...audit.Option) (*audit.AuditService, string) {
	tb.Helper()
	path := testutil.TempDB(tb)
	svc, err := audit.New(append([]audit.Option{audit.WithSQLite(path), audit.WithLogger(testutil.Discard())}, opts...)...)
	require.NoError(tb, err)
	tb.Cleanup(func() { _ = svc.Close() })
	return svc, path
}

// newAuditor returns the middleware of rec with opts, failing the test on
// an error.
func newAuditor(tb testing.TB, rec audithttp.Recorder, opts ...audithttp.Option) *audithttp.Auditor {
	tb.Helper()
	a, err := audithttp.New(rec, opts...)
	require.NoError(tb, err)
	return a
}

// wrap returns h behind the middleware of rec with opts.
func wrap(tb testing.TB, rec audithttp.Recorder, h http.Handler, opts ...audithttp.Option) http.Handler {
	tb.Helper()
	return newAuditor(tb, rec, opts...).Handler(h)
}

// recorded flushes svc and returns every committed entry in ID order.
func recorded(tb testing.TB, svc *audit.AuditService) []audit.Entry {
	tb.Helper()
	ctx := context.Background()
	require.NoError(tb, svc.Flush(ctx))
	es, err := svc.List(ctx, audit.Filter{Limit: audit.MaxListLimit})
	require.NoError(tb, err)
	return es
}

// warmUp records and commits one entry, so that the database is open and
// its schema made before a test takes the write lock.
func warmUp(tb testing.TB, svc *audit.AuditService) {
	tb.Helper()
	require.NoError(tb, svc.Record(context.Background(), audit.Entry{EventType: "warm.up", Actor: "test"}))
	require.NoError(tb, svc.Flush(context.Background()))
}

// serve runs one request through h and returns the response.
func serve(h http.Handler, r *http.Request) *httptest.ResponseRecorder {
	w := httptest.NewRecorder()
	h.ServeHTTP(w, r)
	return w
}

// newClient returns an HTTP client with its own transport, whose idle
// connections are closed when the test ends (goleak would see them).
func newClient(tb testing.TB) *http.Client {
	tb.Helper()
	tr := &http.Transport{}
	tb.Cleanup(tr.CloseIdleConnections)
	return &http.Client{Transport: tr}
}

// fullQueue returns a service whose queue (of one) cannot drain: SQLite's
// write lock is held by another connection until release is called.
func fullQueue(t testing.TB) (svc *audit.AuditService, release func()) {
	t.Helper()
	svc, path := newService(t, audit.WithOverflow(audit.OverflowFail), audit.WithQueueSize(1))
	warmUp(t, svc) // open the database and create the schema before taking the lock
	return svc, testutil.HoldWriteLock(t, path)
}
