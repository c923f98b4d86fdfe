package audit

import (
	"context"
	"fmt"
	"time"
)

// Prune's transactions are sized by time, so that the writer never waits
// long for the write lock: a chunk of entries with random index keys
// (request IDs, resources) dirties a page of every such index per entry,
// and on a big log 1000 of them take 40-60 ms where the same on a small
// one takes a few.
const (
	// pruneChunk is the most entries one transaction deletes.
	pruneChunk = 1000
	// pruneMinChunk is the fewest, and pruneFirstChunk the first
	// transaction's.
	pruneMinChunk   = 32
	pruneFirstChunk = 128
	// pruneBudget is how long a transaction should take: the next chunk
	// is this one scaled by pruneBudget over its time, growing at most
	// twofold.
	pruneBudget = 20 * time.Millisecond
)

// nextPruneChunk returns the size of the chunk after one of n entries
// that took took.
func nextPruneChunk(n int, took time.Duration) int {
	grown := min(2*n, pruneChunk)
	if took <= 0 {
		return max(grown, pruneMinChunk)
	}
	next := int(float64(n) * float64(pruneBudget) / float64(took))
	return max(min(next, grown), pruneMinChunk)
}

// Prune deletes the oldest entries in ID order, stopping at the first entry
// whose Time is not before before, and returns how many it deleted. Only a
// prefix of the chain goes, and the hash of the last entry deleted is kept
// as a checkpoint, so Verify still checks the first remaining entry. Prune
// works in transactions of at most 1000 entries, sized to take about 20 ms
// each, between which the writer commits.
func (s *AuditService) Prune(ctx context.Context, before time.Time) (int64, error) {
	if s.cfg.readOnly {
		return 0, opErr("prune", ErrReadOnly)
	}
	sess, done, err := s.use(ctx, "prune")
	if err != nil {
		return 0, err
	}
	defer done()
	cutoff := pruneCutoff(before)
	if cutoff == "" {
		return 0, nil // no entry is that old
	}
	var total int64
	for chunk := pruneFirstChunk; ; {
		n, more, took, err := s.pruneUpTo(ctx, sess, cutoff, chunk)
		total += n
		if err != nil {
			return total, opErr("prune", err)
		}
		chunk = nextPruneChunk(chunk, took)
		if n > 0 {
			// Copy the pages the chunk wrote to the WAL into the database
			// now, outside the write lock (see checkpointWAL). A failure
			// (another checkpoint running) leaves them to the next one.
			_ = s.st.checkpointWAL(ctx, sess)
		}
		if !more {
			if total > 0 {
				s.selfRecord(EventPrune, map[string]any{"deleted": total, "before": cutoff})
			}
			return total, nil
		}
	}
}

// pruneCutoff returns the stored time text that entries older than before
// sort below, or "" when no entry can be that old.
func pruneCutoff(before time.Time) string {
	b := before.UTC()
	switch {
	case b.Year() < 1:
		return ""
	case b.Year() > 9999:
		return "\U0010FFFF" // after every stored time
	}
	return b.Format(timeLayout)
}

// pruneOnce deletes up to pruneChunk entries older than cutoff from the
// start of the chain, and reports whether there may be more.
func (s *AuditService) pruneOnce(ctx context.Context, sess *session, cutoff string) (n int64, more bool, err error) {
	n, more, _, err = s.pruneUpTo(ctx, sess, cutoff, pruneChunk)
	return n, more, err
}

// pruneUpTo deletes up to limit entries older than cutoff from the start
// of the chain, in one transaction, and reports whether there may be more
// and how long the transaction took, from its first statement to its
// commit (not the wait for the write lock).
func (s *AuditService) pruneUpTo(ctx context.Context, sess *session, cutoff string, limit int) (n int64, more bool, took time.Duration, err error) {
	var began time.Time
	err = s.st.writeTx(ctx, sess, func(tx execer) error {
		n, more, began = 0, false, time.Now() // a transaction run again starts afresh
		// Take turns with writers and other processes' prunes (the head
		// row's lock, where the dialect needs one), so that the scan below
		// sees the latest prefix and the checkpoint only moves forward.
		if err := lockChainHead(ctx, tx, sess); err != nil {
			return err
		}
		rows, err := tx.QueryContext(ctx, sess.q.pruneScan, limit)
		if err != nil {
			return err
		}
		var lastID int64
		var lastHash string
		seen, stopped := 0, false
		for rows.Next() {
			seen++
			var id int64
			var t, hash string
			if err := rows.Scan(&id, &t, &hash); err != nil {
				rows.Close()
				return err
			}
			if t >= cutoff {
				stopped = true
				break
			}
			lastID, lastHash, n = id, hash, n+1
		}
		if err := rows.Close(); err != nil {
			return err
		}
		if err := rows.Err(); err != nil {
			return err
		}
		more = !stopped && seen == limit
		if n == 0 {
			return nil
		}
		if err := s.keepLeaves(ctx, tx, sess, lastID); err != nil { // HOOK(merkle): the tree keeps the leaves
			return err
		}
		if _, err := tx.ExecContext(ctx, sess.q.pruneDel, lastID); err != nil {
			return fmt.Errorf("delete: %w", err)
		}
		if _, err := tx.ExecContext(ctx, sess.q.checkpoint, lastID, lastHash, sess.q.key); err != nil {
			return fmt.Errorf("keep checkpoint: %w", err)
		}
		if err := s.authPrune(ctx, tx, sess, lastID, lastHash); err != nil { // HOOK(merkle)
			return err
		}
		return nil
	})
	if err != nil {
		return 0, false, 0, err
	}
	return n, more, time.Since(began), nil
}
