package audit

import (
	"context"
	"database/sql"
	"database/sql/driver"
	"sync"
	"testing"

	"github.com/stretchr/testify/require"
	"gorm.io/driver/postgres"
	"gorm.io/gorm"
	gormlogger "gorm.io/gorm/logger"
)

// TestPostgresBatchesGoInByCopy writes realistic entries, and the edge
// cases of TestRoundTrip's kind (no Details, empty optional fields,
// multi-byte text), through pgx: every entry goes in by COPY, reads back
// as recorded, and the chain and tree verify.
func TestPostgresBatchesGoInByCopy(t *testing.T) {
	st := freshPostgres(t)
	ctx := context.Background()
	s := st.service(t, WithBatchSize(64))
	in := realEntries(7, 1000)
	in = append(in,
		Entry{EventType: "e", Actor: "a"},
		Entry{EventType: "e", Actor: "a", Details: map[string]any{}},
		Entry{EventType: "unicode 🙂", Actor: "e\u0301\u05e9", Resource: "𝄞/\t\\n", Details: map[string]any{"nul": "a\x00b", "q": `"\`}},
	)
	recordAll(t, s, in...)
	require.Equal(t, uint64(len(in)), s.stats.copied.Load(), "entries sent by COPY")
	for i, want := range in {
		got, err := s.Get(ctx, int64(i+1))
		require.NoError(t, err)
		require.Equal(t, want.EventType, got.EventType, "entry %d", i+1)
		require.Equal(t, want.Actor, got.Actor, "entry %d", i+1)
		require.Equal(t, want.Resource, got.Resource, "entry %d", i+1)
		require.Equal(t, want.Outcome, got.Outcome, "entry %d", i+1)
		require.Equal(t, want.RequestID, got.RequestID, "entry %d", i+1)
		require.Equal(t, jsonRoundTrip(t, want.Details), got.Details, "entry %d", i+1)
		require.True(t, want.Time.IsZero() || want.Time.Equal(got.Time), "entry %d: time %v, recorded %v", i+1, got.Time, want.Time)
	}
	rep, err := s.Verify(ctx)
	require.NoError(t, err)
	require.Equal(t, int64(len(in)), rep.Entries)
	var rows int64
	require.NoError(t, st.raw.QueryRow("SELECT COUNT(*) FROM "+quote(st.table)+" WHERE details IS NULL").Scan(&rows))
	require.Equal(t, int64(2), rows, "entries without Details store NULL")
}

// TestPostgresCopyRefusedFallsBackToInsert: a table whose id is INTEGER
// (made before the service, not by it) refuses COPY's 8-byte binary id;
// the transaction runs again at once with the INSERT, which casts, and
// nothing is lost or counted as a failure.
func TestPostgresCopyRefusedFallsBackToInsert(t *testing.T) {
	st := freshPostgres(t)
	ctx := context.Background()
	_, err := st.raw.Exec(`CREATE TABLE ` + quote(st.table) + ` (id INTEGER PRIMARY KEY, time TEXT COLLATE "C" NOT NULL,
		event_type TEXT NOT NULL, actor TEXT NOT NULL, resource TEXT NOT NULL DEFAULT '', outcome TEXT NOT NULL DEFAULT '',
		request_id TEXT NOT NULL DEFAULT '', details TEXT, prev_hash TEXT NOT NULL, hash TEXT NOT NULL)`)
	require.NoError(t, err)
	s := st.service(t)
	in := realEntries(8, 300)
	recordAllWithin(t, s, in)
	require.Zero(t, s.stats.copied.Load(), "entries sent by COPY")
	require.Zero(t, s.Stats().Failures)
	sess, err := s.st.session(ctx)
	require.NoError(t, err)
	require.True(t, sess.noCopy.Load())
	rep, err := s.Verify(ctx)
	require.NoError(t, err)
	require.Equal(t, int64(len(in)), rep.Entries)
	got, err := s.Get(ctx, 300)
	require.NoError(t, err)
	require.Equal(t, in[299].RequestID, got.RequestID)
}

// TestPostgresWithoutPgxInserts runs the service on a database/sql
// driver that wraps pgx's but does not expose its connection (as another
// PostgreSQL driver would not): the batches go in by the unnest INSERT.
func TestPostgresWithoutPgxInserts(t *testing.T) {
	st := freshPostgres(t)
	ctx := context.Background()
	noCopyOnce.Do(func() { sql.Register("pgx-nocopy", noCopyDriver{st.raw.Driver()}) })
	raw, err := sql.Open("pgx-nocopy", st.dsn)
	require.NoError(t, err)
	defer raw.Close()
	db, err := gorm.Open(postgres.New(postgres.Config{Conn: raw}), &gorm.Config{Logger: gormlogger.Discard})
	require.NoError(t, err)
	s := newServiceAt(t, WithDB(db), WithTable(st.table), WithBatchSize(64))
	in := realEntries(9, 500)
	recordAllWithin(t, s, in)
	require.NoError(t, s.Shutdown(ctx))
	require.Zero(t, s.stats.copied.Load(), "entries sent by COPY")
	require.Equal(t, uint64(len(in)), s.Stats().Written)

	s = st.service(t) // and pgx's own driver reads and verifies them
	rep, err := s.Verify(ctx)
	require.NoError(t, err)
	require.Equal(t, int64(len(in)), rep.Entries)
}

// TestPgCopyOf: pgx's driver connection has a COPY; a type without the
// methods, or with others of the same names, has none.
func TestPgCopyOf(t *testing.T) {
	st := freshPostgres(t)
	conn, err := st.raw.Conn(context.Background())
	require.NoError(t, err)
	defer conn.Close()
	require.NoError(t, conn.Raw(func(dc any) error {
		require.NotNil(t, pgCopyOf(dc), "pgx's %T", dc)
		return nil
	}))
	for _, v := range []any{struct{}{}, noCopyConn{}, wrongConn{}, &wrongConn{}} {
		require.Nil(t, pgCopyOf(v), "%T", v)
	}
}

// recordAllWithin is recordAll with its Flush bounded: where the writer
// cannot write, it retries for ever.
func recordAllWithin(t *testing.T, s *AuditService, in []Entry) {
	t.Helper()
	ctx := context.Background()
	for _, e := range in {
		require.NoError(t, s.Record(ctx, e))
	}
	ctx, cancel := context.WithTimeout(ctx, cleanupWithin)
	defer cancel()
	require.NoError(t, s.Flush(ctx), "the entries commit")
}

// wrongConn has a Conn method of another shape.
type wrongConn struct{}

func (wrongConn) Conn() int { return 0 }

var noCopyOnce sync.Once

// noCopyDriver is pgx's database/sql driver behind connections that hide
// pgx's (noCopyConn).
type noCopyDriver struct{ driver.Driver }

func (d noCopyDriver) Open(name string) (driver.Conn, error) {
	c, err := d.Driver.Open(name)
	if err != nil {
		return nil, err
	}
	return noCopyConn{c}, nil
}

// noCopyConn forwards what database/sql uses of a pgx connection, and no
// Conn method.
type noCopyConn struct{ c driver.Conn }

func (c noCopyConn) Prepare(q string) (driver.Stmt, error) { return c.c.Prepare(q) }
func (c noCopyConn) Close() error                          { return c.c.Close() }
func (c noCopyConn) Begin() (driver.Tx, error) {
	return c.BeginTx(context.Background(), driver.TxOptions{})
}
func (c noCopyConn) BeginTx(ctx context.Context, o driver.TxOptions) (driver.Tx, error) {
	return c.c.(driver.ConnBeginTx).BeginTx(ctx, o)
}
func (c noCopyConn) PrepareContext(ctx context.Context, q string) (driver.Stmt, error) {
	return c.c.(driver.ConnPrepareContext).PrepareContext(ctx, q)
}
func (c noCopyConn) ExecContext(ctx context.Context, q string, args []driver.NamedValue) (driver.Result, error) {
	return c.c.(driver.ExecerContext).ExecContext(ctx, q, args)
}
func (c noCopyConn) QueryContext(ctx context.Context, q string, args []driver.NamedValue) (driver.Rows, error) {
	return c.c.(driver.QueryerContext).QueryContext(ctx, q, args)
}
func (c noCopyConn) CheckNamedValue(v *driver.NamedValue) error {
	return c.c.(driver.NamedValueChecker).CheckNamedValue(v)
}
func (c noCopyConn) ResetSession(ctx context.Context) error {
	if r, ok := c.c.(driver.SessionResetter); ok {
		return r.ResetSession(ctx)
	}
	return nil
}
func (c noCopyConn) IsValid() bool {
	v, ok := c.c.(driver.Validator)
	return !ok || v.IsValid()
}
func (c noCopyConn) Ping(ctx context.Context) error {
	if p, ok := c.c.(driver.Pinger); ok {
		return p.Ping(ctx)
	}
	return nil
}
