package auditexport

import (
	"context"
	"database/sql"
	"fmt"
	"strings"
	"sync"
	"time"
)

// CursorTable is the table that keeps the exporters' cursors, one row per
// consumer and log table:
//
//	consumer TEXT, table_name TEXT, last_id BIGINT, updated_at TEXT,
//	PRIMARY KEY (consumer, table_name)
//
// last_id is the ID of the last entry delivered; it only moves forward.
const CursorTable = "audit_export_cursors"

// cursorStore reads and writes one cursor row. It creates the table on
// first use.
type cursorStore struct {
	db               *sql.DB
	consumer, table  string
	loadSQL, saveSQL string

	mu    sync.Mutex // guards ready
	ready bool
}

func newCursorStore(db *sql.DB, consumer, table string) *cursorStore {
	ph := func(i int) string { return "?" }
	if !isSQLite(db) {
		ph = func(i int) string { return fmt.Sprintf("$%d", i) }
	}
	return &cursorStore{
		db: db, consumer: consumer, table: table,
		loadSQL: `SELECT last_id FROM ` + CursorTable + ` WHERE consumer = ` + ph(1) + ` AND table_name = ` + ph(2),
		// Forward only: a cursor never moves back, even if two exporters
		// of one consumer were run at once by mistake.
		saveSQL: `INSERT INTO ` + CursorTable + ` (consumer, table_name, last_id, updated_at) VALUES (` + ph(1) + `, ` + ph(2) + `, ` + ph(3) + `, ` + ph(4) + `)
	ON CONFLICT (consumer, table_name) DO UPDATE SET last_id = excluded.last_id, updated_at = excluded.updated_at
	WHERE ` + CursorTable + `.last_id < excluded.last_id`,
	}
}

// isSQLite tells SQLite drivers (placeholders ?) from PostgreSQL's ($1).
func isSQLite(db *sql.DB) bool {
	return strings.Contains(strings.ToLower(fmt.Sprintf("%T", db.Driver())), "sqlite")
}

const cursorSchema = `CREATE TABLE IF NOT EXISTS ` + CursorTable + ` (
	consumer TEXT NOT NULL,
	table_name TEXT NOT NULL,
	last_id BIGINT NOT NULL,
	updated_at TEXT NOT NULL,
	PRIMARY KEY (consumer, table_name))`

func (c *cursorStore) init(ctx context.Context) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.ready {
		return nil
	}
	if _, err := c.db.ExecContext(ctx, cursorSchema); err != nil {
		return fmt.Errorf("create %s: %w", CursorTable, err)
	}
	c.ready = true
	return nil
}

// load returns the stored cursor, 0 when there is none.
func (c *cursorStore) load(ctx context.Context) (int64, error) {
	if err := c.init(ctx); err != nil {
		return 0, err
	}
	var id int64
	err := c.db.QueryRowContext(ctx, c.loadSQL, c.consumer, c.table).Scan(&id)
	if err == sql.ErrNoRows {
		return 0, nil
	}
	if err != nil {
		return 0, fmt.Errorf("read cursor %q: %w", c.consumer, err)
	}
	return id, nil
}

// save records id as the last entry delivered.
func (c *cursorStore) save(ctx context.Context, id int64) error {
	if err := c.init(ctx); err != nil {
		return err
	}
	now := time.Now().UTC().Format(time.RFC3339Nano)
	if _, err := c.db.ExecContext(ctx, c.saveSQL, c.consumer, c.table, id, now); err != nil {
		return fmt.Errorf("save cursor %q at %d: %w", c.consumer, id, err)
	}
	return nil
}
