package gormaudit

import (
	"context"
	"database/sql"
	"strings"
	"sync"

	"github.com/cleveragents/audit"
	"gorm.io/gorm"
)

// connPool sits beneath GORM's own pool types and sees every transaction
// GORM begins on the DB, so that entries recorded after commit (the log
// on another database) learn whether their transaction committed. It is
// the DB's ConnPool, or the ConnPool inside GORM's *gorm.PreparedStmtDB, so
// that GORM still finds its own types there: a prepared-statement DB stays
// a *gorm.PreparedStmtDB, its transactions stay *gorm.PreparedStmtTX, and
// GORM unwraps those to run SAVEPOINT unprepared. It implements
// gorm.ConnPoolBeginner, not gorm.TxBeginner, because it returns the
// wrapper rather than an *sql.Tx; and it is no gorm.TxCommitter, so GORM
// never mistakes it for a transaction.
type connPool struct {
	gorm.ConnPool
	p *Plugin
}

// trackTransactions places a connPool beneath db's pool, once.
func (p *Plugin) trackTransactions(db *gorm.DB) {
	switch pool := db.ConnPool.(type) {
	case *connPool:
	case *gorm.PreparedStmtDB:
		// The same *gorm.PreparedStmtDB that GORM caches for sessions
		// with PrepareStmt: wrapping inside it reaches them too.
		if _, ok := pool.ConnPool.(*connPool); !ok {
			pool.ConnPool = &connPool{ConnPool: pool.ConnPool, p: p}
		}
	default:
		wrapped := &connPool{ConnPool: db.ConnPool, p: p}
		if db.Statement != nil && db.Statement.ConnPool == db.ConnPool {
			db.Statement.ConnPool = wrapped
		}
		db.ConnPool = wrapped
	}
}

// BeginTx begins a transaction on the wrapped pool and wraps it.
func (c *connPool) BeginTx(ctx context.Context, opts *sql.TxOptions) (gorm.ConnPool, error) {
	var (
		inner gorm.ConnPool
		err   error
	)
	switch b := c.ConnPool.(type) {
	case gorm.TxBeginner:
		var tx *sql.Tx
		tx, err = b.BeginTx(ctx, opts)
		if err == nil {
			inner = tx
		}
	case gorm.ConnPoolBeginner:
		inner, err = b.BeginTx(ctx, opts)
	default:
		return nil, gorm.ErrInvalidTransaction
	}
	if err != nil {
		return nil, err
	}
	committer, ok := inner.(gorm.TxCommitter)
	if !ok {
		return nil, gorm.ErrInvalidTransaction
	}
	return &auditTx{ConnPool: inner, committer: committer, pool: c}, nil
}

// GetDBConn returns the *sql.DB under the pool, so that db.DB() keeps
// working once the plugin is registered.
func (c *connPool) GetDBConn() (*sql.DB, error) {
	switch p := c.ConnPool.(type) {
	case *sql.DB:
		return p, nil
	case gorm.GetDBConnector:
		return p.GetDBConn()
	}
	return nil, gorm.ErrInvalidDB
}

// auditTx is a transaction that holds the entries of its statements until
// it commits. It implements gorm.Tx, so that GORM's prepared-statement
// mode can wrap it.
type auditTx struct {
	gorm.ConnPool
	committer gorm.TxCommitter
	pool      *connPool

	mu      sync.Mutex // guards pending, marks and done
	pending []pendingEntry
	marks   []savepoint // open savepoints, oldest first
	done    bool        // committed or rolled back: nothing more is held
}

// pendingEntry is an entry and the context of the statement that made it,
// whose values Record may still need.
type pendingEntry struct {
	ctx   context.Context
	entry audit.Entry
}

// savepoint is where the pending entries stood when a savepoint was set.
type savepoint struct {
	name string
	n    int
}

// add holds entries until the transaction ends. It reports false when the
// transaction has already ended, and the caller must record them itself.
func (t *auditTx) add(ctx context.Context, entries []audit.Entry) bool {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.done {
		return false
	}
	for _, e := range entries {
		t.pending = append(t.pending, pendingEntry{ctx: ctx, entry: e})
	}
	return true
}

// Commit commits the transaction and, if it committed, records the
// entries it held. A refused Record cannot undo the commit: it is logged
// and counted (Plugin.Dropped), and Commit still returns nil.
func (t *auditTx) Commit() error {
	err := t.committer.Commit()
	pending := t.end()
	if err != nil {
		return err
	}
	for _, pe := range pending {
		t.pool.p.record(pe.ctx, pe.entry)
	}
	return nil
}

// Rollback rolls the transaction back and drops the entries it held.
func (t *auditTx) Rollback() error {
	t.end()
	return t.committer.Rollback()
}

func (t *auditTx) end() []pendingEntry {
	t.mu.Lock()
	defer t.mu.Unlock()
	pending := t.pending
	t.pending, t.marks, t.done = nil, nil, true
	return pending
}

// ExecContext runs query in the transaction. It follows the savepoints
// that GORM's nested transactions set and roll back to, so that entries
// made after a savepoint are dropped when the transaction rolls back to it.
func (t *auditTx) ExecContext(ctx context.Context, query string, args ...any) (sql.Result, error) {
	res, err := t.ConnPool.ExecContext(ctx, query, args...)
	if err == nil {
		t.trackSavepoint(query)
	}
	return res, err
}

// trackSavepoint applies SAVEPOINT, ROLLBACK TO [SAVEPOINT] and RELEASE
// [SAVEPOINT] statements to the pending entries.
func (t *auditTx) trackSavepoint(query string) {
	fields := strings.Fields(query)
	if len(fields) < 2 {
		return
	}
	verb := strings.ToUpper(fields[0])
	if verb != "SAVEPOINT" && verb != "ROLLBACK" && verb != "RELEASE" {
		return
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	switch verb {
	case "SAVEPOINT":
		if len(fields) == 2 {
			t.marks = append(t.marks, savepoint{name: fields[1], n: len(t.pending)})
		}
	case "ROLLBACK":
		// ROLLBACK TO [SAVEPOINT] name: the savepoint stays, later ones go.
		if name, ok := savepointName(fields[1:], "TO"); ok {
			if i := t.findMark(name); i >= 0 {
				t.pending = t.pending[:t.marks[i].n]
				t.marks = t.marks[:i+1]
			}
		}
	case "RELEASE":
		// RELEASE [SAVEPOINT] name: its entries stay, pending on the
		// enclosing transaction; the savepoint and later ones go.
		if name, ok := savepointName(fields, "RELEASE"); ok {
			if i := t.findMark(name); i >= 0 {
				t.marks = t.marks[:i]
			}
		}
	}
}

// savepointName parses "<keyword> [SAVEPOINT] name".
func savepointName(fields []string, keyword string) (string, bool) {
	if len(fields) < 2 || !strings.EqualFold(fields[0], keyword) {
		return "", false
	}
	rest := fields[1:]
	if len(rest) == 2 && strings.EqualFold(rest[0], "SAVEPOINT") {
		rest = rest[1:]
	}
	if len(rest) != 1 {
		return "", false
	}
	return rest[0], true
}

// findMark returns the index of the newest savepoint named name, or -1.
// Savepoint names compare case-insensitively, as SQL identifiers do.
func (t *auditTx) findMark(name string) int {
	for i := len(t.marks) - 1; i >= 0; i-- {
		if strings.EqualFold(t.marks[i].name, name) {
			return i
		}
	}
	return -1
}

// StmtContext returns stmt bound to the transaction, as *sql.Tx does.
func (t *auditTx) StmtContext(ctx context.Context, stmt *sql.Stmt) *sql.Stmt {
	if s, ok := t.ConnPool.(interface {
		StmtContext(context.Context, *sql.Stmt) *sql.Stmt
	}); ok {
		return s.StmtContext(ctx, stmt)
	}
	return stmt
}

// GetDBConn returns the *sql.DB under the pool, so that tx.DB() works
// inside a transaction.
func (t *auditTx) GetDBConn() (*sql.DB, error) {
	return t.pool.GetDBConn()
}

// txOf returns the tracked transaction that pool belongs to, and whether
// pool is a transaction at all: (nil, true) is one begun outside the
// wrapped pool, whose end the plugin cannot see.
func txOf(pool gorm.ConnPool) (*auditTx, bool) {
	switch c := pool.(type) {
	case *auditTx:
		return c, true
	case *gorm.PreparedStmtTX:
		t, _ := c.Tx.(*auditTx)
		return t, true
	case gorm.TxCommitter:
		return nil, true
	}
	return nil, false
}
