package audit

import (
	"context"
	"database/sql"
	"fmt"

	"golang.org/x/mod/sumdb/tlog"
)

// compactRange is the right edge of a Merkle tree as its perfect
// subtrees, largest first: enough to append leaves and compute the root.
type compactRange struct {
	hashes  []tlog.Hash
	heights []int
}

func (r *compactRange) append(h tlog.Hash) {
	r.push(h, 0)
}

func (r *compactRange) push(h tlog.Hash, height int) {
	for n := len(r.heights); n > 0 && r.heights[n-1] == height; n = len(r.heights) {
		h = tlog.NodeHash(r.hashes[n-1], h)
		r.hashes, r.heights = r.hashes[:n-1], r.heights[:n-1]
		height++
	}
	r.hashes, r.heights = append(r.hashes, h), append(r.heights, height)
}

func (r *compactRange) root() tlog.Hash {
	if len(r.hashes) == 0 {
		return tlog.Hash{}
	}
	h := r.hashes[len(r.hashes)-1]
	for i := len(r.hashes) - 2; i >= 0; i-- {
		h = tlog.NodeHash(r.hashes[i], h)
	}
	return h
}

// frontier reads the compact range of the stored tree of size n.
func frontier(ctx context.Context, src tileSource, n int64) (*compactRange, error) {
	r := &compactRange{}
	var idx []int64
	var heights []int
	start := int64(0)
	for k := 62; k >= 0; k-- {
		if n&(1<<k) != 0 {
			idx = append(idx, tlog.StoredHashIndex(k, start>>k))
			heights = append(heights, k)
			start += 1 << k
		}
	}
	if len(idx) == 0 {
		return r, nil
	}
	hs, err := hashReader{ctx, src}.ReadHashes(idx)
	if err != nil {
		return nil, err
	}
	r.hashes, r.heights = hs, heights
	return r, nil
}

// readLeafHashes reads the leaf hashes [from, to) of a tree whose leaf i
// is entry base+1+i: the leaves stored by Prune for entries it deleted, and
// the entries' for the others. A leaf with neither is tampering.
func readLeafHashes(ctx context.Context, q execer, ts *treeSQL, base, from, to int64) ([]tlog.Hash, error) {
	out := make([]tlog.Hash, to-from)
	have := make([]bool, to-from)
	for t := from / tileWidth; t*tileWidth < to; t += 256 {
		last := min(t+255, (to-1)/tileWidth)
		rows, err := q.QueryContext(ctx, ts.leafTiles, ts.key, t, last, ts.key, t, last)
		if err != nil {
			return nil, fmt.Errorf("read tree tiles: %w", err)
		}
		for rows.Next() {
			var n int64
			var data []byte
			if err := rows.Scan(&n, &data); err != nil {
				rows.Close()
				return nil, err
			}
			for j := int64(0); j < int64(len(data))/tlog.HashSize && j < tileWidth; j++ {
				if i := n*tileWidth + j - from; i >= 0 && i < to-from {
					out[i], have[i] = tlog.Hash(data[j*tlog.HashSize:(j+1)*tlog.HashSize]), true
				}
			}
		}
		if err := rows.Close(); err != nil {
			return nil, err
		}
	}
	const page = 10000
	for after := base + from; after < base+to; after += page {
		rows, err := q.QueryContext(ctx, ts.leafRange, after, min(after+page, base+to))
		if err != nil {
			return nil, fmt.Errorf("read entries for the tree: %w", err)
		}
		for rows.Next() {
			var id int64
			var h string
			if err := rows.Scan(&id, &h); err != nil {
				rows.Close()
				return nil, err
			}
			i := id - base - 1 - from
			if have[i] {
				continue
			}
			lh, err := leafHash(h)
			if err != nil {
				rows.Close()
				return nil, fmt.Errorf("%w at ID %d: %w", ErrTampered, id, err)
			}
			out[i], have[i] = lh, true
		}
		if err := rows.Close(); err != nil {
			return nil, err
		}
	}
	for i, ok := range have {
		if !ok {
			leaf := from + int64(i)
			return nil, fmt.Errorf("%w at ID %d: leaf %d of the tree is missing: neither its entry nor its stored hash is there", ErrTampered, base+leaf+1, leaf)
		}
	}
	return out, nil
}

// verifyTree checks the log against checkpoint c, in tx: see VerifySince;
// full also walks the entries and the leaves the checkpoint covers.
func (s *AuditService) verifyTree(ctx context.Context, tx *sql.Tx, sess *session, h treeHead, head chainHead, c Checkpoint, full bool) (VerifyReport, error) {
	var rep VerifyReport
	ts := &sess.q.tree
	src := dbTiles{tx, ts, h.base}
	m := c.Size
	tampered := func(id int64, format string, args ...any) error {
		return fmt.Errorf("%w at ID %d: %s", ErrTampered, id, fmt.Sprintf(format, args...))
	}
	switch n := head.lastID - h.base; {
	case h.size < m:
		return rep, tampered(h.base+h.size+1, "the log's tree has %d leaves, fewer than the %d of the checkpoint: entries were removed", h.size, m)
	case h.size > n:
		return rep, tampered(head.lastID+1, "the tree has %d leaves but the chain ends at entry %d", h.size, head.lastID)
	case h.size < n:
		return rep, fmt.Errorf("the tree lags the chain by %d entries (written by an older version?); opening the log again builds it", n-h.size)
	}
	// The tree of the checkpoint's size, from the stored hashes.
	startLeaf := m
	cr, err := frontier(ctx, src, m)
	if full {
		startLeaf, cr = 0, &compactRange{}
	}
	if err != nil {
		return rep, err
	}
	leaves, err := readLeafHashes(ctx, tx, ts, h.base, startLeaf, h.size)
	if err != nil {
		return rep, err
	}
	for _, lh := range leaves {
		cr.append(lh)
	}
	if full {
		// Fold again up to m: the loop above appended all leaves.
		check := &compactRange{}
		for _, lh := range leaves[:m] {
			check.append(lh)
		}
		if m > 0 && check.root() != c.Root {
			return rep, tampered(h.base+1, "the tree's first %d leaves do not hash to the checkpoint's root: the log was rewritten", m)
		}
	} else if m > 0 {
		fr, _ := frontier(ctx, src, m)
		if fr.root() != c.Root {
			return rep, tampered(h.base+m, "the stored tree of size %d does not have the checkpoint's root: the log was rewritten", m)
		}
	}
	if h.size > 0 {
		stored, err := treeRoot(ctx, tx, ts, h)
		if err != nil {
			return rep, err
		}
		if stored != cr.root() {
			return rep, tampered(h.base+m+1, "the tree's stored hashes do not match its leaves")
		}
	}

	// The entries: linked, hashed, and each the leaf at its index.
	startID := max(h.base+m+1, head.prunedID+1)
	if full {
		startID = head.prunedID + 1
	}
	prevHash := head.prunedHash
	if startID-1 > head.prunedID {
		// The entry before: its leaf is the checkpoint's last.
		if err := tx.QueryRowContext(ctx, ts.entryHash, startID-1).Scan(&prevHash); err != nil {
			return rep, tampered(startID-1, "the entry is missing: %v", err)
		}
		lh, err := leafHash(prevHash)
		if err != nil {
			return rep, tampered(startID-1, "%v", err)
		}
		proof, err := tlog.ProveRecord(m, m-1, hashReader{ctx, src})
		if err != nil {
			return rep, err
		}
		if tlog.CheckRecord(proof, m, c.Root, m-1, lh) != nil {
			return rep, tampered(startID-1, "the entry is not the checkpoint's last leaf")
		}
	}
	leafAt := func(id int64) (tlog.Hash, bool) {
		i := id - h.base - 1 - startLeaf
		if i < 0 || i >= int64(len(leaves)) {
			return tlog.Hash{}, false
		}
		return leaves[i], true
	}
	if head.prunedID >= startID-1 && head.prunedID > h.base {
		lh, err := leafHash(head.prunedHash)
		if want, ok := leafAt(head.prunedID); err != nil || (ok && lh != want) {
			return rep, tampered(head.prunedID+1, "the prune checkpoint's hash is not the leaf of entry %d", head.prunedID)
		}
	}
	wantID := startID
	for {
		rows, err := tx.QueryContext(ctx, sess.q.verifyScan, wantID-1, verifyPage)
		if err != nil {
			return rep, err
		}
		n := 0
		for rows.Next() {
			n++
			id, r, prev, stored, err := scanRow(rows)
			if err != nil {
				rows.Close()
				return rep, err
			}
			why := ""
			want, ok := leafAt(id)
			lh, lerr := leafHash(stored)
			switch {
			case id != wantID:
				why = fmt.Sprintf("expected ID %d next, found %d", wantID, id)
			case prev != prevHash:
				why = "PrevHash does not match the entry before it"
			case s.chain.hash(prev, &r) != stored:
				why = "Hash does not match the entry's content"
			case !ok:
				why = "the entry is not in the tree"
			case lerr != nil || lh != want:
				why = "the entry is not its leaf of the tree"
			}
			if why != "" {
				rows.Close()
				return rep, tampered(id, "%s", why)
			}
			if rep.FirstID == 0 {
				rep.FirstID = id
			}
			rep.LastID, rep.Entries = id, rep.Entries+1
			prevHash, wantID = stored, id+1
		}
		if err := rows.Close(); err != nil {
			return rep, err
		}
		if n < verifyPage {
			break
		}
	}
	switch last := wantID - 1; {
	case last < head.lastID:
		return rep, tampered(last+1, "entries %d through %d, up to the chain head, are missing", last+1, head.lastID)
	case last > head.lastID:
		return rep, tampered(head.lastID+1, "entries after the chain head")
	case prevHash != head.lastHash:
		return rep, tampered(last, "the last entry does not match the chain head")
	}
	rep.Head = head.lastHash
	return rep, nil
}
