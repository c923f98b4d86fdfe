package audit

import (
	"context"
	"crypto/rand"
	"database/sql"
	"database/sql/driver"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"gorm.io/driver/sqlite"
	"gorm.io/gorm"
)

// sqliteDialect is SQLite, the embedded default (mattn/go-sqlite3 through
// gorm.io/driver/sqlite).
var sqliteDialect = dialect{
	name:      "sqlite",
	ph:        func(int) string { return "?" },
	serialKey: "INTEGER PRIMARY KEY", // the rowid: numbers may be reused once drained, which is harmless
	// id is the rowid, which every index ends with already.
	idType:     "INTEGER",
	timeType:   "TEXT",
	blobType:   "BLOB",
	keyedTable: " WITHOUT ROWID",
	catalog: func(phs string) string {
		return `SELECT COUNT(*) FROM sqlite_master WHERE name COLLATE NOCASE IN (` + phs + `)`
	},
	// SQLite's names are case-insensitive: "Logs" and "logs" are one
	// table and must share one head.
	tableKey: strings.ToLower,
	// BEGIN IMMEDIATE holds the database's only write lock.
	lockHead: "",
	prepare:  sqliteWAL,
	begin:    beginSQLite,
	// On SQLite, compiling a multi-row INSERT costs about as much per row
	// as binding its values: a batch prepares one of sqliteInsertRows rows
	// once and runs it for every full chunk.
	insertRows:    sqliteInsertRows,
	prepareInsert: true,
	autoID:        true,
	insertOr:      " OR FAIL",
	checkpoint:    sqliteCheckpoint,
	isBusy:        sqliteBusy,
	explain:       sqliteExplain,
	indexOwners: func(phs, table string) string {
		return `SELECT name FROM sqlite_master WHERE name COLLATE NOCASE IN (` + phs + `)
	AND NOT (type = 'index' AND tbl_name = ` + table + ` COLLATE NOCASE)`
	},
}

func init() { register(&sqliteDialect, "sqlite", "sqlite3") }

// SQLite settings of the databases that WithSQLite opens. synchronous=FULL
// makes a committed transaction survive power loss, at the price of an
// fsync of the WAL on every commit; batching amortises it.
const (
	sqliteBusyTimeout = 5 * time.Second // readers; and the most a writer waits for the write lock
	// sqliteLockPoll is the busy timeout while the writer waits for the
	// write lock, in a loop that checks its ctx between polls: SQLite's busy
	// handler does not notice an interrupt, and Shutdown must not wait a
	// whole busy timeout after its ctx ended.
	sqliteLockPoll = 50 * time.Millisecond
	// No _journal_mode here: switching a new file to WAL answers
	// SQLITE_BUSY at once, without the busy timeout, when two connections
	// try together; sqliteWAL switches it, retrying.
	// _cache_size is the page cache of each connection, in KiB: a
	// 4096-entry batch of realistic entries dirties some 20-40 MiB of
	// index pages, which must stay in the cache until the commit (a
	// smaller cache spills them to the WAL mid-transaction, and reads
	// them back).
	sqliteParams = "_busy_timeout=5000&_synchronous=FULL&_cache_size=-65536"
	// sqliteCheckpointPages is the WAL size, in pages, past which a
	// commit of the service checkpoints (SQLite's default is 1000): the
	// random index pages that every batch dirties again are written to the
	// database once per 64 MiB of WAL instead of once per batch, and the
	// writer's background checkpoints (walcheckpoint.go) have copied most of
	// them by then. The WAL file is truncated back to sqliteWALLimit after
	// a checkpoint.
	sqliteCheckpointPages = 16384
	sqliteWALLimit        = 64 << 20
	// sqliteInsertRows is the rows per INSERT on SQLite: small enough that
	// compiling it once per batch costs little (a 256-row INSERT took 0.4
	// ms to prepare, 1.6 µs a row), big enough that running it once per
	// chunk does too.
	sqliteInsertRows = 64
)

// openSQLite returns the dialector of WithSQLite's path, and the file to
// watch ("" for an in-memory database; see watch.go).
func openSQLite(path string, readOnly bool) (d gorm.Dialector, file string) {
	dsn, memory := sqliteDSN(path)
	if !memory {
		file = sqliteFile(path)
	}
	if readOnly && !memory {
		dsn = sqliteReadOnlyDSN(path, file)
	}
	return sqlite.Open(dsn), file
}

// sqliteReadOnlyDSN opens file read-only; immutable too when nothing
// beside it says that a writer is at work or a transaction is to be
// recovered, so that reading it creates no file.
func sqliteReadOnlyDSN(path, file string) string {
	params := "mode=ro&_busy_timeout=5000"
	if _, after, ok := strings.Cut(path, "?"); ok {
		params = after + "&" + params
	}
	_, werr := os.Stat(file + "-wal")
	_, jerr := os.Stat(file + "-journal")
	if os.IsNotExist(werr) && os.IsNotExist(jerr) {
		params += "&immutable=1"
	}
	return "file:" + file + "?" + params
}

// sqliteDSN turns WithSQLite's path into a go-sqlite3 DSN with the
// library's settings. ":memory:" becomes a private database of the memdb
// VFS, which every connection of the pool shares without shared cache (and
// so without "table is locked"); a pool over plain ":memory:" would give
// each connection its own empty database.
func sqliteDSN(path string) (dsn string, memory bool) {
	if path == ":memory:" {
		var b [8]byte
		_, _ = rand.Read(b[:])
		return "file:/audit-" + hex.EncodeToString(b[:]) + "?vfs=memdb&_busy_timeout=5000", true
	}
	sep := "?"
	if strings.Contains(path, "?") {
		sep = "&"
	}
	return path + sep + sqliteParams, false
}

// sqliteFile returns the file that a WithSQLite path names: the path
// without its "file:" scheme and "?parameters".
func sqliteFile(path string) string {
	path, _, _ = strings.Cut(path, "?")
	return strings.TrimPrefix(path, "file:")
}

func beginSQLite(ctx context.Context, db *sql.DB) (writeTxn, error) {
	conn, err := db.Conn(ctx)
	if err != nil {
		return nil, fmt.Errorf("connect: %w", err)
	}
	if err := beginImmediate(ctx, conn); err != nil {
		// An interrupted BEGIN may have begun all the same: a connection
		// that could hold the write lock must not go back to the pool.
		discardConn(conn)
		_ = conn.Close()
		return nil, err
	}
	return &sqliteTxn{Conn: conn, ctx: context.WithoutCancel(ctx)}, nil
}

// sqliteTxn is a write transaction on SQLite: a connection inside BEGIN
// IMMEDIATE, which holds the write lock from its first statement, so that
// it never fails upgrading a read lock to a write lock.
type sqliteTxn struct {
	*sql.Conn
	ctx context.Context // for COMMIT and ROLLBACK, which must run to their end
}

// commit runs COMMIT to its end whatever ctx does: an interrupted COMMIT
// would leave it unknown whether the batch committed. The transaction
// holds the write lock, so it waits for nothing but the disk.
func (t *sqliteTxn) commit() error {
	defer t.Close()
	if _, err := t.ExecContext(t.ctx, "COMMIT"); err != nil {
		t.end()
		return fmt.Errorf("commit: %w", err)
	}
	return nil
}

func (t *sqliteTxn) rollback() {
	defer t.Close()
	t.end()
}

// end rolls back; a connection that cannot roll back must not go back to
// the pool mid-transaction.
func (t *sqliteTxn) end() {
	if _, err := t.ExecContext(t.ctx, "ROLLBACK"); err != nil {
		discardConn(t.Conn)
	}
}

// beginImmediate takes SQLite's write lock, waiting for it at most
// sqliteBusyTimeout and never long past ctx's end.
func beginImmediate(ctx context.Context, conn *sql.Conn) error {
	// One call for the three settings: they are per connection, and the
	// pool may give the writer any of its connections.
	if _, err := conn.ExecContext(ctx, "PRAGMA busy_timeout = "+strconv.Itoa(int(sqliteLockPoll/time.Millisecond))+
		"; PRAGMA wal_autocheckpoint = "+strconv.Itoa(sqliteCheckpointPages)+
		"; PRAGMA journal_size_limit = "+strconv.Itoa(sqliteWALLimit)); err != nil {
		return fmt.Errorf("set busy timeout: %w", err)
	}
	defer conn.ExecContext(context.WithoutCancel(ctx), "PRAGMA busy_timeout = "+strconv.Itoa(int(sqliteBusyTimeout/time.Millisecond))) //nolint:errcheck // best effort: a pooled reader keeps a short timeout at worst
	deadline := time.Now().Add(sqliteBusyTimeout)
	for {
		_, err := conn.ExecContext(ctx, "BEGIN IMMEDIATE")
		if err == nil {
			return nil
		}
		if !sqliteBusy(err) || ctx.Err() != nil || time.Now().After(deadline) {
			return fmt.Errorf("begin immediate: %w", err)
		}
	}
}

// discardConn makes database/sql drop conn instead of pooling it.
func discardConn(conn *sql.Conn) {
	_ = conn.Raw(func(any) error { return driver.ErrBadConn })
}

// sqliteWAL switches the file to WAL, which lets readers run beside the
// writer. It is a property of the file, so it is set even on a database
// the caller opened; a memdb database keeps its own journal mode. It
// retries while the database is busy, for at most the busy timeout.
func sqliteWAL(ctx context.Context, db *sql.DB) error {
	var mode string
	if err := db.QueryRowContext(ctx, "PRAGMA journal_mode").Scan(&mode); err != nil {
		return fmt.Errorf("read journal_mode: %w", err)
	}
	if mode == "wal" || mode == "memory" {
		return nil
	}
	deadline := time.Now().Add(sqliteBusyTimeout)
	for {
		err := db.QueryRowContext(ctx, "PRAGMA journal_mode = WAL").Scan(&mode)
		switch {
		case err == nil && mode == "wal":
			return nil
		case err == nil:
			return fmt.Errorf("set journal_mode WAL: the database stays in %q mode", mode)
		case !sqliteBusy(err) || time.Now().After(deadline) || !sleep(sqliteLockPoll, ctx.Done()):
			return fmt.Errorf("set journal_mode WAL: %w", err)
		}
	}
}

// sqliteExplain names the causes of a SQLite failure that retrying cannot
// fix (see permanent.go), looking at the file of WithSQLite where there is
// one, and at SQLite's message (the same with and without cgo).
func sqliteExplain(file string, err error) error {
	if !sqliteCgo && strings.Contains(err.Error(), "cgo") {
		return permanent(err, "WithSQLite opens SQLite with mattn/go-sqlite3, a cgo package: build with CGO_ENABLED=1 and a C compiler, or pass a pure-Go SQLite driver (github.com/glebarez/sqlite; README: SQLite without cgo) or PostgreSQL through WithDialector",
			"SQLite needs cgo, and this program was built with CGO_ENABLED=0")
	}
	if file != "" {
		fi, serr := os.Stat(file)
		switch {
		case serr == nil && fi.IsDir():
			return permanent(err, "WithSQLite needs the path of a file, which it creates if missing", "the path is a directory")
		case errors.Is(serr, fs.ErrNotExist) || errors.Is(serr, syscall.ENOTDIR):
			dir := filepath.Dir(file)
			di, derr := os.Stat(dir)
			switch {
			case derr != nil && (errors.Is(derr, fs.ErrNotExist) || errors.Is(derr, syscall.ENOTDIR)):
				return permanent(err, "create it, or correct WithSQLite's path: the library does not create directories", "the directory does not exist: %q", dir)
			case derr == nil && !di.IsDir():
				return permanent(err, "correct WithSQLite's path", "the directory %q is not a directory", dir)
			}
		}
	}
	// The callers name the database: the causes below need not.
	msg := err.Error()
	switch {
	case strings.Contains(msg, "file is not a database"):
		return permanent(err, "point WithSQLite at the audit log's file, or move this file out of the way", "the file is not a database")
	case strings.Contains(msg, "readonly database"):
		return permanent(err, "make the file, its directory and its -wal and -shm files writable by this process, and do not open it with mode=ro; to only read a log, use auditctl's read commands",
			"the database is read-only")
	case strings.Contains(msg, "unable to open database file") && strings.Contains(msg, "permission denied"):
		return permanent(err, "make the file and its directory readable and writable by this process", "permission denied")
	}
	return nil
}
