package audit

import (
	"context"
	"database/sql"
	"fmt"
	"math"
	"strings"
	"sync"
)

// insertBatch writes b's entries in one transaction: it reads the chain
// head, links and hashes the entries after it, inserts them in multi-row
// INSERTs and advances the head, so that the chain cannot fork however
// many services write the table. more, when not nil, gives the transaction
// the entries that arrived meanwhile before it commits (see refill), which
// it appends to b. A run again of the transaction (writeTx's immediate
// retry) writes b.recs as they are then: with what the last run took.
func (s *AuditService) insertBatch(ctx context.Context, sess *session, b *inflight, more refill) error {
	return s.st.writeTx(ctx, sess, func(tx execer) error {
		return s.appendChain(ctx, sess, tx, b.recs, more)
	})
}

// refill returns more entries for a write transaction to append, given the
// ID the next one gets: what the queue holds now, up to the batch's limit;
// none, once everything taken is inserted, ends the transaction (SQLite's
// appendChain inserts a short chunk that waits, and asks again).
type refill func(next int64) []*record

// appendChain is insertBatch's work inside the write transaction tx: recs,
// then whatever more returns, until it returns none right after an INSERT.
//
// Where the dialect numbers rows itself (sqlite's rowid: one more than the
// largest, see dialect.autoID) and the table's largest ID is the chain
// head's, the INSERT leaves the id out: the database gives the rows the
// same IDs the chain does, and every chunk's last one is checked. An INSERT
// that names the rowid makes SQLite keep a statement journal, a copy of
// every page the statement changes that the transaction had changed
// already: with random index keys, most of them, for every chunk of the
// batch.
func (s *AuditService) appendChain(ctx context.Context, sess *session, tx execer, recs []*record, more refill) error {
	if err := sess.refuseWrite(); err != nil { // the chain key must match the log's (treeopen.go)
		return err
	}
	var lastID int64
	var lastHash string
	if err := tx.QueryRowContext(ctx, sess.q.head, sess.q.key).Scan(&lastID, &lastHash); err != nil {
		return fmt.Errorf("read chain head: %w", err)
	}
	firstID, firstPrev, hashes := lastID+1, lastHash, make([]string, 0, len(recs))
	auto := false
	if sess.d.autoID && !sess.explicitIDs.Load() {
		var maxID sql.NullInt64
		if err := tx.QueryRowContext(ctx, sess.q.maxID).Scan(&maxID); err != nil {
			return fmt.Errorf("read the last id: %w", err)
		}
		auto = maxID.Valid && maxID.Int64 == lastID || !maxID.Valid && lastID == 0
	}
	if cp, ok := tx.(copier); ok && sess.q.copyIn != "" && !auto && !sess.noCopy.Load() && cp.canCopy() {
		return s.appendCopy(ctx, sess, cp, recs, more, firstID, firstPrev)
	}
	if sess.q.insertCols != "" && !auto {
		return s.appendColumns(ctx, sess, tx, recs, more, firstID, firstPrev)
	}
	text := insertTextOf(&sess.q, auto)
	rowsPer := sess.d.insertRows
	var full *sql.Stmt // the INSERT of rowsPer rows, prepared at the first full chunk
	defer func() {
		if full != nil {
			full.Close()
		}
	}()
	p, canPrepare := tx.(preparer)
	canPrepare = canPrepare && sess.d.prepareInsert && (more != nil || len(recs) >= 2*rowsPer)
	args := make([]any, 0, rowsPer*text.cols)
	insert := func(chunk []*record) error {
		args = args[:0]
		for _, r := range chunk {
			lastID++
			hash := s.chain.hash(lastHash, r)
			var details any
			if r.details != nil {
				details = string(r.details)
			}
			if !auto {
				args = append(args, lastID)
			}
			args = append(args, r.time, r.eventType, r.actor, r.resource, r.outcome, r.requestID, details, lastHash, hash)
			lastHash = hash
			hashes = append(hashes, hash)
		}
		var res sql.Result
		var err error
		if len(chunk) == rowsPer && full == nil && canPrepare {
			if full, err = p.PrepareContext(ctx, text.rows(rowsPer)); err != nil {
				return fmt.Errorf("prepare insert: %w", err)
			}
		}
		if full != nil && len(chunk) == rowsPer {
			res, err = full.ExecContext(ctx, args...)
		} else {
			res, err = tx.ExecContext(ctx, text.rows(len(chunk)), args...)
		}
		if err != nil {
			return fmt.Errorf("insert %d entries: %w", len(chunk), err)
		}
		if auto {
			if id, err := res.LastInsertId(); err != nil || id != lastID {
				// A table that numbers its rows otherwise (AUTOINCREMENT
				// after deletions): the retry, and every later batch,
				// name the IDs.
				sess.explicitIDs.Store(true)
				return fmt.Errorf("insert %d entries: the last got id %d, not %d as chained (%v)", len(chunk), id, lastID, err)
			}
		}
		return nil
	}
	// Full chunks go in as they fill, so that entries taken a few at a
	// time still go in rowsPer to an INSERT. A short one goes in when
	// nothing more is queued, and the transaction then takes what arrived
	// while it ran: it ends only when nothing did. In sync mode, the
	// callers answered by the last commit record their next entries
	// while this transaction inserts, a few at a time; a transaction that
	// ended at the first empty queue left about a third of them to the
	// next one (the README's "Batches that grow").
	pend := make([]*record, 0, 2*rowsPer)
	for next := recs; len(next) > 0; {
		if lastID > math.MaxInt64-int64(len(pend)+len(next)) {
			return errNoIDLeft(sess, lastID, len(pend)+len(next))
		}
		for len(next) > 0 {
			n := min(rowsPer-len(pend), len(next))
			pend, next = append(pend, next[:n]...), next[n:]
			if len(pend) == rowsPer {
				if err := insert(pend); err != nil {
					return err
				}
				pend = pend[:0]
			}
		}
		if more != nil {
			next = more(lastID + int64(len(pend)) + 1)
		}
		if len(next) == 0 && len(pend) > 0 {
			if err := insert(pend); err != nil {
				return err
			}
			pend = pend[:0]
			if more != nil {
				next = more(lastID + 1)
			}
		}
	}
	return s.advance(ctx, tx, sess, firstID, firstPrev, hashes, lastID, lastHash)
}

// advance is the end of appendChain, once the entries from firstID on
// (their Hashes in hashes, the first chained from firstPrev) are
// inserted: it adds them to the tree and moves the chain head to lastID,
// lastHash.
func (s *AuditService) advance(ctx context.Context, tx execer, sess *session, firstID int64, firstPrev string, hashes []string, lastID int64, lastHash string) error {
	if err := s.treeAppend(ctx, tx, sess, firstID, firstPrev, hashes); err != nil {
		return fmt.Errorf("advance the Merkle tree: %w", err)
	}
	if _, err := tx.ExecContext(ctx, sess.q.setHead, lastID, lastHash, sess.q.key); err != nil {
		return fmt.Errorf("advance chain head: %w", err)
	}
	return nil
}

// preparer is the PrepareContext of *sql.Conn and *sql.Tx.
type preparer interface {
	PrepareContext(ctx context.Context, query string) (*sql.Stmt, error)
}

// insertText is the multi-row INSERT of one table on one dialect: the
// text for insertChunk rows, of which the text for n rows is a prefix
// (placeholders are numbered from the first row on), so that no batch
// builds SQL.
type insertText struct {
	cols int // arguments per row
	sql  string
	ends [insertChunk + 1]int // ends[n] is the length of the text for n rows
}

// rows returns the INSERT of n rows, 1 <= n <= insertChunk.
func (t *insertText) rows(n int) string { return t.sql[:t.ends[n]] }

// insertTexts caches the insertText of every table and dialect that a
// service of this process has written: a few kilobytes each.
var insertTexts sync.Map // insertTextKey -> *insertText

type insertTextKey struct {
	head string   // queries.insertHead or insertAuto: names the table and the columns
	d    *dialect // the placeholders' style
}

// insertTextOf returns q's insertText, of all columns or (auto) of all but
// the id, building it on first use.
func insertTextOf(q *queries, auto bool) *insertText {
	head, cols := q.insertHead, 10
	if auto {
		head, cols = q.insertAuto, 9
	}
	key := insertTextKey{head, q.d}
	if t, ok := insertTexts.Load(key); ok {
		return t.(*insertText)
	}
	t := &insertText{cols: cols}
	var b strings.Builder
	b.WriteString(head)
	arg := 0
	for row := 1; row <= insertChunk; row++ {
		if row > 1 {
			b.WriteByte(',')
		}
		b.WriteByte('(')
		for c := 0; c < cols; c++ {
			if c > 0 {
				b.WriteByte(',')
			}
			arg++
			b.WriteString(q.d.ph(arg))
		}
		b.WriteByte(')')
		t.ends[row] = b.Len()
	}
	t.sql = b.String()
	cached, _ := insertTexts.LoadOrStore(key, t)
	return cached.(*insertText)
}

// insertChunk is the most rows per INSERT statement: 10 arguments a row
// stays below SQLite's and PostgreSQL's limits on bound parameters.
const insertChunk = 256
