package audit

import (
	"context"
	"database/sql"
	"strings"
)

// A dialect is everything that differs between the databases the library
// supports: sqlite.go and postgres.go each define one and register it
// under the names GORM's dialectors report. The rest of the package uses a
// dialect's values and funcs and never asks which database it is on, so a
// third database is one new file.
type dialect struct {
	name string // as in errors and logs

	// ph returns the placeholder of the n-th (1-based) argument.
	ph func(n int) string

	// serialKey is the type of an auto-numbered primary key column.
	serialKey string
	// The schema: the id column's type, what every filter index appends
	// to its column (", id" where id is not the rowid already), and the
	// time column's type, which must compare byte-wise.
	idType, indexSuffix, timeType string
	// hashKey, where non-nil, returns the expression that indexes a text
	// of hashedColumns by a 64-bit hash of it (an argument or a column):
	// a B-tree of integers costs the server less per insert, on the
	// random keys those columns hold, than one of the texts. A query that
	// filters on such a column compares both the hashes and the texts.
	hashKey func(text string) string
	// blobType is the type of a column of bytes; keyedTable ends a CREATE
	// TABLE whose rows are found by their primary key only (SQLite's
	// WITHOUT ROWID).
	blobType, keyedTable string
	// catalog returns the query that counts how many of the objects (its
	// arguments, placeholders phs) exist.
	catalog func(phs string) string
	// tableKey names a table's row in the chain heads: the name as the
	// database compares table names.
	tableKey func(table string) string
	// lockHead is appended to the SELECT of the chain head inside a write
	// transaction, so that writers and prunes of every process take turns
	// on it ("" where the write transaction holds the database's only
	// write lock already).
	lockHead string

	// prepare runs once when a session opens, before the schema is
	// checked (SQLite switches the file to WAL); nil when there is nothing
	// to do.
	prepare func(ctx context.Context, db *sql.DB) error
	// lockSchema makes services that start together take turns creating
	// the schema, inside its transaction; nil where the write lock does.
	lockSchema func(ctx context.Context, tx execer) error
	// begin starts a write transaction.
	begin func(ctx context.Context, db *sql.DB) (writeTxn, error)
	// readOpts are the options of Verify's read transaction, which must
	// see one snapshot.
	readOpts *sql.TxOptions

	// insertRows is the most rows per INSERT statement; prepareInsert says
	// whether a batch prepares the full-size INSERT once and runs it for
	// every full chunk (where compiling costs more than a round trip).
	insertRows    int
	prepareInsert bool
	// insertColumns, where non-nil, returns the INSERT of a whole batch in
	// one statement into the (quoted) table, whose arguments are one slice
	// per column in the order of columns: []int64 IDs, []*string Details
	// (nil is NULL), []string for the rest. One statement a batch, of
	// ten arguments, costs the driver and the server less than
	// insertRows-row VALUES lists (PostgreSQL's unnest of arrays).
	insertColumns func(table string) string
	// autoID says that a row inserted without an id gets one more than
	// the table's largest (SQLite's rowid), which the writer uses to
	// leave the id out of its INSERTs (see appendChain).
	autoID bool
	// insertOr is the conflict clause of the writer's INSERTs (" OR
	// FAIL" on SQLite, where the default, ABORT, makes a multi-row INSERT
	// keep a statement journal; the writer rolls back the whole batch on
	// any error anyway).
	insertOr string

	// checkpoint copies the WAL into the database beside the writer
	// (walcheckpoint.go) and returns the frames the WAL holds; nil where
	// the database does it itself.
	checkpoint func(ctx context.Context, db *sql.DB) (walFrames int, err error)

	// isBusy reports whether err means the database is locked by another
	// writer, to be retried.
	isBusy func(err error) bool
	// retryNow reports whether err means the database asks for the write
	// transaction to be run again at once (a serialization failure): not an
	// outage, and not counted as one. nil where there is no such error.
	retryNow func(err error) bool
	// explain returns err as a permanentError (permanent.go) when retrying
	// cannot fix it, with the cause in words a user can act on, and nil
	// otherwise. file is the SQLite file of WithSQLite ("" otherwise).
	explain func(file string, err error) error
	// indexOwners returns the query that lists which of the named objects
	// (placeholders phs) are not indexes of the table (placeholder table).
	indexOwners func(phs, table string) string
}

// dialects maps the names GORM's dialectors report to their dialect.
var dialects = map[string]*dialect{}

// register makes d the dialect of the dialectors named names.
func register(d *dialect, names ...string) {
	for _, n := range names {
		dialects[n] = d
	}
}

// dialectFor returns the dialect of a GORM dialector's name.
func dialectFor(name string) (*dialect, bool) {
	d, ok := dialects[name]
	return d, ok
}

// supportedDialects lists the names of the supported databases, for errors.
func supportedDialects() string {
	seen := map[string]bool{}
	var names []string
	for _, d := range dialects {
		if !seen[d.name] {
			seen[d.name] = true
			names = append(names, d.name)
		}
	}
	if len(names) == 2 && names[0] > names[1] {
		names[0], names[1] = names[1], names[0]
	}
	return strings.Join(names, " or ")
}

// execer is what a write transaction runs its statements on.
type execer interface {
	ExecContext(ctx context.Context, query string, args ...any) (sql.Result, error)
	QueryContext(ctx context.Context, query string, args ...any) (*sql.Rows, error)
	QueryRowContext(ctx context.Context, query string, args ...any) *sql.Row
}

// writeTxn is a write transaction that a dialect began.
type writeTxn interface {
	execer
	// commit commits; it runs to its end whatever the ctx of begin does.
	commit() error
	// rollback ends the transaction without its changes, and makes sure
	// that a connection it could not clean up is not reused.
	rollback()
}
