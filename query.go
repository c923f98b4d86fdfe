package audit

import (
	"context"
	"database/sql"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"time"
)

// Filter selects entries for List and Count. Zero fields do not filter.
type Filter struct {
	Actor     string
	EventType string
	Resource  string
	Outcome   string
	RequestID string
	Since     time.Time // Time >= Since
	Until     time.Time // Time <  Until
	AfterID   int64     // ID >  AfterID (keyset pagination, ascending)
	BeforeID  int64     // ID <  BeforeID (keyset pagination, descending)
	Limit     int       // List only: 0 means 100; more than 10000 or negative is ErrInvalidFilter
	Desc      bool      // List only: newest (highest ID) first
}

// Limits of List.
const (
	DefaultListLimit = 100   // Filter.Limit 0
	MaxListLimit     = 10000 // the largest Filter.Limit
)

// columns are the stored columns, in the order that every SELECT and the
// INSERT use.
const columns = "id, time, event_type, actor, resource, outcome, request_id, details, prev_hash, hash"

// queries are the SQL texts of one table on one dialect, built once when
// the session opens.
type queries struct {
	d     dialect
	table string // quoted
	// key names the table's row in the chain heads: SQLite's names are
	// case-insensitive, so there "Logs" and "logs" are one table and must
	// share one head.
	key        string
	schema     []string
	initHead   string   // arg: table name
	head       string   // arg: table name; locks the row on PostgreSQL
	setHead    string   // args: last_id, last_hash, table name
	get        string   // arg: id
	insertHead string   // INSERT INTO t (columns) VALUES
	pruneScan  string   // args: limit
	pruneDel   string   // arg: last id
	checkpoint string   // args: pruned_id, pruned_hash, table name
	chainState string   // arg: table name
	resetHead  string   // args: last_id, last_hash, pruned_id, pruned_hash, table name
	verifyScan string   // args: after id, limit
	objects    []string // the tables and indexes the schema creates
	objCount   string   // args: objects; counts those that exist
	headCount  string   // arg: table name; counts its chain head row
	tree       treeSQL  // the Merkle tree's tables (tree.go) // HOOK(merkle)
}

func newQueries(d dialect, table string) queries {
	t := quote(table)
	q := queries{d: d, table: t, key: table}
	if !d.postgres {
		q.key = strings.ToLower(table)
	}
	// SQLite: id is the rowid, which every index ends with already.
	// PostgreSQL: indexes name id, and time compares byte-wise (the "C"
	// collation), as the fixed-width text needs.
	idType, idSuffix, timeType := "INTEGER", "", "TEXT"
	if d.postgres {
		idType, idSuffix, timeType = "BIGINT", ", id", `TEXT COLLATE "C"`
	}
	// Time is fixed-width RFC 3339 text (see timeLayout), details the JSON
	// exactly as hashed: both read back byte for byte.
	q.schema = []string{
		`CREATE TABLE IF NOT EXISTS ` + t + ` (
	id ` + idType + ` PRIMARY KEY,
	time ` + timeType + ` NOT NULL,
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
	q.objects = []string{table, chainTable}
	for _, col := range filterColumns {
		index := ident(table, "_"+col+"_idx")
		q.objects = append(q.objects, index)
		q.schema = append(q.schema, `CREATE INDEX IF NOT EXISTS `+quote(index)+` ON `+t+` (`+col+idSuffix+`)`)
	}
	// HOOK(merkle): the Merkle tree's tables.
	q.tree = newTreeSQL(d, table, q.key)
	q.schema, q.objects = append(q.schema, q.tree.schema...), append(q.objects, q.tree.objects...)
	phs := make([]string, len(q.objects))
	for i := range phs {
		phs[i] = d.ph(i + 1)
	}
	q.objCount = `SELECT COUNT(*) FROM sqlite_master WHERE name COLLATE NOCASE IN (` + strings.Join(phs, ", ") + `)`
	if d.postgres {
		q.objCount = `SELECT COUNT(*) FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
	WHERE n.nspname = current_schema() AND c.relname IN (` + strings.Join(phs, ", ") + `)`
	}
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
	q.head = `SELECT last_id, last_hash FROM ` + chainTable + ` WHERE table_name = ` + d.ph(1)
	if d.postgres {
		q.head += ` FOR UPDATE`
	}
	q.setHead = `UPDATE ` + chainTable + ` SET last_id = ` + d.ph(1) + `, last_hash = ` + d.ph(2) + ` WHERE table_name = ` + d.ph(3)
	q.get = `SELECT ` + columns + ` FROM ` + t + ` WHERE id = ` + d.ph(1)
	q.insertHead = `INSERT INTO ` + t + ` (` + columns + `) VALUES `
	q.pruneScan = `SELECT id, time, hash FROM ` + t + ` ORDER BY id LIMIT ` + d.ph(1)
	q.pruneDel = `DELETE FROM ` + t + ` WHERE id <= ` + d.ph(1)
	q.checkpoint = `UPDATE ` + chainTable + ` SET pruned_id = ` + d.ph(1) + `, pruned_hash = ` + d.ph(2) + ` WHERE table_name = ` + d.ph(3)
	q.chainState = `SELECT last_id, last_hash, pruned_id, pruned_hash FROM ` + chainTable + ` WHERE table_name = ` + d.ph(1)
	q.resetHead = `UPDATE ` + chainTable + ` SET last_id = ` + d.ph(1) + `, last_hash = ` + d.ph(2) +
		`, pruned_id = ` + d.ph(3) + `, pruned_hash = ` + d.ph(4) + ` WHERE table_name = ` + d.ph(5)
	q.verifyScan = `SELECT ` + columns + ` FROM ` + t + ` WHERE id > ` + d.ph(1) + ` ORDER BY id LIMIT ` + d.ph(2)
	return q
}

// filterColumns are the indexed columns, one index each, ordered by ID
// within a value so that an equality filter reads in ID order.
var filterColumns = []string{"actor", "event_type", "resource", "outcome", "request_id", "time"}

// Get returns the committed entry with the given ID, or ErrNotFound.
func (s *AuditService) Get(ctx context.Context, id int64) (Entry, error) {
	sess, done, err := s.ready(ctx, "get")
	if err != nil {
		return Entry{}, err
	}
	defer done()
	rows, err := sess.sqlDB.QueryContext(ctx, sess.q.get, id)
	if err != nil {
		return Entry{}, fmt.Errorf("audit: get %d: %w", id, err)
	}
	defer rows.Close()
	if !rows.Next() {
		if err := rows.Err(); err != nil {
			return Entry{}, fmt.Errorf("audit: get %d: %w", id, err)
		}
		return Entry{}, fmt.Errorf("audit: get %d: %w", id, ErrNotFound)
	}
	e, err := scanEntry(rows)
	if err != nil {
		return Entry{}, fmt.Errorf("audit: get %d: %w", id, err)
	}
	return e, nil
}

// List returns the committed entries that f selects, in ascending ID order
// (descending with f.Desc), at most f.Limit of them (100 when zero). Entries
// still queued are not visible: Flush first to read your writes. Page with
// AfterID (ascending) or BeforeID (descending) set to the last ID seen.
func (s *AuditService) List(ctx context.Context, f Filter) ([]Entry, error) {
	if err := f.check(true); err != nil {
		return nil, fmt.Errorf("audit: list: %w", err)
	}
	sess, done, err := s.ready(ctx, "list")
	if err != nil {
		return nil, err
	}
	defer done()
	where, args := sess.q.where(&f)
	limit := f.Limit
	if limit == 0 {
		limit = DefaultListLimit
	}
	order := " ORDER BY id"
	if f.Desc {
		order += " DESC"
	}
	args = append(args, limit)
	query := "SELECT " + columns + " FROM " + sess.q.table + where + order + " LIMIT " + sess.q.d.ph(len(args))
	rows, err := sess.sqlDB.QueryContext(ctx, query, args...)
	if err != nil {
		return nil, fmt.Errorf("audit: list: %w", err)
	}
	defer rows.Close()
	out := make([]Entry, 0, min(limit, 128))
	for rows.Next() {
		e, err := scanEntry(rows)
		if err != nil {
			return nil, fmt.Errorf("audit: list: %w", err)
		}
		out = append(out, e)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("audit: list: %w", err)
	}
	return out, nil
}

// Count returns how many committed entries f selects; it ignores f.Limit
// and f.Desc.
func (s *AuditService) Count(ctx context.Context, f Filter) (int64, error) {
	if err := f.check(false); err != nil {
		return 0, fmt.Errorf("audit: count: %w", err)
	}
	sess, done, err := s.ready(ctx, "count")
	if err != nil {
		return 0, err
	}
	defer done()
	where, args := sess.q.where(&f)
	var n int64
	if err := sess.sqlDB.QueryRowContext(ctx, "SELECT COUNT(*) FROM "+sess.q.table+where, args...).Scan(&n); err != nil {
		return 0, fmt.Errorf("audit: count: %w", err)
	}
	return n, nil
}

// check validates f. Strings that no entry can hold (invalid UTF-8, NUL)
// and times outside the years that entries can have are refused rather
// than sent to the database, which may reject them in its own words.
func (f *Filter) check(list bool) error {
	if list && (f.Limit < 0 || f.Limit > MaxListLimit) {
		return fmt.Errorf("%w: Limit %d is outside 0 through %d", ErrInvalidFilter, f.Limit, MaxListLimit)
	}
	for _, c := range [...]struct{ name, v string }{
		{"Actor", f.Actor}, {"EventType", f.EventType}, {"Resource", f.Resource},
		{"Outcome", f.Outcome}, {"RequestID", f.RequestID},
	} {
		if !utf8Valid(c.v) {
			return fmt.Errorf("%w: %s is not valid UTF-8 without NUL bytes", ErrInvalidFilter, c.name)
		}
	}
	for _, c := range [...]struct {
		name string
		t    time.Time
	}{{"Since", f.Since}, {"Until", f.Until}} {
		if !c.t.IsZero() {
			if y := c.t.UTC().Year(); y < 1 || y > 9999 {
				return fmt.Errorf("%w: %s %s is outside years 1 through 9999 (UTC)", ErrInvalidFilter, c.name, c.t.UTC().Format(time.RFC3339Nano))
			}
		}
	}
	return nil
}

func utf8Valid(s string) bool {
	return checkString("", s, len(s), false) == nil
}

// where returns the WHERE clause of f and its arguments.
func (q *queries) where(f *Filter) (string, []any) {
	var b strings.Builder
	var args []any
	add := func(cond string, arg any) {
		if len(args) == 0 {
			b.WriteString(" WHERE ")
		} else {
			b.WriteString(" AND ")
		}
		args = append(args, arg)
		b.WriteString(cond)
		b.WriteString(q.d.ph(len(args)))
	}
	if f.Actor != "" {
		add("actor = ", f.Actor)
	}
	if f.EventType != "" {
		add("event_type = ", f.EventType)
	}
	if f.Resource != "" {
		add("resource = ", f.Resource)
	}
	if f.Outcome != "" {
		add("outcome = ", f.Outcome)
	}
	if f.RequestID != "" {
		add("request_id = ", f.RequestID)
	}
	if !f.Since.IsZero() {
		add("time >= ", f.Since.UTC().Format(timeLayout))
	}
	if !f.Until.IsZero() {
		add("time < ", f.Until.UTC().Format(timeLayout))
	}
	if f.AfterID != 0 {
		add("id > ", f.AfterID)
	}
	if f.BeforeID != 0 {
		add("id < ", f.BeforeID)
	}
	return b.String(), args
}

// scanEntry reads one row of columns.
func scanEntry(rows *sql.Rows) (Entry, error) {
	id, r, prevHash, hash, err := scanRow(rows)
	if err != nil {
		return Entry{}, err
	}
	return r.entry(id, prevHash, hash)
}

// scanRow reads one row of columns as stored: Verify hashes these bytes.
func scanRow(rows *sql.Rows) (id int64, r record, prevHash, hash string, err error) {
	err = rows.Scan(&id, &r.time, &r.eventType, &r.actor, &r.resource, &r.outcome, &r.requestID, &r.details, &prevHash, &hash)
	return id, r, prevHash, hash, err
}

// insertBatch writes recs in one transaction: it reads the chain head,
// links and hashes the entries after it, inserts them in multi-row INSERTs
// and advances the head, so that the chain cannot fork however many
// services write the table.
func (s *AuditService) insertBatch(ctx context.Context, sess *session, recs []*record) error {
	text := insertTextOf(&sess.q)
	if err := sess.refuseWrite(); err != nil { // HOOK(merkle): the chain key must match the log's
		return err
	}
	return s.writeTx(ctx, sess, func(tx execer) error {
		var lastID int64
		var lastHash string
		if err := tx.QueryRowContext(ctx, sess.q.head, sess.q.key).Scan(&lastID, &lastHash); err != nil {
			return fmt.Errorf("read chain head: %w", err)
		}
		firstID, firstPrev, hashes := lastID+1, lastHash, make([]string, 0, len(recs)) // HOOK(merkle)
		// On SQLite, compiling a multi-row INSERT costs about as much per
		// row as binding its values: a batch prepares one of
		// sqliteInsertRows rows once and runs it for every full chunk.
		// (PostgreSQL's driver caches statements by their text itself,
		// and fewer statements save round trips.)
		rowsPer := insertChunk
		if !sess.d.postgres {
			rowsPer = sqliteInsertRows
		}
		var full *sql.Stmt
		if p, ok := tx.(preparer); ok && !sess.d.postgres && len(recs) >= 2*rowsPer {
			stmt, err := p.PrepareContext(ctx, text.rows(rowsPer))
			if err != nil {
				return fmt.Errorf("prepare insert: %w", err)
			}
			defer stmt.Close()
			full = stmt
		}
		args := make([]any, 0, min(len(recs), rowsPer)*10)
		for start := 0; start < len(recs); start += rowsPer {
			chunk := recs[start:min(start+rowsPer, len(recs))]
			args = args[:0]
			for _, r := range chunk {
				lastID++
				hash := s.chain.hash(lastHash, r)
				var details any
				if r.details != nil {
					details = string(r.details)
				}
				args = append(args, lastID, r.time, r.eventType, r.actor, r.resource, r.outcome, r.requestID, details, lastHash, hash)
				lastHash = hash
				hashes = append(hashes, hash) // HOOK(merkle)
			}
			var err error
			if full != nil && len(chunk) == rowsPer {
				_, err = full.ExecContext(ctx, args...)
			} else {
				_, err = tx.ExecContext(ctx, text.rows(len(chunk)), args...)
			}
			if err != nil {
				return fmt.Errorf("insert %d entries: %w", len(chunk), err)
			}
		}
		if err := s.treeAppend(ctx, tx, sess, firstID, firstPrev, hashes); err != nil { // HOOK(merkle): advance the tree
			return fmt.Errorf("advance the Merkle tree: %w", err)
		}
		if _, err := tx.ExecContext(ctx, sess.q.setHead, lastID, lastHash, sess.q.key); err != nil {
			return fmt.Errorf("advance chain head: %w", err)
		}
		return nil
	})
}

// preparer is the PrepareContext of *sql.Conn and *sql.Tx.
type preparer interface {
	PrepareContext(ctx context.Context, query string) (*sql.Stmt, error)
}

// insertText is the multi-row INSERT of one table on one dialect: the
// text for insertChunk rows, of which the text for n rows is a prefix
// (placeholders are numbered from the first row on), so that no batch
// builds SQL.
type insertText struct {
	sql  string
	ends [insertChunk + 1]int // ends[n] is the length of the text for n rows
}

// rows returns the INSERT of n rows, 1 <= n <= insertChunk.
func (t *insertText) rows(n int) string { return t.sql[:t.ends[n]] }

// insertTexts caches the insertText of every table and dialect that a
// service of this process has written: a few kilobytes each.
var insertTexts sync.Map // insertTextKey -> *insertText

type insertTextKey struct {
	head     string // queries.insertHead: names the table
	postgres bool   // the placeholders' style
}

// insertTextOf returns q's insertText, building it on first use.
func insertTextOf(q *queries) *insertText {
	key := insertTextKey{q.insertHead, q.d.postgres}
	if t, ok := insertTexts.Load(key); ok {
		return t.(*insertText)
	}
	t := new(insertText)
	var b strings.Builder
	b.WriteString(q.insertHead)
	arg := 0
	for row := 1; row <= insertChunk; row++ {
		if row > 1 {
			b.WriteByte(',')
		}
		b.WriteByte('(')
		for c := 0; c < 10; c++ {
			if c > 0 {
				b.WriteByte(',')
			}
			arg++
			b.WriteString(q.d.ph(arg))
		}
		b.WriteByte(')')
		t.ends[row] = b.Len()
	}
	t.sql = b.String()
	cached, _ := insertTexts.LoadOrStore(key, t)
	return cached.(*insertText)
}

// insertChunk is the most rows per INSERT statement: 10 arguments a row
// stays below SQLite's and PostgreSQL's limits on bound parameters.
const insertChunk = 256

// sqliteInsertRows is the rows per INSERT on SQLite: small enough that
// compiling it once per batch costs little (a 256-row INSERT took 0.4 ms
// to prepare, 1.6 µs a row), big enough that running it once per chunk
// does too.
const sqliteInsertRows = 64

func itoa(n int64) string { return strconv.FormatInt(n, 10) }
