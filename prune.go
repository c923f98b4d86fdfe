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
	sess, done, err := s.ready(ctx, "prune")
	if err != nil {
		return 0, err
	}
	defer done()
	b := before.UTC()
	if b.Year() < 1 {
		return 0, nil // no entry is that old
	}
	cutoff := b.Format(timeLayout)
	if b.Year() > 9999 {
		cutoff = "\U0010FFFF" // after every stored time
	}
	var total int64
	for {
		n, more, err := s.pruneOnce(ctx, sess, cutoff)
		total += n
		if err != nil {
			return total, fmt.Errorf("audit: prune: %w", err)
		}
		if !more {
			return total, nil
		}
	}
}

// pruneOnce deletes up to pruneChunk entries older than cutoff from the
// start of the chain, and reports whether there may be more.
func (s *AuditService) pruneOnce(ctx context.Context, sess *session, cutoff string) (n int64, more bool, err error) {
	err = s.writeTx(ctx, sess, func(tx execer) error {
		if sess.d.postgres {
			// Take turns with writers and other processes' prunes, so that
			// the scan below sees the latest prefix and the checkpoint only
			// moves forward. (SQLite's BEGIN IMMEDIATE does this already.)
			var id int64
			var hash string
			if err := tx.QueryRowContext(ctx, sess.q.head, sess.q.key).Scan(&id, &hash); err != nil {
				return fmt.Errorf("lock chain head: %w", err)
			}
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

// runRetention is the background pruning of WithRetention, started by New
// and ended by Shutdown (ctx). It prunes once the database is first open,
// then every interval.
func (s *AuditService) runRetention(ctx context.Context) {
	defer close(s.retainDone)
	select {
	case <-s.opened:
	case <-ctx.Done():
		return
	}
	for {
		before := s.cfg.clock().Add(-s.cfg.retention)
		if n, err := s.Prune(ctx, before); err != nil {
			if ctx.Err() != nil {
				return
			}
			s.failures.Add(1)
			s.log.Warn("audit: retention prune failed; retrying at the next interval", "err", err)
		} else if n > 0 {
			s.log.Info("audit: retention pruned entries", "entries", n, "before", before)
		}
		if !sleep(s.cfg.retentionEvery, ctx.Done()) {
			return
		}
	}
}
