package audit

import (
	"context"
	"encoding/json"
	"testing"

	"github.com/cleveragents/audit/internal/testutil"
	"github.com/stretchr/testify/require"
	"gorm.io/gorm"
	gormlogger "gorm.io/gorm/logger"
)

// BenchmarkRealisticIngestPostgres is BenchmarkRealisticIngest on the
// PostgreSQL server of AUDIT_TEST_POSTGRES_DSN (skipped without one): the
// same cases, rounds and entries, each on a fresh table, and realCeiling,
// the writer alone at sync mode's 64-entry transactions, which sync mode
// is measured against (x-ceiling). Ingest says nothing on a server with
// fsync=off (as CI's is): give it one with fsync on.
func BenchmarkRealisticIngestPostgres(b *testing.B) {
	n := realEnvInt(b, "AUDIT_REALISTIC_N", 100_000)
	entries := realEntries(1, n)
	realPostmaster = realFindPostmaster(b, postgresDSN(b))
	defer func() { realPostmaster = "" }()
	realRunIngest(b, entries, false, []realCase{
		{"hand", realHandPostgres, n},
		{"naive/callers=16", func(b *testing.B, es []Entry) float64 { return realNaivePostgres(b, es, 16) }, min(n, 4*realNaiveN)},
		{"async/callers=16", func(b *testing.B, es []Entry) float64 { return realLibraryPostgres(b, es, 16, WithAsync(true)) }, n},
		{"naive/callers=64", func(b *testing.B, es []Entry) float64 { return realNaivePostgres(b, es, 64) }, min(n, 2*realSyncN)},
		{"sync/callers=64", func(b *testing.B, es []Entry) float64 { return realLibraryPostgres(b, es, 64, WithAsync(false)) }, min(n, 2*realSyncN)},
		{realCeiling, func(b *testing.B, es []Entry) float64 {
			return realLibraryPostgres(b, es, 16, WithAsync(true), WithBatchSize(64))
		}, min(n, 2*realSyncN)},
	})
}

func realLibraryPostgres(b *testing.B, entries []Entry, callers int, opts ...Option) float64 {
	st := freshPostgres(b)
	s := st.service(b, append([]Option{WithLogger(testutil.Discard())}, opts...)...)
	ctx := context.Background()
	_, err := s.Count(ctx, Filter{})
	require.NoError(b, err)
	realCheckpointPostgres(b, st)
	ns := realCallers(b, len(entries), callers, func(i int) error {
		return s.Record(ctx, entries[i])
	}, func() error { return s.Flush(ctx) })
	require.NoError(b, s.Close())
	realDropPostgres(b, st)
	return ns
}

func realNaivePostgres(b *testing.B, entries []Entry, callers int) float64 {
	st := freshPostgres(b)
	db, err := gorm.Open(st.dialector(), &gorm.Config{Logger: gormlogger.Discard})
	require.NoError(b, err)
	defer closeGorm(db)
	require.NoError(b, db.Table(st.table).AutoMigrate(&naiveRow{}))
	realCheckpointPostgres(b, st)
	defer realDropPostgres(b, st)
	return realCallers(b, len(entries), callers, func(i int) error {
		e := entries[i]
		details, err := json.Marshal(e.Details)
		if err != nil {
			return err
		}
		return db.Table(st.table).Create(&naiveRow{
			Time: e.Time.UTC().Format(timeLayout), EventType: e.EventType, Actor: e.Actor,
			Resource: e.Resource, Outcome: e.Outcome, RequestID: e.RequestID, Details: string(details),
		}).Error
	}, nil)
}

// realHandPostgres is realHand on PostgreSQL: the same table and indexes
// (time in the "C" collation, as the library's), a 1024-row multi-row
// INSERT per transaction through pgx's database/sql driver.
func realHandPostgres(b *testing.B, entries []Entry) float64 {
	ctx := context.Background()
	st := freshPostgres(b)
	t := quote(st.table)
	for _, stmt := range []string{
		`CREATE TABLE ` + t + ` (id BIGINT PRIMARY KEY, time TEXT COLLATE "C" NOT NULL, event_type TEXT NOT NULL,
			actor TEXT NOT NULL, resource TEXT NOT NULL, outcome TEXT NOT NULL, request_id TEXT NOT NULL,
			details TEXT, prev_hash TEXT NOT NULL, hash TEXT NOT NULL)`,
		`CREATE INDEX ON ` + t + ` (actor, time)`,
		`CREATE INDEX ON ` + t + ` (event_type, time)`,
		`CREATE INDEX ON ` + t + ` (time)`,
	} {
		_, err := st.raw.ExecContext(ctx, stmt)
		require.NoError(b, err)
	}
	realCheckpointPostgres(b, st)
	head := "INSERT INTO " + t + " (" + columns + ") VALUES "
	full := perfInsertSQLOf(head, realHandRows, postgresDialect.ph)
	defer realDropPostgres(b, st)
	return realHandLoop(b, entries, func(rows int, args []any) error {
		text := full
		if rows != realHandRows {
			text = perfInsertSQLOf(head, rows, postgresDialect.ph)
		}
		tx, err := st.raw.BeginTx(ctx, nil)
		if err != nil {
			return err
		}
		if _, err := tx.ExecContext(ctx, text, args...); err != nil {
			_ = tx.Rollback()
			return err
		}
		return tx.Commit()
	})
}

// realCheckpointPostgres makes the server write out what the cases before
// left dirty (CHECKPOINT, which needs a superuser or pg_checkpoint),
// outside the timing, as realQuiesce does for files: each case starts with
// no checkpoint of another's WAL due, which would slow whichever ran into it.
func realCheckpointPostgres(b *testing.B, st *backend) {
	b.Helper()
	if _, err := st.raw.Exec("CHECKPOINT"); err != nil {
		b.Logf("CHECKPOINT before the case: %v (the case may run into one)", err)
	}
}

// realDropPostgres drops a case's tables and its rows in the shared ones
// as soon as the case ends, so that no autovacuum of them runs into the
// next case's timing.
func realDropPostgres(b *testing.B, st *backend) {
	b.Helper()
	require.NoError(b, dropLog(st.raw, st.table))
}
