package audit

import (
	"context"
	"database/sql"
	"encoding/hex"
	"errors"
	"fmt"

	"golang.org/x/mod/sumdb/tlog"
)

// The Merkle tree. Beside the hash chain, every table has an RFC 6962
// Merkle tree (the hashing of golang.org/x/mod/sumdb/tlog): leaf i is the
// entry with the (i+1)-th smallest ID ever committed to the table, and its
// record data is the 32 bytes of the entry's Hash, so that its leaf hash is
// tlog.RecordHash(hash). The writer advances the tree in the transaction
// that inserts the batch, so the tree never lags the chain.
//
// The tree is stored as tlog tiles of height treeHeight in TreeTileTable:
// a tile at level L holds up to 16 consecutive hashes of tree level 4L, and
// every other hash is recomputed from them. That is 32 bytes a leaf, plus
// one level-1 hash per 16 leaves and so on, plus one row per 16 hashes.
// Pruning deletes entries, never tiles: a tree of size N keeps its root.
//
// Leaf i's entry has ID base+1+i, where base is the prune checkpoint the
// tree started from (0 for a log that began under this code; the first
// remaining ID minus one for a log whose tree was built from an older one).

// Tables beside the entries. Adapters that audit a database's tables never
// audit these.
const (
	// TreeTileTable holds the full tiles of every audit table's Merkle
	// tree: written once, in key order, never changed.
	TreeTileTable = "audit_tree_tiles"
	// TreeEdgeTable holds the tiles not full yet: at most one per level
	// and audit table, rewritten as the tree grows.
	TreeEdgeTable = "audit_tree_edges"
	// TreeHeadTable holds one row per audit table: its tree's size, the
	// fingerprint of its chain key and its authenticated prune checkpoint.
	TreeHeadTable = "audit_tree_heads"
	// CheckpointTable holds the signed checkpoints of every audit table.
	CheckpointTable = "audit_checkpoints"
)

const (
	treeHeight = 4               // tile height: 16 hashes a tile
	tileWidth  = 1 << treeHeight // hashes in a full tile
	treeLevels = 64 / treeHeight // tile levels a tree of 2^63 leaves uses
	// treeBuildChunk is how many entries one transaction adds to the tree
	// of a log written before the tree existed.
	treeBuildChunk = 5000
)

// tileKey names a tile: its level and its number within the level.
type tileKey struct {
	level int
	n     int64
}

// tileSource reads stored tiles; a missing tile is absent from the map.
type tileSource interface {
	readTiles(ctx context.Context, keys []tileKey) (map[tileKey][]byte, error)
}

// dbTiles reads the tiles of one table through q (a transaction or the
// pool). Level-0 tiles, the leaf hashes, are not stored while their entries
// are in the table: a leaf hash is tlog.RecordHash of its entry's Hash, so
// the tile is made from the entries (base is the tree's base: leaf i is
// entry base+1+i). Prune stores the leaves of the entries it deletes, and a
// tile is those stored leaves followed by the leaves of the entries.
type dbTiles struct {
	q    execer
	ts   *treeSQL
	base int64
}

func (t dbTiles) readTiles(ctx context.Context, keys []tileKey) (map[tileKey][]byte, error) {
	out, err := t.readStored(ctx, keys)
	if err != nil {
		return nil, err
	}
	for _, k := range keys {
		if k.level != 0 || len(out[k]) == tileWidth*tlog.HashSize {
			continue
		}
		have := int64(len(out[k]) / tlog.HashSize)
		first := k.n*tileWidth + have // the first leaf the entries must give
		hashes, err := readEntryLeaves(ctx, t.q, t.ts, t.base+first, t.base+(k.n+1)*tileWidth)
		if err != nil {
			return nil, err
		}
		data := out[k][: have*tlog.HashSize : have*tlog.HashSize]
		for _, h := range hashes {
			data = append(data, h[:]...)
		}
		if len(data) > 0 {
			out[k] = data
		}
	}
	return out, nil
}

// readEntryLeaves returns the leaf hashes of the entries with IDs after
// after, up to through, stopping at the first ID missing.
func readEntryLeaves(ctx context.Context, q execer, ts *treeSQL, after, through int64) ([]tlog.Hash, error) {
	rows, err := q.QueryContext(ctx, ts.leafRange, after, through)
	if err != nil {
		return nil, fmt.Errorf("read entries for the tree: %w", err)
	}
	defer rows.Close()
	var out []tlog.Hash
	want := after + 1
	for rows.Next() {
		var id int64
		var h string
		if err := rows.Scan(&id, &h); err != nil {
			return nil, err
		}
		if id != want {
			break
		}
		lh, err := leafHash(h)
		if err != nil {
			return nil, fmt.Errorf("%w at ID %d: %w", ErrTampered, id, err)
		}
		out, want = append(out, lh), want+1
	}
	return out, rows.Err()
}

// readStored reads stored tiles only.
func (t dbTiles) readStored(ctx context.Context, keys []tileKey) (map[tileKey][]byte, error) {
	out := make(map[tileKey][]byte, len(keys))
	for start := 0; start < len(keys); start += 100 {
		chunk := keys[start:min(start+100, len(keys))]
		args := make([]any, 0, 6*len(chunk))
		for _, k := range chunk {
			args = append(args, t.ts.key, k.level, k.n, t.ts.key, k.level, k.n)
		}
		rows, err := t.q.QueryContext(ctx, t.ts.selectTiles(len(chunk)), args...)
		if err != nil {
			return nil, fmt.Errorf("read tree tiles: %w", err)
		}
		for rows.Next() {
			var k tileKey
			var data []byte
			if err := rows.Scan(&k.level, &k.n, &data); err != nil {
				rows.Close()
				return nil, fmt.Errorf("read tree tiles: %w", err)
			}
			if len(data) > len(out[k]) {
				out[k] = data
			}
		}
		if err := rows.Close(); err != nil {
			return nil, err
		}
		if err := rows.Err(); err != nil {
			return nil, fmt.Errorf("read tree tiles: %w", err)
		}
	}
	return out, nil
}

// memTiles is a tile store in memory, for tests and for building.
type memTiles map[tileKey][]byte

func (m memTiles) readTiles(_ context.Context, keys []tileKey) (map[tileKey][]byte, error) {
	out := make(map[tileKey][]byte, len(keys))
	for _, k := range keys {
		if d, ok := m[k]; ok {
			out[k] = d
		}
	}
	return out, nil
}

// treeEdge is the right edge of a tree of size leaves: at every tile level,
// the tile that is not full yet. Appending leaves changes only these tiles
// (and fills some), so that is all the writer reads and writes.
type treeEdge struct {
	size  int64
	tiles [treeLevels][]byte // level -> data of its right tile (fewer than tileWidth hashes)
	dirty map[tileKey][]byte // tiles changed since load, to be written
	order []tileKey          // dirty's keys in the order they changed
}

// edgeKeys returns the tiles that make up the right edge of a tree of size
// leaves.
func edgeKeys(size int64) []tileKey {
	var keys []tileKey
	for l := 0; l < treeLevels; l++ {
		c := size >> (uint(l) * treeHeight) // hashes at tree level l*treeHeight
		if c == 0 {
			break
		}
		if c%tileWidth != 0 {
			keys = append(keys, tileKey{l, c / tileWidth})
		}
	}
	return keys
}

// loadEdge reads the right edge of a tree of size leaves from src.
func loadEdge(ctx context.Context, src tileSource, size int64) (*treeEdge, error) {
	e := &treeEdge{size: size, dirty: map[tileKey][]byte{}}
	keys := edgeKeys(size)
	if len(keys) == 0 {
		return e, nil
	}
	got, err := src.readTiles(ctx, keys)
	if err != nil {
		return nil, err
	}
	for _, k := range keys {
		w := int(size>>(uint(k.level)*treeHeight)) % tileWidth
		data, ok := got[k]
		if !ok || len(data) < w*tlog.HashSize {
			return nil, fmt.Errorf("%w: tree tile %d/%d is missing or short (tree size %d)", ErrTampered, k.level, k.n, size)
		}
		e.tiles[k.level] = append(make([]byte, 0, tileWidth*tlog.HashSize), data[:w*tlog.HashSize]...)
	}
	return e, nil
}

// append adds one leaf hash.
func (e *treeEdge) append(h tlog.Hash) {
	n := e.size
	for l := 0; l < treeLevels; l++ {
		e.tiles[l] = append(e.tiles[l], h[:]...)
		key := tileKey{l, n >> treeHeight}
		e.mark(key, e.tiles[l])
		if len(e.tiles[l]) < tileWidth*tlog.HashSize {
			break
		}
		// The tile is full: its hash is the next hash of the level above,
		// and the next tile of this level is empty.
		h = tileRoot(e.tiles[l])
		e.tiles[l] = e.tiles[l][:0:0]
		e.mark(tileKey{l, n>>treeHeight + 1}, nil)
		n >>= treeHeight
	}
	e.size++
}

// mark records that the tile key now holds data.
func (e *treeEdge) mark(key tileKey, data []byte) {
	if _, ok := e.dirty[key]; !ok {
		e.order = append(e.order, key)
	}
	e.dirty[key] = data
}

// tileRoot returns the Merkle root of a tile's hashes (a power of two of
// them).
func tileRoot(data []byte) tlog.Hash {
	if len(data) == tlog.HashSize {
		return tlog.Hash(data)
	}
	half := len(data) / 2
	return tlog.NodeHash(tileRoot(data[:half]), tileRoot(data[half:]))
}

// changed returns the tiles changed since loadEdge, each with its data.
func (e *treeEdge) changed() ([]tileKey, [][]byte) {
	data := make([][]byte, len(e.order))
	for i, k := range e.order {
		data[i] = append([]byte{}, e.dirty[k]...)
	}
	return e.order, data
}

// hashReader reads tlog's stored hashes (see tlog.StoredHashIndex) of a
// tree from its tiles, so that tlog.TreeHash, ProveRecord and ProveTree
// work on the stored tree.
type hashReader struct {
	ctx context.Context
	src tileSource
}

// ReadHashes implements tlog.HashReader.
func (r hashReader) ReadHashes(indexes []int64) ([]tlog.Hash, error) {
	tiles := make([]tlog.Tile, len(indexes))
	need := map[tileKey]bool{}
	var keys []tileKey
	for i, idx := range indexes {
		t := tlog.TileForIndex(treeHeight, idx)
		tiles[i] = t
		k := tileKey{t.L, t.N}
		if !need[k] {
			need[k] = true
			keys = append(keys, k)
		}
	}
	got, err := r.src.readTiles(r.ctx, keys)
	if err != nil {
		return nil, err
	}
	out := make([]tlog.Hash, len(indexes))
	for i, idx := range indexes {
		t := tiles[i]
		data, ok := got[tileKey{t.L, t.N}]
		if !ok || len(data) < t.W*tlog.HashSize {
			return nil, fmt.Errorf("%w: tree tile %d/%d is missing or short", ErrTampered, t.L, t.N)
		}
		if out[i], err = tlog.HashFromTile(t, data, idx); err != nil {
			return nil, fmt.Errorf("%w: tree tile %d/%d: %w", ErrTampered, t.L, t.N, err)
		}
	}
	return out, nil
}

// leafHash returns the leaf hash of an entry whose Hash is hexHash.
func leafHash(hexHash string) (tlog.Hash, error) {
	var b [32]byte
	if len(hexHash) != 64 {
		return tlog.Hash{}, fmt.Errorf("entry hash %q is not 64 hex digits", hexHash)
	}
	if _, err := hex.Decode(b[:], []byte(hexHash)); err != nil {
		return tlog.Hash{}, fmt.Errorf("entry hash %q is not hex", hexHash)
	}
	return tlog.RecordHash(b[:]), nil
}

// treeHead is the row of TreeHeadTable for one audit table.
type treeHead struct {
	base, size int64
	keyFP      sql.NullString
	prune      pruneCheckpoint
}

// readTreeHead reads the table's tree head; ok is false when it has none.
func readTreeHead(ctx context.Context, q execer, ts *treeSQL) (h treeHead, ok bool, err error) {
	p := &h.prune
	err = q.QueryRowContext(ctx, ts.head, ts.key).Scan(&h.base, &h.size, &h.keyFP, &p.id, &p.hash, &p.size, &p.mac, &p.note)
	if errors.Is(err, sql.ErrNoRows) {
		return h, false, nil
	}
	if err != nil {
		return h, false, fmt.Errorf("read tree head: %w", err)
	}
	return h, true, nil
}

// writeEdge stores the tiles e changed above level 0 and the new tree
// size: full tiles in TreeTileTable, where they are appended in key order
// and never change (so its pages fill up), the others in TreeEdgeTable.
func writeEdge(ctx context.Context, tx execer, ts *treeSQL, e *treeEdge) error {
	keys, data := e.changed()
	var full, part []any
	for i, k := range keys {
		if k.level == 0 {
			continue // the leaves are the entries' Hashes (see dbTiles)
		}
		row := []any{ts.key, k.level, k.n, data[i]}
		if len(data[i]) == tileWidth*tlog.HashSize {
			full = append(full, row...)
		} else {
			part = append(part, row...)
		}
	}
	const perStmt = 64
	for _, w := range []struct {
		args []any
		text func(int) string
	}{{full, ts.putTiles}, {part, ts.putEdges}} {
		for start := 0; start < len(w.args); start += 4 * perStmt {
			end := min(start+4*perStmt, len(w.args))
			if _, err := tx.ExecContext(ctx, w.text((end-start)/4), w.args[start:end]...); err != nil {
				return fmt.Errorf("write tree tiles: %w", err)
			}
		}
	}
	if _, err := tx.ExecContext(ctx, ts.setSize, e.size, ts.key); err != nil {
		return fmt.Errorf("advance tree size: %w", err)
	}
	return nil
}
