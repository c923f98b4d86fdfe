package audit

import (
	"context"
	"errors"
	"fmt"
	"math"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
)

// Some failures do not clear by themselves: a missing directory, a path
// that is a directory or not a database, a read-only file, a table of the
// log's name with other columns, an index name taken by another table, a
// chain head row that an operator set back. Retrying cannot fix them, so
// they are reported as what they are: Ping returns them at once, Flush and
// sync Record return them as soon as the writer's attempt at their entries
// fails with one (the entries stay queued), Stats counts them as failures,
// and the writer logs them at ERROR with what to do. The writer still
// retries them, with the capped backoff, so that nothing accepted is lost
// and writing resumes once someone fixes the cause.

// permanentError is a failure that only a person can fix.
type permanentError struct {
	cause string // what is wrong, in words a user can act on
	fix   string // what to do about it
	err   error  // the database's own error; nil when the library found the cause
}

// permanent returns a permanentError with a cause made of format and args.
func permanent(err error, fix, format string, args ...any) error {
	return &permanentError{cause: fmt.Sprintf(format, args...), fix: fix, err: err}
}

func (e *permanentError) Error() string {
	msg := e.cause + " (" + e.fix + ")"
	if e.err != nil {
		msg += ": " + e.err.Error()
	}
	return msg
}

func (e *permanentError) Unwrap() error { return e.err }

// isPermanent reports whether err is, or wraps, a permanentError.
func isPermanent(err error) bool {
	var p *permanentError
	return errors.As(err, &p)
}

// notCommitted is what Flush and sync Record return when the writer's
// attempt at their entries failed with the permanent error err.
func notCommitted(err error) error {
	return fmt.Errorf("not committed, and retrying cannot help until the cause is fixed (the entries stay queued and are retried): %w", err)
}

// failSignal tells the callers waiting for a commit (Flush, sync Record)
// that an attempt of the writer failed with a permanent error. Only an
// attempt begun after the caller began counts: one that failed before (say,
// before the operator created the missing directory) says nothing about
// the caller's entries.
type failSignal struct {
	attempts atomic.Uint64 // the writer's attempts begun

	mu  sync.Mutex    // protects the fields below
	ch  chan struct{} // closed, and replaced, on every permanent failure
	err error         // the last permanent failure
	at  uint64        // the attempt that failed with err
}

// begin numbers a new attempt of the writer.
func (f *failSignal) begin() uint64 { return f.attempts.Add(1) }

// watch returns the attempts begun so far and the channel closed at the
// next permanent failure.
func (f *failSignal) watch() (since uint64, next <-chan struct{}) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.ch == nil {
		f.ch = make(chan struct{})
	}
	return f.attempts.Load(), f.ch
}

// fail records that attempt failed with the permanent error err.
func (f *failSignal) fail(attempt uint64, err error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.err, f.at = err, attempt
	if f.ch != nil {
		close(f.ch)
	}
	f.ch = make(chan struct{})
}

// after returns the last permanent failure if its attempt began after
// since, and otherwise nil and the channel closed at the next one.
func (f *failSignal) after(since uint64) (<-chan struct{}, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.err != nil && f.at > since {
		return nil, f.err
	}
	return f.ch, nil
}

// explain returns err as a permanentError when retrying cannot fix it: the
// dialect's diagnosis of err itself (a directory, a read-only file, ...),
// or else what checkSchema finds wrong with the log (sess nil: not open).
// Any other error is returned as it is.
func (st *store) explain(ctx context.Context, sess *session, err error) error {
	if err == nil || isPermanent(err) || ctx.Err() != nil {
		return err
	}
	d := st.dialect()
	if sess != nil {
		d = sess.d
	}
	if d != nil && d.explain != nil {
		if p := d.explain(st.file(), err); p != nil {
			return p
		}
	}
	if sess != nil {
		if p := st.checkSchema(ctx, sess, err, true); p != nil {
			return p
		}
	}
	return err
}

// file returns the SQLite file that WithSQLite names, "" for any other
// database.
func (st *store) file() string {
	if st.cfg.db != nil || st.cfg.dialector != nil || st.cfg.sqlitePath == ":memory:" {
		return ""
	}
	return sqliteFile(st.cfg.sqlitePath)
}

// dialect returns the dialect of the configured database, known before it
// is opened.
func (st *store) dialect() *dialect {
	name := sqliteDialect.name
	switch {
	case st.cfg.db != nil:
		name = st.cfg.db.Dialector.Name()
	case st.cfg.dialector != nil:
		name = st.cfg.dialector.Name()
	}
	d, _ := dialectFor(name)
	return d
}

// checkSchema looks for what is wrong with an existing log that retrying
// cannot fix: a table of the log's name without its columns, an index name
// of the log taken by another table, and with heads a chain head row below
// MAX(id) or at the last ID. It returns a permanentError wrapping cause, or
// nil when it finds none of these (a query that fails here is not its to
// judge).
func (st *store) checkSchema(ctx context.Context, sess *session, cause error, heads bool) error {
	q, db := &sess.q, sess.sqlDB
	rows, err := db.QueryContext(ctx, `SELECT `+columns+` FROM `+q.table+` WHERE 1 = 0`)
	if err != nil {
		if strings.Contains(strings.ToLower(err.Error()), "column") {
			return permanent(orErr(cause, err),
				"the log needs the columns "+columns+", more are allowed: add the missing ones, or choose another table with WithTable",
				"table exists with other columns: %s", q.table)
		}
		return nil
	}
	_ = rows.Close()

	indexes := q.indexes
	phs := make([]string, len(indexes))
	args := make([]any, 0, len(indexes)+1)
	for i, name := range indexes {
		phs[i] = sess.d.ph(i + 1)
		args = append(args, name)
	}
	args = append(args, st.cfg.table)
	rows, err = db.QueryContext(ctx, sess.d.indexOwners(strings.Join(phs, ", "), sess.d.ph(len(indexes)+1)), args...)
	if err != nil {
		return nil
	}
	var taken []string
	for rows.Next() {
		var name string
		if rows.Scan(&name) == nil {
			taken = append(taken, strconv.Quote(name))
		}
	}
	if rows.Close() != nil || rows.Err() != nil {
		return nil
	}
	if len(taken) > 0 {
		return permanent(cause,
			"the log's indexes are named after its table: drop or rename what holds the name, or choose another table with WithTable",
			"index name taken by another table or index: %s, needed for table %s", strings.Join(taken, ", "), q.table)
	}

	if !heads {
		return nil
	}
	// MAX(id) first: with other writers committing, the head read after it
	// can only be at or past it.
	var maxID int64
	if err := db.QueryRowContext(ctx, `SELECT COALESCE(MAX(id), 0) FROM `+q.table).Scan(&maxID); err != nil {
		return nil
	}
	head, err := readHead(ctx, db, sess)
	if err != nil {
		return nil
	}
	switch {
	case head.lastID < maxID:
		return permanent(cause,
			"the head row was altered or restored from an older copy: check the log with Verify, then set last_id and last_hash of its row to the newest entry's ID and Hash",
			"chain head row below MAX(id): table %s holds IDs up to %d, its row in %s says %d", q.table, maxID, chainTable, head.lastID)
	case head.lastID == math.MaxInt64:
		return errNoIDLeft(sess, head.lastID, 1)
	}
	return nil
}

func orErr(err, otherwise error) error {
	if err != nil {
		return err
	}
	return otherwise
}

// errNoIDLeft is the permanent error of a batch of n entries that would
// take IDs past the largest int64 after head.
func errNoIDLeft(sess *session, head int64, n int) error {
	return permanent(nil,
		"IDs are int64 and are never reused: start a new log, with WithTable or another database",
		"no ID left: the chain head of table %s is at ID %d, and %d more entries would pass the largest int64", sess.q.table, head, n)
}

// errPingRollback ends Ping's write transaction without its change.
var errPingRollback = errors.New("ping: roll back")

// ping checks that the log can be written: checkSchema finds nothing
// wrong, and a write that changes nothing succeeds in a write transaction,
// which is rolled back.
func (st *store) ping(ctx context.Context, sess *session) error {
	if err := st.checkSchema(ctx, sess, nil, true); err != nil {
		return err
	}
	touch := `UPDATE ` + chainTable + ` SET last_id = last_id WHERE table_name = ` + sess.d.ph(1)
	err := st.writeTx(ctx, sess, func(tx execer) error {
		if _, err := readHead(ctx, tx, sess); err != nil {
			return err
		}
		if _, err := tx.ExecContext(ctx, touch, sess.q.key); err != nil {
			return fmt.Errorf("write: %w", err)
		}
		return errPingRollback
	})
	if errors.Is(err, errPingRollback) {
		return nil
	}
	return st.explain(ctx, sess, err)
}
