package audit

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"strconv"
)

// postgresDialect is PostgreSQL (gorm.io/driver/postgres, over pgx), which
// users pass in with WithDialector or WithDB: the package never imports
// its driver.
var postgresDialect = dialect{
	name: "postgres",
	ph:   func(n int) string { return "$" + strconv.Itoa(n) },
	// Indexes name id, and time compares byte-wise (the "C" collation),
	// as the fixed-width text needs.
	serialKey:   "BIGSERIAL PRIMARY KEY",
	idType:      "BIGINT",
	indexSuffix: ", id",
	// hashtextextended (PostgreSQL 11 on) is the hash of hash partitions
	// and hash indexes, which pg_upgrade keeps: it has not changed since,
	// though no document promises it never will. Were it to change, an
	// index built before would miss rows until a REINDEX; the text is
	// compared as well only against collisions. Seed 0.
	hashKey:  func(text string) string { return "hashtextextended(" + text + ", 0)" },
	timeType: `TEXT COLLATE "C"`,
	blobType: "BYTEA",
	catalog: func(phs string) string {
		return `SELECT COUNT(*) FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
	WHERE n.nspname = current_schema() AND c.relname IN (` + phs + `)`
	},
	tableKey: func(table string) string { return table },
	// Several processes write one table: the head row's lock is what
	// keeps one chain.
	lockHead: " FOR UPDATE",
	// Concurrent CREATE ... IF NOT EXISTS can fail on PostgreSQL's
	// catalog; services starting together take turns instead.
	lockSchema: func(ctx context.Context, tx execer) error {
		if _, err := tx.ExecContext(ctx, "SELECT pg_advisory_xact_lock($1)", schemaLockKey); err != nil {
			return fmt.Errorf("lock schema: %w", err)
		}
		return nil
	},
	begin:    beginPostgres,
	readOpts: &sql.TxOptions{Isolation: sql.LevelRepeatableRead, ReadOnly: true},
	// PostgreSQL's driver caches statements by their text, and fewer,
	// bigger statements save round trips.
	insertRows: insertChunk,
	// A batch is one COPY where the driver is pgx's (pgcopy.go), and
	// otherwise one INSERT of an array per column: pgx sends each array
	// as one binary parameter, and the statement's text does not depend
	// on the batch's size, so that it is prepared once per connection.
	insertColumns: func(table string) string {
		return `INSERT INTO ` + table + ` (` + columns + `) SELECT * FROM unnest($1::bigint[], $2::text[], $3::text[], $4::text[],
	$5::text[], $6::text[], $7::text[], $8::text[], $9::text[], $10::text[])`
	},
	isBusy: func(error) bool { return false },
	// The writer's transactions are READ COMMITTED (beginPostgres), so a
	// wait for the head row's lock does not end in a serialization
	// failure; one that happens anyway (a deadlock, or a pooler that
	// begins the transaction its own way) runs the transaction again at
	// once, with a fresh head; so does one whose COPY the table refused
	// (pgcopy.go), with an INSERT.
	retryNow: func(err error) bool {
		if errors.Is(err, errCopyRefused) {
			return true
		}
		switch sqlState(err) {
		case "40001", "40P01": // serialization_failure, deadlock_detected
			return true
		}
		return false
	},
	explain: func(_ string, err error) error {
		if sqlState(err) == "25006" { // read_only_sql_transaction: a standby, or default_transaction_read_only
			return permanent(err, "point the dialector at the primary, or turn default_transaction_read_only off for its role or database",
				"the database is read-only")
		}
		return nil
	},
	indexOwners: func(phs, table string) string {
		return `SELECT c.relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
	LEFT JOIN pg_index i ON i.indexrelid = c.oid LEFT JOIN pg_class t ON t.oid = i.indrelid
	WHERE n.nspname = current_schema() AND c.relname IN (` + phs + `) AND t.relname IS DISTINCT FROM ` + table
	},
}

// sqlState returns the SQLSTATE of a PostgreSQL error (pgx's
// *pgconn.PgError has the method; the package does not import pgx), or "".
func sqlState(err error) string {
	var se interface{ SQLState() string }
	if errors.As(err, &se) {
		return se.SQLState()
	}
	return ""
}

func init() { register(&postgresDialect, "postgres", "pgx") }

// schemaLockKey is the advisory lock that serialises schema creation on
// PostgreSQL: a fixed key, the same in every process of this library.
const schemaLockKey int64 = 0x3c1d6a5e2b4f7a19

// postgresLockTimeout bounds a writer's wait for a row lock, so that a
// stuck transaction elsewhere is counted as a failure and retried.
const postgresLockTimeout = "5s"

// beginPostgres begins a write transaction READ COMMITTED, whatever the
// database's default_transaction_isolation: every write transaction that
// reads the log's state takes the chain head's row lock first (appendChain,
// moveOutbox, pruneUpTo, buildTree, initTreeHead), and under READ COMMITTED
// each statement after it sees what the lock's last holder committed.
// Under SERIALIZABLE or REPEATABLE READ a writer that waited for the lock
// would fail once it got it (retryNow) and run again, and with several
// services on one table and slow commits it could lose that race the
// whole immediateRetries times.
func beginPostgres(ctx context.Context, db *sql.DB) (writeTxn, error) {
	conn, err := db.Conn(ctx)
	if err != nil {
		return nil, fmt.Errorf("begin: %w", err)
	}
	tx, err := conn.BeginTx(ctx, &sql.TxOptions{Isolation: sql.LevelReadCommitted})
	if err != nil {
		conn.Close()
		return nil, fmt.Errorf("begin: %w", err)
	}
	if _, err := tx.ExecContext(ctx, "SET LOCAL lock_timeout = '"+postgresLockTimeout+"'"); err != nil {
		_ = tx.Rollback()
		conn.Close()
		return nil, fmt.Errorf("set lock_timeout: %w", err)
	}
	return pgTxn{tx, conn}, nil
}

// pgTxn is a write transaction on PostgreSQL, on a connection of its own
// so that the batch's COPY (pgcopy.go) reaches the driver's.
type pgTxn struct {
	*sql.Tx
	conn *sql.Conn
}

func (t pgTxn) commit() error {
	err := t.Commit()
	t.conn.Close()
	return err
}

func (t pgTxn) rollback() {
	_ = t.Rollback()
	t.conn.Close()
}
