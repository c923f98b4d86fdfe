package audithttp_test

import (
	"bytes"
	"context"
	"database/sql"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/cleveragents/audit"
	_ "github.com/mattn/go-sqlite3" // the "sqlite3" driver of rawDB
	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"
)

// TestMain fails the run if a goroutine outlives the tests: every service,
// server and client connection must be closed.
func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

// newService starts a service on a new SQLite file and closes it when the
// test ends. It returns the file's path too.
func newService(tb testing.TB, opts ...audit.Option) (*audit.AuditService, string) {
	tb.Helper()
	path := filepath.Join(tb.TempDir(), "audit.db")
	svc, err := audit.New(append([]audit.Option{audit.WithSQLite(path)}, opts...)...)
	require.NoError(tb, err)
	tb.Cleanup(func() { _ = svc.Close() })
	return svc, path
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

// serve runs one request through h and returns the response.
func serve(h http.Handler, r *http.Request) *httptest.ResponseRecorder {
	w := httptest.NewRecorder()
	h.ServeHTTP(w, r)
	return w
}

// holdWriteLock takes SQLite's write lock on the file at path through a
// second connection, so that the service's writer cannot commit, and
// returns the function that releases it.
func holdWriteLock(tb testing.TB, path string) (release func()) {
	tb.Helper()
	db, err := sql.Open("sqlite3", path+"?_busy_timeout=5000")
	require.NoError(tb, err)
	tb.Cleanup(func() { _ = db.Close() })
	conn, err := db.Conn(context.Background())
	require.NoError(tb, err)
	_, err = conn.ExecContext(context.Background(), "BEGIN IMMEDIATE")
	require.NoError(tb, err)
	var done atomic.Bool
	release = func() {
		if done.CompareAndSwap(false, true) {
			_, err := conn.ExecContext(context.Background(), "ROLLBACK")
			require.NoError(tb, err)
			require.NoError(tb, conn.Close())
		}
	}
	tb.Cleanup(release)
	return release
}

// logBuffer is a concurrency-safe sink for a slog.Logger.
type logBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *logBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *logBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

func (b *logBuffer) logger() *slog.Logger {
	return slog.New(slog.NewTextHandler(b, nil))
}

// newClient returns an HTTP client with its own transport, whose idle
// connections are closed when the test ends (goleak would see them).
func newClient(tb testing.TB) *http.Client {
	tb.Helper()
	tr := &http.Transport{}
	tb.Cleanup(tr.CloseIdleConnections)
	return &http.Client{Transport: tr}
}
