package audit

import (
	"context"
	"crypto/rand"
	"database/sql"
	"encoding/hex"
	"fmt"
	"os"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/cleveragents/audit/internal/testutil"
	"github.com/stretchr/testify/require"
	"gorm.io/driver/postgres"
	"gorm.io/driver/sqlite"
	"gorm.io/gorm"
)

// The behavioural tests run on every backend of this table: SQLite always,
// PostgreSQL when AUDIT_TEST_POSTGRES_DSN names a server (.ci/run starts
// one). Under CI=true a missing DSN fails the PostgreSQL runs, so they are
// never skipped silently.

// postgresDSNEnv names the variable that points the tests at a server.
const postgresDSNEnv = "AUDIT_TEST_POSTGRES_DSN"

type backendKind struct {
	name string
	// fresh returns a new, empty log on this backend.
	fresh func(tb testing.TB) *backend
}

var backends = []backendKind{
	{name: "sqlite", fresh: freshSQLite},
	{name: "postgres", fresh: freshPostgres},
}

// forEachBackend runs fn as a subtest on a fresh log of each backend.
func forEachBackend(t *testing.T, fn func(t *testing.T, st *backend)) {
	t.Helper()
	for _, b := range backends {
		t.Run(b.name, func(t *testing.T) {
			fn(t, b.fresh(t))
		})
	}
}

// backend is one log (a database and a table) that tests open services on
// and reach around with plain SQL, as an operator or attacker would.
type backend struct {
	kind  string // "sqlite" or "postgres"
	path  string // SQLite file
	dsn   string // PostgreSQL
	table string
	raw   *sql.DB // an independent connection pool
}

// opts are the options that open this log.
func (st *backend) opts() []Option {
	var o []Option
	if st.kind == "sqlite" {
		o = append(o, WithSQLite(st.path))
	} else {
		o = append(o, WithDialector(postgres.Open(st.dsn)))
	}
	return append(o, WithTable(st.table))
}

// dialector returns a new dialector of this log's database.
func (st *backend) dialector() gorm.Dialector {
	if st.kind == "sqlite" {
		dsn, _ := sqliteDSN(st.path)
		return sqlite.Open(dsn)
	}
	return postgres.Open(st.dsn)
}

// service starts a service on this log and closes it when the test ends.
func (st *backend) service(tb testing.TB, more ...Option) *AuditService {
	tb.Helper()
	return newServiceAt(tb, append(st.opts(), more...)...)
}

// sibling returns another table in the same database.
func (st *backend) sibling(tb testing.TB) *backend {
	tb.Helper()
	other := *st
	other.table = st.table + "_2"
	if st.kind == "postgres" {
		dropTableAtEnd(tb, st.raw, other.table)
	}
	return &other
}

// exec runs SQL on the raw connection, with $TABLE replaced by the quoted
// table name, $AWAY by another, and $HEAD by the condition that selects
// the table's chain head row.
func (st *backend) exec(tb testing.TB, query string) {
	tb.Helper()
	_, err := st.raw.Exec(st.sql(query))
	require.NoError(tb, err, st.sql(query))
}

func (st *backend) sql(query string) string {
	r := []string{"$TABLE", quote(st.table), "$AWAY", quote(st.table + "_away"), "$HEAD", "table_name = '" + st.table + "'"}
	for i := 0; i < len(r); i += 2 {
		query = strings.ReplaceAll(query, r[i], r[i+1])
	}
	return query
}

// holdWriteLock blocks the writers of this log, through a second
// connection, until the returned function is called: SQLite's write lock
// (BEGIN IMMEDIATE), or PostgreSQL's lock on the chain head row.
func (st *backend) holdWriteLock(tb testing.TB) (release func()) {
	tb.Helper()
	if st.kind == "sqlite" {
		return testutil.HoldWriteLock(tb, st.path)
	}
	ctx := context.Background()
	conn, err := st.raw.Conn(ctx)
	require.NoError(tb, err)
	_, err = conn.ExecContext(ctx, "BEGIN")
	require.NoError(tb, err)
	_, err = conn.ExecContext(ctx, "SELECT 1 FROM "+chainTable+" WHERE table_name = $1 FOR UPDATE", st.table)
	require.NoError(tb, err)
	return testutil.HoldConn(tb, conn)
}

func freshSQLite(tb testing.TB) *backend {
	tb.Helper()
	path := testutil.TempDB(tb)
	return &backend{kind: "sqlite", path: path, table: DefaultTable, raw: testutil.RawDB(tb, path)}
}

var tableSeq atomic.Int64

// freshPostgres returns a new table, named for the test, in the database
// of AUDIT_TEST_POSTGRES_DSN; it is dropped when the test ends.
func freshPostgres(tb testing.TB) *backend {
	tb.Helper()
	dsn := postgresDSN(tb)
	raw, err := sql.Open("pgx", dsn)
	require.NoError(tb, err)
	tb.Cleanup(func() { _ = raw.Close() })
	require.NoError(tb, raw.Ping(), "connect to %s", postgresDSNEnv)
	var b [4]byte
	_, _ = rand.Read(b[:])
	table := "t" + strconv.FormatInt(tableSeq.Add(1), 10) + "_" + hex.EncodeToString(b[:])
	dropTableAtEnd(tb, raw, table)
	return &backend{kind: "postgres", dsn: dsn, table: table, raw: raw}
}

func dropTableAtEnd(tb testing.TB, raw *sql.DB, table string) {
	tb.Cleanup(func() { _ = dropLog(raw, table) })
}

// dropLog drops a PostgreSQL log's tables and its rows in the tables that
// logs share. A shared table that does not exist (no service made it) is
// no error.
func dropLog(raw *sql.DB, table string) error {
	if _, err := raw.Exec("DROP TABLE IF EXISTS " + quote(table) + ", " + quote(table+OutboxSuffix)); err != nil {
		return err
	}
	for _, shared := range []string{chainTable, TreeTileTable, TreeEdgeTable, TreeHeadTable, logsTable} {
		if _, err := raw.Exec("DELETE FROM "+shared+" WHERE table_name = $1", table); err != nil && sqlState(err) != "42P01" { // undefined_table
			return fmt.Errorf("%s: %w", shared, err)
		}
	}
	return nil
}

// postgresDSN returns the test server's DSN, or skips (fails under CI).
func postgresDSN(tb testing.TB) string {
	tb.Helper()
	dsn := os.Getenv(postgresDSNEnv)
	if dsn == "" {
		msg := fmt.Sprintf("PostgreSQL tests need a server: set %s (e.g. postgres://postgres@127.0.0.1:5432/postgres?sslmode=disable), or run bash .ci/run, which starts one", postgresDSNEnv)
		if os.Getenv("CI") == "true" {
			tb.Fatal(msg)
		}
		tb.Skip(msg)
	}
	return dsn
}
