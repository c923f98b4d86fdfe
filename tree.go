package audit

import (
	"context"
	"database/sql"
	"encoding/hex"
	"errors"
	"fmt"
	"strings"

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

// treeSQL is the SQL of the tree tables for one audit table on one
// dialect. Its args always start with the table's key (queries.key).
type treeSQL struct {
	schema  []string
	objects []string
	key     string
	d       dialect

	head       string // -> base, size, key_fp (may be NULL), prune_id, prune_hash, prune_size, prune_mac, prune_note
	initHead   string // args: key, base, key_fp (or nil)
	setSize    string // args: size, key
	setKey     string // args: key_fp, key
	setPrune   string // args: prune_id, prune_hash, prune_size, prune_mac, prune_note, key
	anyTile    string // arg: key; counts at most one tile
	allTiles   string // args: key, key -> level, n, data
	leaves     string // args: after id, limit -> id, hash of the entries
	entryHash  string // arg: id -> hash
	leafRange  string // args: after id, through id -> id, hash in ID order
	leafTiles  string // args: (key, first n, last n) twice -> n, data of level-0 tiles in order
	putCP      string // args: key, size, note
	lastCP     string // arg: key -> size, note of the largest checkpoint
	chainTable string
}

func newTreeSQL(d dialect, table, key string) treeSQL {
	blob, noRowid := "BLOB", " WITHOUT ROWID"
	if d.postgres {
		blob, noRowid = "BYTEA", ""
	}
	ts := treeSQL{key: key, d: d, chainTable: quote(table)}
	ts.schema = []string{
		`CREATE TABLE IF NOT EXISTS ` + TreeTileTable + ` (
	table_name TEXT NOT NULL,
	level INTEGER NOT NULL,
	n BIGINT NOT NULL,
	data ` + blob + ` NOT NULL,
	PRIMARY KEY (table_name, level, n))` + noRowid,
		`CREATE TABLE IF NOT EXISTS ` + TreeEdgeTable + ` (
	table_name TEXT NOT NULL,
	level INTEGER NOT NULL,
	n BIGINT NOT NULL,
	data ` + blob + ` NOT NULL,
	PRIMARY KEY (table_name, level))` + noRowid,
		`CREATE TABLE IF NOT EXISTS ` + TreeHeadTable + ` (
	table_name TEXT PRIMARY KEY,
	base BIGINT NOT NULL,
	size BIGINT NOT NULL,
	key_fp TEXT,
	prune_id BIGINT NOT NULL DEFAULT 0,
	prune_hash TEXT NOT NULL DEFAULT '',
	prune_size BIGINT NOT NULL DEFAULT 0,
	prune_mac TEXT NOT NULL DEFAULT '',
	prune_note TEXT NOT NULL DEFAULT '')`,
		`CREATE TABLE IF NOT EXISTS ` + CheckpointTable + ` (
	table_name TEXT NOT NULL,
	size BIGINT NOT NULL,
	note TEXT NOT NULL,
	PRIMARY KEY (table_name, size))`,
	}
	ts.objects = []string{TreeTileTable, TreeEdgeTable, TreeHeadTable, CheckpointTable}
	p := d.ph
	ts.head = `SELECT base, size, key_fp, prune_id, prune_hash, prune_size, prune_mac, prune_note FROM ` + TreeHeadTable + ` WHERE table_name = ` + p(1)
	ts.initHead = `INSERT INTO ` + TreeHeadTable + ` (table_name, base, size, key_fp, prune_id, prune_hash) VALUES (` + p(1) + `, ` + p(2) + `, 0, ` + p(3) + `, ` + p(4) + `, ` + p(5) + `) ON CONFLICT (table_name) DO NOTHING`
	ts.setSize = `UPDATE ` + TreeHeadTable + ` SET size = ` + p(1) + ` WHERE table_name = ` + p(2)
	ts.setKey = `UPDATE ` + TreeHeadTable + ` SET key_fp = ` + p(1) + ` WHERE table_name = ` + p(2)
	ts.setPrune = `UPDATE ` + TreeHeadTable + ` SET prune_id = ` + p(1) + `, prune_hash = ` + p(2) + `, prune_size = ` + p(3) +
		`, prune_mac = ` + p(4) + `, prune_note = ` + p(5) + ` WHERE table_name = ` + p(6)
	ts.anyTile = `SELECT COUNT(*) FROM (SELECT 1 FROM ` + TreeTileTable + ` WHERE table_name = ` + p(1) + ` LIMIT 1) t`
	ts.allTiles = `SELECT level, n, data FROM ` + TreeTileTable + ` WHERE table_name = ` + p(1) +
		` UNION ALL SELECT level, n, data FROM ` + TreeEdgeTable + ` WHERE table_name = ` + p(2) + ` AND LENGTH(data) > 0`
	ts.leaves = `SELECT id, hash FROM ` + quote(table) + ` WHERE id > ` + p(1) + ` ORDER BY id LIMIT ` + p(2)
	ts.leafTiles = `SELECT n, data FROM (SELECT n, data FROM ` + TreeTileTable + ` WHERE table_name = ` + p(1) + ` AND level = 0 AND n >= ` + p(2) + ` AND n <= ` + p(3) +
		` UNION ALL SELECT n, data FROM ` + TreeEdgeTable + ` WHERE table_name = ` + p(4) + ` AND level = 0 AND n >= ` + p(5) + ` AND n <= ` + p(6) + ` AND LENGTH(data) > 0) u ORDER BY n`
	ts.leafRange = `SELECT id, hash FROM ` + quote(table) + ` WHERE id > ` + p(1) + ` AND id <= ` + p(2) + ` ORDER BY id`
	ts.entryHash = `SELECT hash FROM ` + quote(table) + ` WHERE id = ` + p(1)
	ts.putCP = `INSERT INTO ` + CheckpointTable + ` (table_name, size, note) VALUES (` + p(1) + `, ` + p(2) + `, ` + p(3) + `) ON CONFLICT (table_name, size) DO NOTHING`
	ts.lastCP = `SELECT size, note FROM ` + CheckpointTable + ` WHERE table_name = ` + p(1) + ` ORDER BY size DESC LIMIT 1`
	return ts
}

// selectTiles returns the SELECT of n tiles by (level, n), full or not;
// args: key, level and n of each, twice. It is a UNION ALL of lookups by
// primary key: SQLite would scan the whole table for an OR of them.
func (ts *treeSQL) selectTiles(n int) string {
	var b strings.Builder
	for i := range n {
		if i > 0 {
			b.WriteString(" UNION ALL ")
		}
		b.WriteString(`SELECT level, n, data FROM ` + TreeTileTable + ` WHERE table_name = ` + ts.d.ph(6*i+1) +
			` AND level = ` + ts.d.ph(6*i+2) + ` AND n = ` + ts.d.ph(6*i+3) +
			` UNION ALL SELECT level, n, data FROM ` + TreeEdgeTable + ` WHERE table_name = ` + ts.d.ph(6*i+4) +
			` AND level = ` + ts.d.ph(6*i+5) + ` AND n = ` + ts.d.ph(6*i+6))
	}
	return b.String()
}

// putEdges returns the upsert of n tiles not full yet; args: key, level,
// n, data of each (one per level).
func (ts *treeSQL) putEdges(n int) string {
	var b strings.Builder
	b.WriteString(`INSERT INTO ` + TreeEdgeTable + ` (table_name, level, n, data) VALUES `)
	for i := range n {
		if i > 0 {
			b.WriteByte(',')
		}
		b.WriteString("(" + ts.d.ph(4*i+1) + "," + ts.d.ph(4*i+2) + "," + ts.d.ph(4*i+3) + "," + ts.d.ph(4*i+4) + ")")
	}
	b.WriteString(` ON CONFLICT (table_name, level) DO UPDATE SET n = excluded.n, data = excluded.data`)
	return b.String()
}

// putTiles returns the upsert of n tiles; args: key, level, n, data of each.
func (ts *treeSQL) putTiles(n int) string {
	var b strings.Builder
	b.WriteString(`INSERT INTO ` + TreeTileTable + ` (table_name, level, n, data) VALUES `)
	for i := range n {
		if i > 0 {
			b.WriteByte(',')
		}
		b.WriteString("(" + ts.d.ph(4*i+1) + "," + ts.d.ph(4*i+2) + "," + ts.d.ph(4*i+3) + "," + ts.d.ph(4*i+4) + ")")
	}
	b.WriteString(` ON CONFLICT (table_name, level, n) DO UPDATE SET data = excluded.data`)
	return b.String()
}

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
