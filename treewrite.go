package audit

import (
	"context"
	"errors"
	"fmt"

	"golang.org/x/mod/sumdb/tlog"
)

// The writer's side of the tree: advancing it in the batch's transaction,
// and keeping the leaves of the entries that Prune deletes.

// treeAppend is the writer's hook: inside the batch's transaction, after
// the batch's entries (IDs firstID on, their hex Hashes in hashes) were
// inserted, it adds them to the tree. A tree that lags the chain (a log
// still being built, or written by an older version of the library) first
// catches up, by at most treeBuildChunk entries; one that lags more is left
// to the build that every open runs.
func (s *AuditService) treeAppend(ctx context.Context, tx execer, sess *session, firstID int64, prevHash string, hashes []string) error {
	if len(hashes) == 0 || s.cfg.tree.disabled {
		return nil
	}
	ts := &sess.q.tree
	h, ok, err := readTreeHead(ctx, tx, ts)
	if err != nil || !ok {
		return err // no tree head: the open that creates it builds the tree
	}
	next := h.base + h.size + 1
	if next > firstID {
		s.log.Warn("audit: the tree holds leaves for entries not yet written; it is not advanced", "tree_size", h.size, "first_id", firstID)
		return nil
	}
	var lag []string
	if next < firstID {
		if firstID-next > treeBuildChunk {
			return nil
		}
		if lag, _, err = readLeaves(ctx, tx, ts, next-1, firstID-next); err != nil {
			return err
		}
		if int64(len(lag)) != firstID-next {
			return nil
		}
	}
	e, err := sess.tree.edge(ctx, tx, ts, h.base, h.size, prevHash)
	if errors.Is(err, ErrTampered) {
		// Entries the tree needs were removed under us: keep writing the
		// chain, and let Verify report it.
		s.log.Error("audit: the Merkle tree cannot be advanced: the log was tampered with; run Verify", "err", err)
		return nil
	}
	if err != nil {
		return err
	}
	for _, list := range [2][]string{lag, hashes} {
		for _, hx := range list {
			lh, err := leafHash(hx)
			if err != nil {
				return err
			}
			e.append(lh)
		}
	}
	if err := writeEdge(ctx, tx, ts, e); err != nil {
		return err
	}
	sess.tree.keep(e, hashes[len(hashes)-1])
	return nil
}

// readLeaves reads the Hashes of up to limit entries after ID after, in ID
// order, and the last ID read.
func readLeaves(ctx context.Context, q execer, ts *treeSQL, after, limit int64) ([]string, int64, error) {
	rows, err := q.QueryContext(ctx, ts.leaves, after, limit)
	if err != nil {
		return nil, 0, fmt.Errorf("read entries for the tree: %w", err)
	}
	defer rows.Close()
	var out []string
	last := after
	for rows.Next() {
		var h string
		if err := rows.Scan(&last, &h); err != nil {
			return nil, 0, err
		}
		out = append(out, h)
	}
	return out, last, rows.Err()
}

// treeSession is what a session keeps about its tree: whether the service
// may write (its chain key matches the log's), and the writer's cached
// right edge, so that a batch reads no tile it wrote itself.
type treeSession struct {
	keyErr error // non-nil: the service's chain key does not match the log's

	// cached is the edge after the last batch this service wrote, with the
	// Hash of the batch's last entry; valid for the next batch only if the
	// tree still has its size and the chain head still that Hash (neither
	// a rolled-back batch nor another writer came between). Guarded by the
	// service's writeMu (the writer's batches run under it).
	cached     *treeEdge
	cachedHead string
}

// edge returns the right edge of the tree at size, for a batch that
// continues the chain from the Hash head: the cached one if it is still
// current, else read from the tiles.
func (t *treeSession) edge(ctx context.Context, tx execer, ts *treeSQL, base, size int64, head string) (*treeEdge, error) {
	if c := t.cached; c != nil && c.size == size && t.cachedHead != "" && t.cachedHead == head {
		t.cached = nil
		c.dirty, c.order = map[tileKey][]byte{}, nil
		return c, nil
	}
	t.cached = nil
	return loadEdge(ctx, dbTiles{tx, ts, base}, size)
}

// keep caches e as the edge after a batch whose last entry has Hash head.
func (t *treeSession) keep(e *treeEdge, head string) {
	t.cached, t.cachedHead = e, head
}

// treeRoot returns the root of the stored tree of h.size leaves, read
// through q.
func treeRoot(ctx context.Context, q execer, ts *treeSQL, h treeHead) (tlog.Hash, error) {
	if h.size == 0 {
		return tlog.Hash{}, nil
	}
	return tlog.TreeHash(h.size, hashReader{ctx, dbTiles{q, ts, h.base}})
}

// keepLeaves is Prune's hook, in its transaction before it deletes the
// entries through lastID: it stores the leaf hashes of those entries, so
// that the tree keeps every leaf after they are gone.
func (s *AuditService) keepLeaves(ctx context.Context, tx execer, sess *session, lastID int64) error {
	if s.cfg.tree.disabled {
		return nil
	}
	ts := &sess.q.tree
	h, ok, err := readTreeHead(ctx, tx, ts)
	if err != nil || !ok {
		return err
	}
	from := (max(h.prune.id, h.base) - h.base) / tileWidth * tileWidth // the tile of the first leaf not kept yet
	to := min(lastID-h.base, h.size)
	if to <= from {
		return nil
	}
	leaves, err := readLeafHashes(ctx, tx, ts, h.base, from, to)
	if err != nil {
		return fmt.Errorf("keep the pruned entries' leaves: %w", err)
	}
	return storeLeafTiles(ctx, tx, ts, from, leaves)
}

// storeLeafTiles stores leaves, the first of which is leaf start (a
// multiple of tileWidth), as level-0 tiles in TreeTileTable; the last may
// be partial.
func storeLeafTiles(ctx context.Context, tx execer, ts *treeSQL, start int64, leaves []tlog.Hash) error {
	const perStmt = 64
	var args []any
	flush := func() error {
		if len(args) == 0 {
			return nil
		}
		_, err := tx.ExecContext(ctx, ts.putTiles(len(args)/4), args...)
		args = args[:0]
		if err != nil {
			return fmt.Errorf("store leaf tiles: %w", err)
		}
		return nil
	}
	for i := 0; i < len(leaves); i += tileWidth {
		data := make([]byte, 0, tileWidth*tlog.HashSize)
		for _, lh := range leaves[i:min(i+tileWidth, len(leaves))] {
			data = append(data, lh[:]...)
		}
		args = append(args, ts.key, 0, start/tileWidth+int64(i/tileWidth), data)
		if len(args) == 4*perStmt {
			if err := flush(); err != nil {
				return err
			}
		}
	}
	return flush()
}
