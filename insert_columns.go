package audit

import (
	"context"
	"fmt"
	"math"
)

// The batch's INSERT of an array per column (dialect.insertColumns:
// PostgreSQL's unnest), where the dialect has one.

// appendColumns is appendChain on a dialect with insertColumns, after the
// chain head (firstID-1, firstPrev): one INSERT per set of entries, recs
// and then each that more returns. (Hashing the next set while the
// database runs the last one, on another goroutine, was measured: no gain
// on 2 cores, where the server's index work is the bottleneck.)
func (s *AuditService) appendColumns(ctx context.Context, sess *session, tx execer, recs []*record, more refill, firstID int64, firstPrev string) error {
	lastID, lastHash := firstID-1, firstPrev
	hashes := make([]string, 0, len(recs))
	c := &s.cols
	for next := recs; len(next) > 0; {
		if lastID > math.MaxInt64-int64(len(next)) {
			return errNoIDLeft(sess, lastID, len(next))
		}
		lastID, lastHash, hashes = s.chainColumns(c, next, lastID, lastHash, hashes)
		_, err := tx.ExecContext(ctx, sess.q.insertCols, c.args...)
		c.release(len(next))
		if err != nil {
			return fmt.Errorf("insert %d entries: %w", len(next), err)
		}
		next = nil
		if more != nil {
			next = more(lastID + 1)
		}
	}
	return s.advance(ctx, tx, sess, firstID, firstPrev, hashes, lastID, lastHash)
}

// chainColumns links and hashes recs after the entry lastID, whose Hash
// is lastHash, into c, the arguments of a dialect's insertColumns; it
// returns the new head and hashes with the entries' Hashes appended. The
// columns' backing arrays are kept for the next batch (the writer's
// batches run one at a time, under the store's writeMu).
func (s *AuditService) chainColumns(c *columnArgs, recs []*record, lastID int64, lastHash string, hashes []string) (int64, string, []string) {
	n := len(recs)
	if cap(c.ids) < n {
		c.ids, c.text, c.details, c.detailsText = make([]int64, n), make([]string, 8*n), make([]*string, n), make([]string, n)
	}
	ids, text, details := c.ids[:n], c.text[:8*n], c.details[:n]
	col := func(i int) []string { return text[i*n : (i+1)*n : (i+1)*n] }
	times, types, actors, resources, outcomes, requests, prevs, hashCol := col(0), col(1), col(2), col(3), col(4), col(5), col(6), col(7)
	for i, r := range recs {
		lastID++
		hash := s.chain.hash(lastHash, r)
		ids[i] = lastID
		times[i], types[i], actors[i], resources[i], outcomes[i], requests[i] = r.time, r.eventType, r.actor, r.resource, r.outcome, r.requestID
		details[i] = nil
		if r.details != nil {
			c.detailsText[i] = string(r.details)
			details[i] = &c.detailsText[i]
		}
		prevs[i], hashCol[i] = lastHash, hash
		lastHash = hash
	}
	hashes = append(hashes, hashCol...)
	c.args = append(c.args[:0], ids, times, types, actors, resources, outcomes, requests, details, prevs, hashCol)
	return lastID, lastHash, hashes
}

// columnArgs are the writer's arguments of a dialect's insertColumns,
// kept from batch to batch (see chainColumns).
type columnArgs struct {
	ids         []int64
	text        []string // the eight text columns of the batch, one after another
	details     []*string
	detailsText []string // what details point into
	args        []any
}

// release drops what the columns of the last n entries refer to, so that
// the records can go while the arrays wait for the next batch.
func (c *columnArgs) release(n int) {
	clear(c.text[:8*n])
	clear(c.details[:n])
	clear(c.detailsText[:n])
}
