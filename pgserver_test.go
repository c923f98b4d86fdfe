package audit

import (
	"context"
	"net"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"sort"
	"strconv"
	"testing"
	"time"

	"github.com/cleveragents/audit/internal/testutil"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"gorm.io/driver/postgres"
)

// pgServer is a private PostgreSQL cluster that a test starts, stops and
// restarts: the faults of a real server, on demand.
type pgServer struct {
	bin, data, sock string
	port            int
	asPostgres      bool // running as root: the server runs as postgres
}

// startPostgres initialises a cluster in a temp dir and starts it on
// 127.0.0.1 and a free port. It needs the server binaries: from
// AUDIT_TEST_POSTGRES_BIN, or Debian's /usr/lib/postgresql/*/bin.
func startPostgres(t *testing.T) *pgServer {
	t.Helper()
	postgresDSN(t) // the PostgreSQL tests are wanted, or skipped, as a whole
	bin := os.Getenv("AUDIT_TEST_POSTGRES_BIN")
	if bin == "" {
		dirs, _ := filepath.Glob("/usr/lib/postgresql/*/bin")
		sort.Strings(dirs)
		if len(dirs) > 0 {
			bin = dirs[len(dirs)-1]
		}
	}
	if _, err := os.Stat(filepath.Join(bin, "initdb")); err != nil {
		msg := "no PostgreSQL server binaries: set AUDIT_TEST_POSTGRES_BIN or apt-get install postgresql"
		if os.Getenv("CI") == "true" {
			t.Fatal(msg)
		}
		t.Skip(msg)
	}
	dir, err := os.MkdirTemp("", "audit-pg-")
	require.NoError(t, err)
	t.Cleanup(func() { _ = os.RemoveAll(dir) })
	srv := &pgServer{bin: bin, data: filepath.Join(dir, "data"), sock: dir, port: freePort(t), asPostgres: os.Geteuid() == 0}
	if srv.asPostgres {
		u, err := user.Lookup("postgres")
		require.NoError(t, err)
		uid, _ := strconv.Atoi(u.Uid)
		gid, _ := strconv.Atoi(u.Gid)
		require.NoError(t, os.Chown(dir, uid, gid))
	}
	srv.run(t, "initdb", "-D", srv.data, "-A", "trust", "-U", "postgres")
	srv.start(t)
	t.Cleanup(func() { _ = srv.command("pg_ctl", "-D", srv.data, "-m", "immediate", "-w", "stop").Run() })
	return srv
}

func (p *pgServer) dsn() string {
	return "postgres://postgres@127.0.0.1:" + strconv.Itoa(p.port) + "/postgres?sslmode=disable&connect_timeout=2"
}

func (p *pgServer) start(t *testing.T) {
	t.Helper()
	p.run(t, "pg_ctl", "-D", p.data, "-l", filepath.Join(p.sock, "server.log"), "-w", "-o",
		"-c listen_addresses=127.0.0.1 -p "+strconv.Itoa(p.port)+" -k "+p.sock+" -c fsync=off", "start")
}

// stop shuts the server down fast: open connections are cut.
func (p *pgServer) stop(t *testing.T) {
	t.Helper()
	p.run(t, "pg_ctl", "-D", p.data, "-m", "fast", "-w", "stop")
}

func (p *pgServer) command(tool string, args ...string) *exec.Cmd {
	path := filepath.Join(p.bin, tool)
	if p.asPostgres {
		return exec.Command("runuser", append([]string{"-u", "postgres", "--", path}, args...)...)
	}
	return exec.Command(path, args...)
}

func (p *pgServer) run(t *testing.T, tool string, args ...string) {
	t.Helper()
	out, err := p.command(tool, args...).CombinedOutput()
	require.NoError(t, err, "%s: %s", tool, out)
}

func freePort(t *testing.T) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

// TestPostgresRestart stops the server in the middle of a run and starts it
// again: nothing accepted is lost, writing resumes by itself, and the
// failures are counted. While the server is down, a query fails with an
// error within its ctx rather than hanging.
func TestPostgresRestart(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a PostgreSQL server")
	}
	srv := startPostgres(t)
	ctx := context.Background()
	s := newServiceAt(t, WithDialector(postgres.Open(srv.dsn())), WithLogger(testutil.Discard()), WithQueueSize(100000))
	recordN(t, s, 0, 500)

	srv.stop(t)
	for i := 500; i < 1500; i++ {
		require.NoError(t, s.Record(ctx, sampleEntry(i)), "Record does not wait for the database")
	}
	testutil.WaitFor(t, 10*time.Second, func() bool { return s.Stats().Failures >= 2 }, "failed writes while the server is down")

	qctx, cancel := context.WithTimeout(ctx, 3*time.Second)
	var err error
	testutil.ReturnsWithin(t, testutil.HangBound, "a query while the server is down", func() { _, err = s.Count(qctx, Filter{}) })
	cancel()
	require.Error(t, err, "a query while the server is down")

	srv.start(t)
	fctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	require.NoError(t, s.Flush(fctx), "writing resumes by itself")
	n, err := s.Count(ctx, Filter{})
	require.NoError(t, err)
	assert.Equal(t, int64(1500), n, "nothing accepted was lost")
	list, err := s.List(ctx, Filter{AfterID: 495, Limit: 10})
	require.NoError(t, err)
	for i, e := range list {
		assert.Equal(t, "req-"+strconv.Itoa(495+i), e.RequestID, "order kept across the restart")
	}
	rep, err := s.Verify(ctx)
	require.NoError(t, err)
	assert.Equal(t, int64(1500), rep.Entries)
	stats := s.Stats()
	assert.Equal(t, uint64(1500), stats.Written)
	assert.GreaterOrEqual(t, stats.Failures, uint64(2))
}
