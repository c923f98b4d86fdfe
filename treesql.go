package audit

import "strings"

// The SQL of the tree's tables. What differs between SQLite and
// PostgreSQL is the blob type and WITHOUT ROWID; the rest is the same text
// with the dialect's placeholders.

// treeSQL is the SQL of the tree tables for one audit table on one
// dialect. Its args always start with the table's key (queries.key).
type treeSQL struct {
	schema  []string
	objects []string
	key     string
	d       *dialect

	head      string // -> base, size, key_fp (may be NULL), prune_id, prune_hash, prune_size, prune_mac, prune_note
	initHead  string // args: key, base, key_fp (or nil)
	setSize   string // args: size, key
	setKey    string // args: key_fp, key
	setPrune  string // args: prune_id, prune_hash, prune_size, prune_mac, prune_note, key
	allTiles  string // args: key, key -> level, n, data
	leaves    string // args: after id, limit -> id, hash of the entries
	entryHash string // arg: id -> hash
	leafRange string // args: after id, through id -> id, hash in ID order
	leafTiles string // args: (key, first n, last n) twice -> n, data of level-0 tiles in order
	putCP     string // args: key, size, note
	lastCP    string // arg: key -> size, note of the largest checkpoint
}

func newTreeSQL(d *dialect, table, key string) treeSQL {
	blob, noRowid := d.blobType, d.keyedTable
	ts := treeSQL{key: key, d: d}
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
