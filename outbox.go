package audit

import (
	"context"
	"crypto/rand"
	"database/sql"
	"encoding/hex"
	"errors"
	"fmt"
	"strings"
	"time"

	"gorm.io/gorm"
)

// RecordTx writes the entries of business transactions through an outbox:
// a table beside the log (its name is the log's table name and
// OutboxSuffix) that the caller's transaction inserts into, taking no lock
// but its own row's. The writer moves committed outbox rows into the
// chain, in the order it finds them committed, and deletes them in the
// same transaction; so an entry is chained if and only if its transaction
// committed, and a crash at any point loses none: the next writer on the
// log drains what is left.

// OutboxSuffix ends the name of the outbox table of a log: "audit_entries"
// has "audit_entries_outbox". Adapters that audit a database's tables never
// audit it.
const OutboxSuffix = "_outbox"

// logsTable holds one row per log: its id, which RecordTx checks so that a
// transaction on another database is refused.
const logsTable = "audit_logs"

// Outbox polling: after a RecordTx the writer looks for its committed row
// every outboxPoll for outboxFollow (it cannot see the commit happen); after
// that, and for rows other services left, at every tick of its ticker.
const (
	outboxPoll   = 20 * time.Millisecond
	outboxFollow = 2 * time.Second
)

func newLogID() string {
	var b [16]byte
	_, _ = rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

// RecordTx records e as part of the caller's open transaction tx (a
// *gorm.DB inside Transaction or Begin, on the same database as the log):
// the entry is committed if and only if tx commits. It validates e like
// Record and returns once the entry is written inside tx, at the cost of
// one INSERT in tx; it takes no lock that serialises callers'
// transactions. After tx commits, the writer chains the entry like any
// other, usually within tens of milliseconds; Flush waits for the entries
// whose transactions committed before it was called. A crash at any point
// loses no committed entry and chains none from a rolled-back transaction.
// A tx on another database than the log is an error that says so.
//
// Call [AuditService.Ping] at start-up before the first RecordTx: on
// SQLite, a schema that is still missing cannot be created while the
// caller's transaction holds the write lock.
func (s *AuditService) RecordTx(ctx context.Context, tx *gorm.DB, e Entry) error {
	const op = "record tx"
	if s.cfg.readOnly {
		s.stats.rejected.Add(1)
		return opErr(op, ErrReadOnly)
	}
	r, err := s.prepare(ctx, &e)
	if err != nil {
		s.stats.rejected.Add(1)
		return opErr(op, err)
	}
	if tx == nil || tx.Statement == nil {
		s.stats.rejected.Add(1)
		return opErr(op, errors.New("nil tx"))
	}
	if _, ok := tx.Statement.ConnPool.(gorm.TxCommitter); !ok {
		s.stats.rejected.Add(1)
		return opErr(op, errors.New("tx is not inside a transaction: pass the *gorm.DB of db.Transaction or db.Begin"))
	}
	sess, done, err := s.use(ctx, op)
	if err != nil {
		s.stats.rejected.Add(1)
		return err
	}
	defer done()
	var details any
	if r.details != nil {
		details = string(r.details)
	}
	res := tx.Session(&gorm.Session{NewDB: true, Context: ctx}).
		Exec(sess.q.outboxAdd, r.time, r.eventType, r.actor, r.resource, r.outcome, r.requestID, details, sess.q.key, sess.logID)
	switch {
	case res.Error != nil && isMissingTable(res.Error):
		s.stats.rejected.Add(1)
		return opErr(op, fmt.Errorf("tx is on another database than the log %s (it has no %s table): %w", s.cfg.databaseName(), sess.q.outbox, res.Error))
	case res.Error != nil:
		s.stats.rejected.Add(1)
		return opErr(op, fmt.Errorf("insert into %s: %w", sess.q.outbox, res.Error))
	case res.RowsAffected != 1:
		s.stats.rejected.Add(1)
		return opErr(op, fmt.Errorf("tx is on another database than the log %s (its %s table does not name this log)", s.cfg.databaseName(), logsTable))
	}
	s.pokeOutbox()
	return nil
}

// pokeOutbox tells the writer that the outbox has, or soon may have,
// committed rows.
func (s *AuditService) pokeOutbox() {
	s.usedOutbox.Store(true)
	select {
	case s.poke <- struct{}{}:
	default: // a poke is pending already
	}
}

func isMissingTable(err error) bool {
	msg := err.Error()
	return strings.Contains(msg, "no such table") || strings.Contains(msg, "does not exist") || strings.Contains(msg, "42P01")
}

// drainOutbox moves every committed outbox row into the chain, a batch per
// transaction, and reports whether the outbox was found empty.
func (s *AuditService) drainOutbox() bool {
	sess := s.st.sess.Load()
	if sess == nil || s.cfg.readOnly {
		return false
	}
	// Most turns find the outbox empty: a read says so without taking the
	// write lock.
	var seq int64
	err := sess.sqlDB.QueryRowContext(s.abort, sess.q.outboxPeek).Scan(&seq)
	if errors.Is(err, sql.ErrNoRows) {
		return true
	}
	for {
		ctx, cancel := context.WithTimeout(s.abort, writeTimeout)
		n, err := s.moveOutbox(ctx, sess)
		cancel()
		if err != nil {
			if s.abort.Err() == nil {
				s.stats.failures.Add(1)
				s.stats.lastErr.Store(&err)
				s.log.Warn("audit: moving committed RecordTx entries into the chain failed; retrying at the next turn", "err", err)
			}
			return false
		}
		if n > 0 {
			s.pub.grew(n)
			s.stats.written.Add(uint64(n))
			s.stats.batches.Add(1)
		}
		if n < s.cfg.batchSize {
			return n == 0
		}
	}
}

// moveOutbox moves up to BatchSize outbox rows into the chain in one write
// transaction, and returns how many it moved. It takes the chain head's
// lock before it reads the outbox, so that two services never move one
// row twice.
func (s *AuditService) moveOutbox(ctx context.Context, sess *session) (int, error) {
	var moved int
	err := s.st.writeTx(ctx, sess, func(tx execer) error {
		if err := lockChainHead(ctx, tx, sess); err != nil {
			return err
		}
		rows, err := tx.QueryContext(ctx, sess.q.outboxScan, s.cfg.batchSize)
		if err != nil {
			return fmt.Errorf("read outbox: %w", err)
		}
		var recs []*record
		var seqs []any
		for rows.Next() {
			var seq int64
			r := new(record)
			if err := rows.Scan(&seq, &r.time, &r.eventType, &r.actor, &r.resource, &r.outcome, &r.requestID, &r.details); err != nil {
				rows.Close()
				return fmt.Errorf("read outbox: %w", err)
			}
			recs, seqs = append(recs, r), append(seqs, seq)
		}
		if err := rows.Close(); err != nil {
			return fmt.Errorf("read outbox: %w", err)
		}
		if err := rows.Err(); err != nil {
			return fmt.Errorf("read outbox: %w", err)
		}
		if len(recs) == 0 {
			return nil
		}
		if err := s.appendChain(ctx, sess, tx, recs, nil); err != nil {
			return err
		}
		phs := make([]string, len(seqs))
		for i := range phs {
			phs[i] = sess.d.ph(i + 1)
		}
		if _, err := tx.ExecContext(ctx, sess.q.outboxDel+strings.Join(phs, ", ")+")", seqs...); err != nil {
			return fmt.Errorf("delete from outbox: %w", err)
		}
		moved = len(recs)
		return nil
	})
	if err != nil {
		return 0, err
	}
	return moved, nil
}
