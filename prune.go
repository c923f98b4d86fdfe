package audit

import (
	"context"
	"fmt"
	"time"
)

// pruneChunk is the most entries that one of Prune's transactions deletes,
// so that the writer never waits long for the write lock.
const pruneChunk = 1000

// Prune deletes the oldest entries in ID order, stopping at the first entry
// whose Time is not before before, and returns how many it deleted. Only a
// prefix of the chain goes, and the hash of the last entry deleted is kept
// as a checkpoint, so Verify still checks the first remaining entry. Prune
// works in transactions of at most 1000 entries, between which the writer
// commits.
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
	for {
		n, more, err := s.pruneOnce(ctx, sess, cutoff)
		total += n
		if err != nil {
			return total, opErr("prune", err)
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
	err = s.st.writeTx(ctx, sess, func(tx execer) error {
		n, more = 0, false // a transaction run again starts afresh
		// Take turns with writers and other processes' prunes (the head
		// row's lock, where the dialect needs one), so that the scan below
		// sees the latest prefix and the checkpoint only moves forward.
		var id int64
		var hash string
		if err := tx.QueryRowContext(ctx, sess.q.head, sess.q.key).Scan(&id, &hash); err != nil {
			return fmt.Errorf("lock chain head: %w", err)
		}
		rows, err := tx.QueryContext(ctx, sess.q.pruneScan, pruneChunk)
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
		more = !stopped && seen == pruneChunk
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
		return 0, false, err
	}
	return n, more, nil
}
