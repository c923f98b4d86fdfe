package audit

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"database/sql"
	"database/sql/driver"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/mattn/go-sqlite3"
	"gorm.io/driver/sqlite"
	"gorm.io/gorm"
	gormlogger "gorm.io/gorm/logger"
)

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
	// try together; migrate switches it, retrying.
	sqliteParams = "_busy_timeout=5000&_synchronous=FULL"
)

// session is the opened database and everything derived from it. It is
// immutable once stored in AuditService.sess.
type session struct {
	db    *gorm.DB
	sqlDB *sql.DB
	d     dialect
	owned bool      // the service opened it: Shutdown closes it
	keep  *sql.Conn // holds a shared in-memory database alive; nil otherwise
	q     queries
	tree  *treeSession // the Merkle tree (treeopen.go); set by open // HOOK(merkle)

	path string      // the SQLite file that WithSQLite opened; see watch.go
	file os.FileInfo // its identity when opened; nil when not watched
}

// session returns the open database, opening it on first use. The fast path
// is one atomic load; the slow path re-checks under openMu, so that however
// many goroutines arrive together the database is opened exactly once. A
// failure is returned and counted, not cached: the next call tries again.
func (s *AuditService) session(ctx context.Context) (*session, error) {
	if sess := s.sess.Load(); sess != nil {
		return sess, nil
	}
	s.openMu.Lock()
	defer s.openMu.Unlock()
	if sess := s.sess.Load(); sess != nil {
		return sess, nil
	}
	if s.dbClosed {
		return nil, ErrClosed
	}
	sess, err := s.open(ctx)
	if err != nil {
		s.failures.Add(1)
		s.log.Warn("audit: open database failed; the next call retries", "err", err)
		return nil, fmt.Errorf("open database: %w", err)
	}
	s.sess.Store(sess)
	select {
	case <-s.opened: // reopened after the file was replaced (watch.go)
	default:
		close(s.opened)
	}
	return sess, nil
}

// open opens the database (one gorm.Open), creates the schema if missing
// and returns the session.
func (s *AuditService) open(ctx context.Context) (*session, error) {
	sess := &session{db: s.cfg.db}
	var memory, watched bool
	if sess.db == nil {
		d := s.cfg.dialector
		if d == nil {
			var dsn string
			dsn, memory = sqliteDSN(s.cfg.sqlitePath)
			watched = !memory
			d = sqlite.Open(dsn)
		}
		// GORM's own logger is silenced: the service logs every failure
		// itself, through its logger, with the operation that failed.
		gcfg := &gorm.Config{Logger: gormlogger.Discard, SkipDefaultTransaction: true}
		db, err := gorm.Open(d, gcfg)
		if err != nil {
			closeGorm(db)
			return nil, err
		}
		sess.db, sess.owned = db, true
	}
	sqlDB, err := sess.db.DB()
	if err != nil {
		return nil, s.abandonOpen(sess, err)
	}
	sess.sqlDB = sqlDB
	sess.d, _ = dialectFor(sess.db.Dialector.Name()) // checked in New
	sess.q = newQueries(sess.d, s.cfg.table)
	if memory {
		// A shared in-memory database lives while a connection is open.
		if sess.keep, err = sqlDB.Conn(ctx); err != nil {
			return nil, s.abandonOpen(sess, err)
		}
	}
	if err := s.migrate(ctx, sess); err != nil {
		return nil, s.abandonOpen(sess, fmt.Errorf("create schema: %w", err))
	}
	if s.carry != nil {
		// The file was deleted or replaced: continue the chain here.
		if err := s.continueChain(ctx, sess, s.carry); err != nil {
			return nil, s.abandonOpen(sess, fmt.Errorf("continue the chain in the new file: %w", err))
		}
		s.carry = nil
	}
	s.openTree(ctx, sess) // HOOK(merkle): build the tree of an older log, check the chain key
	if watched {
		// Taken after the schema exists, so the file does too.
		if sess.file, err = os.Stat(s.cfg.sqlitePath); err != nil {
			return nil, s.abandonOpen(sess, err)
		}
		sess.path = s.cfg.sqlitePath
	}
	return sess, nil
}

func (s *AuditService) abandonOpen(sess *session, err error) error {
	if cerr := sess.close(); cerr != nil {
		err = errors.Join(err, cerr)
	}
	return err
}

// close releases what the session holds; it closes the database only if
// the service opened it.
func (sess *session) close() error {
	var err error
	if sess.keep != nil {
		err = sess.keep.Close()
	}
	if sess.owned {
		closeGorm(sess.db)
	}
	return err
}

func closeGorm(db *gorm.DB) {
	if db == nil || db.ConnPool == nil {
		return
	}
	if sqlDB, err := db.DB(); err == nil {
		_ = sqlDB.Close()
	}
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

// dialect is what differs between the supported databases.
type dialect struct {
	name     string
	postgres bool
}

func dialectFor(name string) (dialect, bool) {
	switch name {
	case "sqlite", "sqlite3":
		return dialect{name: "sqlite"}, true
	case "postgres", "pgx":
		return dialect{name: "postgres", postgres: true}, true
	}
	return dialect{}, false
}

// ph returns the placeholder of the n-th (1-based) argument.
func (d dialect) ph(n int) string {
	if d.postgres {
		return "$" + strconv.Itoa(n)
	}
	return "?"
}

// execer is what a write transaction runs its statements on: a *sql.Conn
// inside BEGIN IMMEDIATE on SQLite, a *sql.Tx on PostgreSQL.
type execer interface {
	ExecContext(ctx context.Context, query string, args ...any) (sql.Result, error)
	QueryContext(ctx context.Context, query string, args ...any) (*sql.Rows, error)
	QueryRowContext(ctx context.Context, query string, args ...any) *sql.Row
}

// writeTx runs fn in a write transaction and commits it. It is the one
// owner of write transactions: the writer's batches, Prune's chunks and the
// schema all go through it, one at a time per service (writeMu).
//
// On SQLite it takes the write lock up front (BEGIN IMMEDIATE), so a
// transaction never fails upgrading a read lock to a write lock, and it
// polls for the lock while checking ctx, up to the busy timeout.
func (s *AuditService) writeTx(ctx context.Context, sess *session, fn func(tx execer) error) error {
	s.writeMu.Lock()
	defer s.writeMu.Unlock()
	if sess.d.postgres {
		tx, err := sess.sqlDB.BeginTx(ctx, nil)
		if err != nil {
			return fmt.Errorf("begin: %w", err)
		}
		if _, err := tx.ExecContext(ctx, "SET LOCAL lock_timeout = '5s'"); err != nil {
			_ = tx.Rollback()
			return fmt.Errorf("set lock_timeout: %w", err)
		}
		if err := fn(tx); err != nil {
			_ = tx.Rollback()
			return err
		}
		if err := tx.Commit(); err != nil {
			return fmt.Errorf("commit: %w", err)
		}
		return nil
	}

	conn, err := sess.sqlDB.Conn(ctx)
	if err != nil {
		return fmt.Errorf("connect: %w", err)
	}
	defer conn.Close()
	if err := beginImmediate(ctx, conn); err != nil {
		// An interrupted BEGIN may have begun all the same: a connection
		// that could hold the write lock must not go back to the pool.
		discardConn(conn)
		return err
	}
	if err := fn(conn); err != nil {
		// The rollback must run even though ctx may be done; a connection
		// that cannot roll back must not go back to the pool mid-transaction.
		if _, rerr := conn.ExecContext(context.WithoutCancel(ctx), "ROLLBACK"); rerr != nil {
			discardConn(conn)
		}
		return err
	}
	// COMMIT runs to its end whatever ctx does: an interrupted COMMIT would
	// leave it unknown whether the batch committed. We hold the write lock,
	// so it waits for nothing but the disk.
	if _, err := conn.ExecContext(context.WithoutCancel(ctx), "COMMIT"); err != nil {
		if _, rerr := conn.ExecContext(context.WithoutCancel(ctx), "ROLLBACK"); rerr != nil {
			discardConn(conn)
		}
		return fmt.Errorf("commit: %w", err)
	}
	return nil
}

// beginImmediate takes SQLite's write lock, waiting for it at most
// sqliteBusyTimeout and never long past ctx's end.
func beginImmediate(ctx context.Context, conn *sql.Conn) error {
	if _, err := conn.ExecContext(ctx, "PRAGMA busy_timeout = "+strconv.Itoa(int(sqliteLockPoll/time.Millisecond))); err != nil {
		return fmt.Errorf("set busy timeout: %w", err)
	}
	defer conn.ExecContext(context.WithoutCancel(ctx), "PRAGMA busy_timeout = "+strconv.Itoa(int(sqliteBusyTimeout/time.Millisecond))) //nolint:errcheck // best effort: a pooled reader keeps a short timeout at worst
	deadline := time.Now().Add(sqliteBusyTimeout)
	for {
		_, err := conn.ExecContext(ctx, "BEGIN IMMEDIATE")
		if err == nil {
			return nil
		}
		if !isBusy(err) || ctx.Err() != nil || time.Now().After(deadline) {
			return fmt.Errorf("begin immediate: %w", err)
		}
	}
}

func isBusy(err error) bool {
	var se sqlite3.Error
	return errors.As(err, &se) && (se.Code == sqlite3.ErrBusy || se.Code == sqlite3.ErrLocked)
}

// discardConn makes database/sql drop conn instead of pooling it.
func discardConn(conn *sql.Conn) {
	_ = conn.Raw(func(any) error { return driver.ErrBadConn })
}

// migrate creates the table, its indexes and the chain head row if missing.
// It is idempotent and safe when several services start together.
func (s *AuditService) migrate(ctx context.Context, sess *session) error {
	if !sess.d.postgres {
		// WAL lets readers run beside the writer. It is a property of the
		// file, so set it even on a database the caller opened; a memdb
		// database keeps its own journal mode.
		var mode string
		if err := sess.sqlDB.QueryRowContext(ctx, "PRAGMA journal_mode").Scan(&mode); err != nil {
			return fmt.Errorf("read journal_mode: %w", err)
		}
		if mode != "wal" && mode != "memory" {
			if err := setWAL(ctx, sess.sqlDB); err != nil {
				return err
			}
		}
	}
	if s.schemaReady(ctx, sess) {
		return nil // nothing to create: opening takes no write lock
	}
	return s.writeTx(ctx, sess, func(tx execer) error {
		if sess.d.postgres {
			// Concurrent CREATE ... IF NOT EXISTS can fail on PostgreSQL's
			// catalog; services starting together take turns instead.
			if _, err := tx.ExecContext(ctx, "SELECT pg_advisory_xact_lock($1)", schemaLockKey); err != nil {
				return fmt.Errorf("lock schema: %w", err)
			}
		}
		for _, stmt := range sess.q.schema {
			if _, err := tx.ExecContext(ctx, stmt); err != nil {
				return fmt.Errorf("%s: %w", firstWords(stmt), err)
			}
		}
		if _, err := tx.ExecContext(ctx, sess.q.initHead, sess.q.key); err != nil {
			return fmt.Errorf("init chain head: %w", err)
		}
		return nil
	})
}

// schemaLockKey is the advisory lock that serialises schema creation on
// PostgreSQL: a fixed key, the same in every process of this library.
const schemaLockKey int64 = 0x3c1d6a5e2b4f7a19

// schemaReady reports, reading only, whether the table, its indexes and
// its chain head row all exist already. Any error means "not known to be
// ready": migrate then creates what is missing.
func (s *AuditService) schemaReady(ctx context.Context, sess *session) bool {
	args := make([]any, len(sess.q.objects))
	for i, o := range sess.q.objects {
		args[i] = o
	}
	var objects, heads int
	if err := sess.sqlDB.QueryRowContext(ctx, sess.q.objCount, args...).Scan(&objects); err != nil || objects != len(args) {
		return false
	}
	err := sess.sqlDB.QueryRowContext(ctx, sess.q.headCount, sess.q.key).Scan(&heads)
	return err == nil && heads == 1
}

// setWAL switches the database to WAL, retrying while it is busy, for at
// most the busy timeout.
func setWAL(ctx context.Context, db *sql.DB) error {
	deadline := time.Now().Add(sqliteBusyTimeout)
	for {
		var mode string
		err := db.QueryRowContext(ctx, "PRAGMA journal_mode = WAL").Scan(&mode)
		switch {
		case err == nil && mode == "wal":
			return nil
		case err == nil:
			return fmt.Errorf("set journal_mode WAL: the database stays in %q mode", mode)
		case !isBusy(err) || time.Now().After(deadline) || !sleep(sqliteLockPoll, ctx.Done()):
			return fmt.Errorf("set journal_mode WAL: %w", err)
		}
	}
}

func firstWords(stmt string) string {
	if i := strings.Index(stmt, "("); i > 0 {
		return strings.TrimSpace(stmt[:i])
	}
	return stmt
}

// ident returns name+suffix, shortened with a hash of name where it would
// pass PostgreSQL's 63-byte limit on identifiers.
func ident(name, suffix string) string {
	if len(name)+len(suffix) <= 63 {
		return name + suffix
	}
	sum := sha256.Sum256([]byte(name))
	return name[:63-len(suffix)-9] + "_" + hex.EncodeToString(sum[:4]) + suffix
}

func quote(id string) string { return `"` + id + `"` }
