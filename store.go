package audit

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"sync"
	"sync/atomic"

	"gorm.io/gorm"
	gormlogger "gorm.io/gorm/logger"
)

// store owns the service's database: the lazy session, and the write
// transactions on it. Every method is safe for concurrent use.
type store struct {
	cfg      *config
	log      *slog.Logger
	failures *atomic.Uint64 // the service's Stats.Failures
	hooks    storeHooks     // what the service does at points of the store's work

	// sess is the open session: the fast path of session, one atomic load.
	sess atomic.Pointer[session]

	mu     sync.Mutex // protects the fields below, and serialises opening and closing sessions
	closed bool       // Shutdown closed the store: no reopening
	carry  *chainHead // the head of a replaced file, for the next open to continue (watch.go)

	writeMu sync.Mutex // serialises this service's write transactions (the writer's batches, Prune's chunks, the schema)
}

// storeHooks are the service's parts of the store's work, set by New.
type storeHooks struct {
	// leftovers is called when a session opens on a log whose outbox
	// holds rows (a crash left them, or another service's RecordTx).
	leftovers func()
	// openTree builds the Merkle tree of an older log and checks the
	// chain key (treeopen.go), once a session's schema is ready.
	openTree func(ctx context.Context, sess *session)
	// carryTree reads the tree of a file that was replaced, and
	// continueTree writes it into the new file (watch.go, treeopen.go).
	carryTree    func(ctx context.Context, sess *session) *treeCarry
	continueTree func(ctx context.Context, tx execer, sess *session, c *treeCarry, lastID int64, lastHash string) error
}

// session is the opened database and everything derived from it. Its
// fields above mu never change once it is stored in store.sess.
type session struct {
	db    *gorm.DB
	sqlDB *sql.DB
	d     *dialect
	q     queries
	owned bool      // the service opened it: closing the store closes it
	keep  *sql.Conn // holds a shared in-memory database alive; nil otherwise
	file  string    // the SQLite file that WithSQLite opened, watched (watch.go); "" otherwise
	ident os.FileInfo
	logID string       // the log's id (outbox.go)
	tree  *treeSession // the Merkle tree (treeopen.go)
	// fault is what checkSchema found wrong when the session opened, until
	// the writer finds it fixed; nil when nothing was.
	fault atomic.Pointer[error]
	// get is Get's query, prepared once: database/sql prepares it again
	// on each connection of the pool the first time it runs there.
	get *sql.Stmt
	// explicitIDs is set once an INSERT without ids numbered its rows
	// otherwise than the chain (see appendChain): the writer names them
	// from then on.
	explicitIDs atomic.Bool
	// noCopy is set once the table refused the batch's COPY in the binary
	// format (a column of another type than the library's, see
	// appendCopy): the writer inserts with insertCols from then on.
	noCopy atomic.Bool
	// stmts holds List's and Count's queries, prepared on first use: one
	// per combination of Filter fields at most (a few hundred).
	stmts sync.Map // query text -> *sql.Stmt

	users gate // the calls using it now (store.use); closed when it is retired
}

// session returns the open database, opening it on first use. The fast
// path is one atomic load; the slow path re-checks under mu, so that
// however many goroutines arrive together the database is opened exactly
// once. A failure is returned and counted, not cached: the next call tries
// again.
func (st *store) session(ctx context.Context) (*session, error) {
	if sess := st.sess.Load(); sess != nil {
		return sess, nil
	}
	st.mu.Lock()
	defer st.mu.Unlock()
	if sess := st.sess.Load(); sess != nil {
		return sess, nil
	}
	if st.closed {
		return nil, ErrClosed
	}
	sess, err := st.open(ctx)
	if err != nil {
		st.failures.Add(1)
		err = st.explain(ctx, nil, err)
		if isPermanent(err) {
			st.log.Error("audit: open database failed, and retrying cannot help until the cause is fixed (see err); the next call retries",
				"database", st.cfg.databaseName(), "err", err)
		} else {
			st.log.Warn("audit: open database failed; the next call retries", "database", st.cfg.databaseName(), "err", err)
		}
		return nil, fmt.Errorf("open database %s: %w", st.cfg.databaseName(), err)
	}
	st.sess.Store(sess)
	return sess, nil
}

// use returns the session for a call that uses it until it calls release:
// closing the store, or retiring a replaced file, waits for it.
func (st *store) use(ctx context.Context) (sess *session, release func(), err error) {
	for {
		if sess, err = st.session(ctx); err != nil {
			return nil, nil, err
		}
		if sess.acquire() {
			return sess, sess.release, nil
		}
		// Retired between the load and acquire: it is no longer in
		// st.sess, and the next round finds its successor (or closed).
	}
}

func (sess *session) acquire() bool { return sess.users.enter() }
func (sess *session) release()      { sess.users.leave() }

// retire refuses new users and returns a channel closed once the last user
// has released the session.
func (sess *session) retire() <-chan struct{} {
	sess.users.close()
	return sess.users.idle
}

// open opens the database (one gorm.Open), creates the schema if missing
// and returns the session. st.mu is held.
func (st *store) open(ctx context.Context) (*session, error) {
	sess := &session{db: st.cfg.db, users: newGate()}
	if sess.db == nil {
		d := st.cfg.dialector
		if d == nil {
			d, sess.file = openSQLite(st.cfg.sqlitePath, st.cfg.readOnly)
		}
		// GORM's own logger is silenced: the service logs every failure
		// itself, through its logger, with the operation that failed.
		db, err := gorm.Open(d, &gorm.Config{Logger: gormlogger.Discard, SkipDefaultTransaction: true})
		if err != nil {
			closeGorm(db)
			return nil, err
		}
		sess.db, sess.owned = db, true
	}
	sqlDB, err := sess.db.DB()
	if err != nil {
		return nil, abandonOpen(sess, err)
	}
	sess.sqlDB = sqlDB
	sess.d, _ = dialectFor(sess.db.Dialector.Name()) // checked in New
	sess.q = newQueries(sess.d, st.cfg.table)
	if st.cfg.dialector == nil && st.cfg.db == nil && sess.file == "" {
		// A shared in-memory database lives while a connection is open.
		if sess.keep, err = sqlDB.Conn(ctx); err != nil {
			return nil, abandonOpen(sess, err)
		}
	}
	if !st.cfg.readOnly { // a reader takes the schema as it is
		if err := st.migrate(ctx, sess); err != nil {
			if !isPermanent(err) { // a permanent error says what is wrong itself
				err = fmt.Errorf("create schema: %w", err)
			}
			return nil, abandonOpen(sess, err)
		}
	}
	if st.cfg.readOnly {
		// A reader needs neither the log id nor the outbox, which a log
		// written by an older version does not have.
		if !tablesExist(ctx, sess, sess.q.objects[:2]) {
			return nil, abandonOpen(sess, fmt.Errorf("the log has no %s table, or no %s (opened read-only: nothing is created)", sess.q.table, chainTable))
		}
		if sess.get, err = sess.sqlDB.PrepareContext(ctx, sess.q.get); err != nil {
			return nil, abandonOpen(sess, fmt.Errorf("prepare get: %w", err))
		}
		return sess, nil
	}
	// CREATE ... IF NOT EXISTS passes over an index of the name on another
	// table: the log can be read, but the writer refuses it (commitOnce).
	if fault := st.checkSchema(ctx, sess, nil, false); fault != nil {
		sess.fault.Store(&fault)
	}
	if err := sess.sqlDB.QueryRowContext(ctx, sess.q.logID, sess.q.key).Scan(&sess.logID); err != nil {
		return nil, abandonOpen(sess, fmt.Errorf("read the log id: %w", err))
	}
	if sess.get, err = sess.sqlDB.PrepareContext(ctx, sess.q.get); err != nil {
		return nil, abandonOpen(sess, fmt.Errorf("prepare get: %w", err))
	}
	var seq int64
	if err := sess.sqlDB.QueryRowContext(ctx, sess.q.outboxPeek).Scan(&seq); err == nil {
		defer st.hooks.leftovers()
	}
	if st.carry != nil {
		// The file was deleted or replaced: continue the chain here.
		if err := st.continueChain(ctx, sess, st.carry); err != nil {
			return nil, abandonOpen(sess, fmt.Errorf("continue the chain in the new file: %w", err))
		}
		st.carry = nil
	}
	st.hooks.openTree(ctx, sess)
	if sess.file != "" {
		// Taken after the schema exists, so the file does too.
		if sess.ident, err = os.Stat(sess.file); err != nil {
			return nil, abandonOpen(sess, err)
		}
	}
	return sess, nil
}

func abandonOpen(sess *session, err error) error {
	if cerr := sess.close(); cerr != nil {
		err = errors.Join(err, cerr)
	}
	return err
}

// stmt returns query prepared, preparing it on its first use.
func (sess *session) stmt(ctx context.Context, query string) (*sql.Stmt, error) {
	if st, ok := sess.stmts.Load(query); ok {
		return st.(*sql.Stmt), nil
	}
	st, err := sess.sqlDB.PrepareContext(ctx, query)
	if err != nil {
		return nil, err
	}
	if prev, loaded := sess.stmts.LoadOrStore(query, st); loaded {
		_ = st.Close() // another call prepared it first
		return prev.(*sql.Stmt), nil
	}
	return st, nil
}

// close releases what the session holds; it closes the database only if
// the service opened it.
func (sess *session) close() error {
	var err error
	if sess.get != nil {
		err = sess.get.Close()
	}
	sess.stmts.Range(func(_, v any) bool {
		err = errors.Join(err, v.(*sql.Stmt).Close())
		return true
	})
	if sess.keep != nil {
		err = errors.Join(err, sess.keep.Close())
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

// close closes the store for good: no session opens after it. It waits
// for the calls using the session, until giveUp is closed, then closes the
// database if the service opened it.
func (st *store) close(giveUp <-chan struct{}) error {
	st.mu.Lock()
	st.closed = true
	sess := st.sess.Swap(nil)
	st.mu.Unlock()
	if sess == nil {
		return nil
	}
	select {
	case <-sess.retire():
	case <-giveUp:
	}
	return sess.close()
}

// writeTx runs fn in a write transaction of the session's dialect and
// commits it. It is the one owner of write transactions, which run one at
// a time per service (writeMu).
//
// A transaction that the dialect says to retry at once (a serialization
// failure) is run again, with fn reading everything afresh, up to
// immediateRetries times: that is how the database asks for it, not an
// outage.
func (st *store) writeTx(ctx context.Context, sess *session, fn func(tx execer) error) error {
	st.writeMu.Lock()
	defer st.writeMu.Unlock()
	for tries := 1; ; tries++ {
		err := st.writeTxOnce(ctx, sess, fn)
		if err == nil || sess.d.retryNow == nil || !sess.d.retryNow(err) || tries == immediateRetries || ctx.Err() != nil {
			return err
		}
	}
}

// immediateRetries bounds the runs of one write transaction that the
// database asked to retry at once; past it the failure counts as one and
// the caller's own retry (with backoff) takes over.
const immediateRetries = 100

func (st *store) writeTxOnce(ctx context.Context, sess *session, fn func(tx execer) error) error {
	tx, err := sess.d.begin(ctx, sess.sqlDB)
	if err != nil {
		return err
	}
	if err := fn(tx); err != nil {
		tx.rollback()
		return err
	}
	return tx.commit()
}
