package audit

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"strings"
)

// columns are the stored columns, in the order that every SELECT and the
// INSERT use.
const columns = "id, time, event_type, actor, resource, outcome, request_id, details, prev_hash, hash"

// filterColumns are the indexed columns, one index each, ordered by ID
// within a value so that an equality filter reads in ID order.
var filterColumns = []string{"actor", "event_type", "resource", "outcome", "request_id", "time"}

// hashedColumns are the filter columns whose values are nearly unique
// (a path among millions, a request's ID): where the dialect has a
// hashKey, their indexes are of the hash, still ordered by ID within it.
var hashedColumns = map[string]hashedColumn{
	"resource":   {includeText: true}, // its values can also repeat a great deal (audithttp's paths)
	"request_id": {},                  // a request's few entries each
}

// hashedColumn is how a column of hashedColumns is indexed.
type hashedColumn struct {
	// includeText: the index holds the text as well (INCLUDE), so that a
	// count of one value reads the index alone.
	includeText bool
}

// hashed reports whether col's index on d is of the hash of its text.
func hashed(d *dialect, col string) bool {
	_, ok := hashedColumns[col]
	return ok && d.hashKey != nil
}

// filterIndex returns the keys of col's index on d, in parentheses, and
// the columns it includes.
func filterIndex(d *dialect, col string) string {
	if !hashed(d, col) {
		return "(" + col + d.indexSuffix + ")"
	}
	keys := "((" + d.hashKey(col) + ")" + d.indexSuffix + ")"
	if hashedColumns[col].includeText {
		keys += " INCLUDE (" + col + ")"
	}
	return keys
}

// queries are the SQL texts of one table on one dialect, built once when
// the session opens.
type queries struct {
	d     *dialect
	table string // quoted
	// key names the table's row in the chain heads (dialect.tableKey).
	key        string
	schema     []string
	initHead   string   // arg: table name
	head       string   // arg: table name; locks the row where the dialect needs it
	setHead    string   // args: last_id, last_hash, table name
	get        string   // arg: id
	insertHead string   // INSERT INTO t (columns) VALUES
	insertAuto string   // the same without the id column (dialect.autoID)
	insertCols string   // the batch's INSERT of an array per column (dialect.insertColumns); "" where there is none
	copyIn     string   // the batch's COPY, where there is insertCols (pgcopy.go)
	maxID      string   // the table's largest id, NULL when empty
	pruneScan  string   // args: limit
	pruneDel   string   // arg: last id
	checkpoint string   // args: pruned_id, pruned_hash, table name
	chainState string   // arg: table name
	resetHead  string   // args: last_id, last_hash, pruned_id, pruned_hash, table name
	verifyScan string   // args: after id, limit
	outbox     string   // the outbox table's name (quoted): see outbox.go
	outboxAdd  string   // RecordTx's INSERT, with ? placeholders (GORM binds them); args: the fields, table name, log id
	outboxScan string   // args: limit
	outboxPeek string   // one seq, if the outbox has a row
	outboxDel  string   // DELETE ... WHERE seq IN (: followed by placeholders and ")"
	logID      string   // arg: table name; the log's id
	initLog    string   // args: table name, a new log id
	objects    []string // the tables and indexes the schema creates: tables, then indexes
	indexes    []string // the indexes among objects
	objCount   string   // args: objects; counts those that exist
	headCount  string   // arg: table name; counts its chain head row
	tree       treeSQL  // the Merkle tree's tables (treesql.go)
}

func newQueries(d *dialect, table string) queries {
	t := quote(table)
	q := queries{d: d, table: t, key: d.tableKey(table)}
	// Time is fixed-width RFC 3339 text (see timeLayout), details the JSON
	// exactly as hashed: both read back byte for byte.
	q.schema = []string{
		`CREATE TABLE IF NOT EXISTS ` + t + ` (
	id ` + d.idType + ` PRIMARY KEY,
	time ` + d.timeType + ` NOT NULL,
	event_type TEXT NOT NULL,
	actor TEXT NOT NULL,
	resource TEXT NOT NULL DEFAULT '',
	outcome TEXT NOT NULL DEFAULT '',
	request_id TEXT NOT NULL DEFAULT '',
	details TEXT,
	prev_hash TEXT NOT NULL,
	hash TEXT NOT NULL)`,
		`CREATE TABLE IF NOT EXISTS ` + chainTable + ` (
	table_name TEXT PRIMARY KEY,
	last_id BIGINT NOT NULL,
	last_hash TEXT NOT NULL,
	pruned_id BIGINT NOT NULL,
	pruned_hash TEXT NOT NULL)`,
	}
	outbox := ident(table, OutboxSuffix)
	q.outbox = quote(outbox)
	q.schema = append(q.schema,
		`CREATE TABLE IF NOT EXISTS `+logsTable+` (
	table_name TEXT PRIMARY KEY,
	log_id TEXT NOT NULL)`,
		`CREATE TABLE IF NOT EXISTS `+q.outbox+` (
	seq `+d.serialKey+`,
	time `+d.timeType+` NOT NULL,
	event_type TEXT NOT NULL,
	actor TEXT NOT NULL,
	resource TEXT NOT NULL,
	outcome TEXT NOT NULL,
	request_id TEXT NOT NULL,
	details TEXT)`)
	q.objects = []string{table, chainTable, logsTable, outbox}
	for _, col := range filterColumns {
		index := ident(table, "_"+col+"_idx")
		q.objects = append(q.objects, index)
		q.indexes = append(q.indexes, index)
		q.schema = append(q.schema, `CREATE INDEX IF NOT EXISTS `+quote(index)+` ON `+t+` `+filterIndex(d, col))
	}
	// The Merkle tree's tables.
	q.tree = newTreeSQL(d, table, q.key)
	q.schema, q.objects = append(q.schema, q.tree.schema...), append(q.objects, q.tree.objects...)
	phs := make([]string, len(q.objects))
	for i := range phs {
		phs[i] = d.ph(i + 1)
	}
	q.objCount = d.catalog(strings.Join(phs, ", "))
	q.headCount = `SELECT COUNT(*) FROM ` + chainTable + ` WHERE table_name = ` + d.ph(1)
	// A table that predates the head row (or lost it) continues from its
	// last entry, so new IDs never collide with old ones.
	q.initHead = `INSERT INTO ` + chainTable + ` (table_name, last_id, last_hash, pruned_id, pruned_hash)
	SELECT ` + d.ph(1) + `,
		COALESCE((SELECT MAX(id) FROM ` + t + `), 0),
		COALESCE((SELECT hash FROM ` + t + ` ORDER BY id DESC LIMIT 1), ''),
		COALESCE((SELECT MIN(id) - 1 FROM ` + t + `), 0),
		COALESCE((SELECT prev_hash FROM ` + t + ` ORDER BY id LIMIT 1), '')
	WHERE true
	ON CONFLICT (table_name) DO NOTHING`
	q.initLog = `INSERT INTO ` + logsTable + ` (table_name, log_id) VALUES (` + d.ph(1) + `, ` + d.ph(2) + `) ON CONFLICT (table_name) DO NOTHING`
	q.logID = `SELECT log_id FROM ` + logsTable + ` WHERE table_name = ` + d.ph(1)
	// The SELECT inserts nothing unless the transaction is on the log's
	// database: RecordTx tells the caller so (outbox.go).
	q.outboxAdd = `INSERT INTO ` + q.outbox + ` (time, event_type, actor, resource, outcome, request_id, details)
	SELECT ?, ?, ?, ?, ?, ?, ? FROM ` + logsTable + ` WHERE table_name = ? AND log_id = ?`
	q.outboxScan = `SELECT seq, time, event_type, actor, resource, outcome, request_id, details FROM ` + q.outbox + ` ORDER BY seq LIMIT ` + d.ph(1)
	q.outboxPeek = `SELECT seq FROM ` + q.outbox + ` LIMIT 1`
	q.outboxDel = `DELETE FROM ` + q.outbox + ` WHERE seq IN (`
	q.head = `SELECT last_id, last_hash FROM ` + chainTable + ` WHERE table_name = ` + d.ph(1) + d.lockHead
	q.setHead = `UPDATE ` + chainTable + ` SET last_id = ` + d.ph(1) + `, last_hash = ` + d.ph(2) + ` WHERE table_name = ` + d.ph(3)
	q.get = `SELECT ` + columns + ` FROM ` + t + ` WHERE id = ` + d.ph(1)
	q.insertHead = `INSERT` + d.insertOr + ` INTO ` + t + ` (` + columns + `) VALUES `
	q.insertAuto = `INSERT` + d.insertOr + ` INTO ` + t + ` (` + strings.TrimPrefix(columns, "id, ") + `) VALUES `
	if d.insertColumns != nil {
		q.insertCols = d.insertColumns(t)
		q.copyIn = `COPY ` + t + ` (` + columns + `) FROM STDIN (FORMAT binary)`
	}
	q.maxID = `SELECT MAX(id) FROM ` + t
	q.pruneScan = `SELECT id, time, hash FROM ` + t + ` ORDER BY id LIMIT ` + d.ph(1)
	q.pruneDel = `DELETE FROM ` + t + ` WHERE id <= ` + d.ph(1)
	q.checkpoint = `UPDATE ` + chainTable + ` SET pruned_id = ` + d.ph(1) + `, pruned_hash = ` + d.ph(2) + ` WHERE table_name = ` + d.ph(3)
	q.chainState = `SELECT last_id, last_hash, pruned_id, pruned_hash FROM ` + chainTable + ` WHERE table_name = ` + d.ph(1)
	q.resetHead = `UPDATE ` + chainTable + ` SET last_id = ` + d.ph(1) + `, last_hash = ` + d.ph(2) +
		`, pruned_id = ` + d.ph(3) + `, pruned_hash = ` + d.ph(4) + ` WHERE table_name = ` + d.ph(5)
	q.verifyScan = `SELECT ` + columns + ` FROM ` + t + ` WHERE id > ` + d.ph(1) + ` ORDER BY id LIMIT ` + d.ph(2)
	return q
}

// migrate creates the table, its indexes and the chain head row if missing.
// It is idempotent and safe when several services start together; when
// nothing is missing it only reads, so an existing log opens without the
// write lock.
func (st *store) migrate(ctx context.Context, sess *session) error {
	if sess.d.prepare != nil {
		if err := sess.d.prepare(ctx, sess.sqlDB); err != nil {
			return err
		}
	}
	if schemaReady(ctx, sess) {
		return nil
	}
	err := st.writeTx(ctx, sess, func(tx execer) error {
		if sess.d.lockSchema != nil {
			if err := sess.d.lockSchema(ctx, tx); err != nil {
				return err
			}
		}
		for _, stmt := range sess.q.schema {
			if _, err := tx.ExecContext(ctx, stmt); err != nil {
				return fmt.Errorf("%s: %w", firstWords(stmt), err)
			}
		}
		if _, err := tx.ExecContext(ctx, sess.q.initHead, sess.q.key); err != nil {
			return fmt.Errorf("init chain head: %w", err)
		}
		if _, err := tx.ExecContext(ctx, sess.q.initLog, sess.q.key, newLogID()); err != nil {
			return fmt.Errorf("init log id: %w", err)
		}
		return nil
	})
	if err != nil {
		return st.explain(ctx, sess, err)
	}
	return nil
}

// schemaReady reports, reading only, whether the table, its indexes and
// its chain head row all exist already. Any error means "not known to be
// ready": migrate then creates what is missing.
func schemaReady(ctx context.Context, sess *session) bool {
	args := make([]any, len(sess.q.objects))
	for i, o := range sess.q.objects {
		args[i] = o
	}
	var objects, heads int
	var logID string
	if err := sess.sqlDB.QueryRowContext(ctx, sess.q.objCount, args...).Scan(&objects); err != nil || objects != len(args) {
		return false
	}
	if err := sess.sqlDB.QueryRowContext(ctx, sess.q.headCount, sess.q.key).Scan(&heads); err != nil || heads != 1 {
		return false
	}
	return sess.sqlDB.QueryRowContext(ctx, sess.q.logID, sess.q.key).Scan(&logID) == nil
}

// tablesExist reports, reading only, whether the named tables exist.
func tablesExist(ctx context.Context, sess *session, names []string) bool {
	args := make([]any, len(names))
	phs := make([]string, len(names))
	for i, n := range names {
		args[i], phs[i] = n, sess.d.ph(i+1)
	}
	var n int
	err := sess.sqlDB.QueryRowContext(ctx, sess.d.catalog(strings.Join(phs, ", ")), args...).Scan(&n)
	return err == nil && n == len(names)
}

func firstWords(stmt string) string {
	if i := strings.Index(stmt, "("); i > 0 {
		return strings.TrimSpace(stmt[:i])
	}
	return stmt
}

// ident returns name+suffix, shortened with a hash of name where it would
// pass PostgreSQL's 63-byte limit on identifiers.
func ident(name, suffix string) string {
	if len(name)+len(suffix) <= 63 {
		return name + suffix
	}
	sum := sha256.Sum256([]byte(name))
	return name[:63-len(suffix)-9] + "_" + hex.EncodeToString(sum[:4]) + suffix
}

func quote(id string) string { return `"` + id + `"` }

// Tables returns the names of every table that the log whose entries are in
// table uses: the entries, its outbox, and the tables that logs share (the
// chain heads, the log ids, the Merkle tree and the checkpoints). Adapters
// that audit a database's tables never audit these.
func Tables(table string) []string {
	return []string{table, ident(table, OutboxSuffix), chainTable, logsTable,
		TreeTileTable, TreeEdgeTable, TreeHeadTable, CheckpointTable}
}
