package audit

import (
	"context"
	"fmt"
	"math"
)

// The batch's INSERT of an array per column (dialect.insertColumns:
// PostgreSQL's unnest), where the dialect has one.

// appendSets is the loop of appendColumns and appendCopy, after the
// chain head (firstID-1, firstPrev): it links and hashes each set of
// entries, recs and then each that more returns, hands the set to put
// with its first ID, the Hash it is chained from and its Hashes, and
// advances the chain past them all.
func (s *AuditService) appendSets(ctx context.Context, sess *session, tx execer, recs []*record, more refill, firstID int64, firstPrev string,
	put func(set []*record, first int64, prev string, hashes []string) error) error {
	lastID, lastHash := firstID-1, firstPrev
	hashes := make([]string, 0, len(recs))
	for next := recs; len(next) > 0; {
		if lastID > math.MaxInt64-int64(len(next)) {
			return errNoIDLeft(sess, lastID, len(next))
		}
		from, prev := len(hashes), lastHash
		for _, r := range next {
			lastHash = s.chain.hash(lastHash, r)
			hashes = append(hashes, lastHash)
		}
		if err := put(next, lastID+1, prev, hashes[from:]); err != nil {
			return err
		}
		lastID += int64(len(next))
		next = nil
		if more != nil {
			next = more(lastID + 1)
		}
	}
	return s.advance(ctx, tx, sess, firstID, firstPrev, hashes, lastID, lastHash)
}

// appendColumns is appendChain on a dialect with insertColumns: one INSERT
// per set of entries (appendSets). (Hashing the next set while the
// database runs the last one, on another goroutine, was measured: no gain
// on 2 cores, where the server's index work is the bottleneck.)
func (s *AuditService) appendColumns(ctx context.Context, sess *session, tx execer, recs []*record, more refill, firstID int64, firstPrev string) error {
	c := &s.cols
	return s.appendSets(ctx, sess, tx, recs, more, firstID, firstPrev, func(set []*record, first int64, prev string, hashes []string) error {
		c.fill(set, first, prev, hashes)
		_, err := tx.ExecContext(ctx, sess.q.insertCols, c.args...)
		c.release(len(set))
		if err != nil {
			return fmt.Errorf("insert %d entries: %w", len(set), err)
		}
		return nil
	})
}

// fill sets c to the arguments of insertColumns for recs, chained from
// the entry whose Hash is prev and numbered from first, their Hashes in
// hashes. The columns' backing arrays are kept for the next batch (the
// writer's batches run one at a time, under the store's writeMu).
func (c *columnArgs) fill(recs []*record, first int64, prev string, hashes []string) {
	n := len(recs)
	if cap(c.ids) < n {
		c.ids, c.text, c.details, c.detailsText = make([]int64, n), make([]string, 7*n), make([]*string, n), make([]string, n)
	}
	ids, text, details := c.ids[:n], c.text[:7*n], c.details[:n]
	col := func(i int) []string { return text[i*n : (i+1)*n : (i+1)*n] }
	times, types, actors, resources, outcomes, requests, prevs := col(0), col(1), col(2), col(3), col(4), col(5), col(6)
	for i, r := range recs {
		ids[i] = first + int64(i)
		times[i], types[i], actors[i], resources[i], outcomes[i], requests[i] = r.time, r.eventType, r.actor, r.resource, r.outcome, r.requestID
		details[i] = nil
		if r.details != nil {
			c.detailsText[i] = string(r.details)
			details[i] = &c.detailsText[i]
		}
		prevs[i] = prev
		prev = hashes[i]
	}
	c.args = append(c.args[:0], ids, times, types, actors, resources, outcomes, requests, details, prevs, hashes)
}

// columnArgs are the writer's arguments of a dialect's insertColumns,
// kept from batch to batch (see fill).
type columnArgs struct {
	ids         []int64
	text        []string // the seven text columns of the batch before the hashes, one after another
	details     []*string
	detailsText []string // what details point into
	args        []any    // the last holds the batch's Hashes, which appendSets keeps
}

// release drops what the columns of the last n entries refer to, so that
// the records can go while the arrays wait for the next batch.
func (c *columnArgs) release(n int) {
	clear(c.text[:7*n])
	clear(c.args) // the Hashes
	clear(c.details[:n])
	clear(c.detailsText[:n])
}
