// Package gormaudit records an audit entry for every create, update and
// delete that GORM commits.
//
// Register the plugin on the application's own *gorm.DB:
//
//	svc, _ := audit.New(audit.WithSQLite("audit.db"))
//	plugin, err := gormaudit.New(svc) // an invalid option is an error here
//	...
//	err = db.Use(plugin)
//
// After each successful create, update and delete of a model it records an
// [audit.Entry] with EventType "<table>.create", "<table>.update" or
// "<table>.delete", Resource "<table>/<primary key>" (composite keys are
// joined with commas), the Actor that the statement's context carries
// ([audit.ContextWithActor]; "system" when it carries none, see
// [WithDefaultActor]) and its request ID ([audit.ContextWithRequestID]).
// Details hold the row's values under their column names, as stored:
//
//	create: {"after": {...}}
//	update: {"before": {...}, "after": {...}, "changed": ["column", ...]}
//	delete: {"before": {...}}
//
// The plugin runs around GORM's own gorm:create, gorm:update and
// gorm:delete callbacks, so it sees each statement as every other callback
// has shaped it (hooks, SetColumn, conditions added by callbacks registered
// before or after it). In the statement's own transaction it reads the
// rows an update or delete is about to change just before the statement
// runs, and reads created and updated rows back just after, so that
// defaults, Omit and Select, SQL expressions and automatic timestamps
// show as stored. An upsert (ON CONFLICT) records a create for each row it
// inserted, an update (with before and after) for each existing row it
// changed, and nothing for a row that DO NOTHING left alone. An update of
// a row's own primary key keeps the old key in Resource and shows both in
// before and after. A row whose primary key GORM cannot read (`->:false`)
// is recorded as GORM wrote it, with Resource "<table>".
//
// A replacement of gorm:create, gorm:update or gorm:delete registered
// after the plugin (Callback().Update().Replace) removes the plugin's
// wrapper with it: register such replacements first.
//
// # Batch statements
//
// An update or delete whose model value carries no primary key, such as
//
//	db.Model(&User{}).Where("age > ?", 3).Updates(map[string]any{"tier": 2})
//	db.Where("age > ?", 3).Delete(&User{})
//
// has no single row to name: it records one entry with Resource "<table>"
// and Details {"where": "age > ?", "vars": [3], "rows_affected": N,
// "changes": {...}} ("changes" for updates only): the WHERE clause's SQL
// with the dialect's placeholders (cut at 8 KiB; "" for a global update)
// and the values bound to it (at most 256; "vars_truncated" says when
// there were more). A batch statement that affected no row records
// nothing, as does any statement that failed.
//
// # Secrets
//
// Details never hold a secret in clear, by default:
//
//   - a field tagged `audit:"-"` is left out;
//   - a field tagged `audit:"redact"`, a field tagged `json:"-"` (whatever
//     its audit tag, but "-"), and a column whose name says it holds a
//     secret (password, passwd, passphrase, secret, token, api_key, apikey,
//     private_key, credential, signing_key, encryption_key anywhere in the
//     name; pwd, otp, totp, hotp, mfa, 2fa, seed, pin, cvv, salt as a word
//     of it) are redacted, the last unless tagged `audit:"clear"`;
//   - a value bound to a condition or expression that names a redacted
//     column is redacted: every value of that condition ("vars") or
//     expression.
//
// A redacted value appears as [audit.RedactedPrefix] and the hex
// HMAC-SHA256, under the key of [WithRedactKey], of its canonical JSON: the
// form of the root option [audit.WithRedactKeys], so equal secrets stay
// correlatable but unreadable. Without WithRedactKey it appears as
// "[redacted]". A redacted column still appears in "changed" when it
// changed. Tables without a model (db.Table("t")) are redacted by column
// name alone.
//
// # Transactions
//
// Only committed changes are recorded. How depends on where the log lives,
// which the plugin finds out at db.Use by writing an entry with RecordTx
// in a transaction on the DB that it then rolls back (the Recorder's Ping,
// when it has one, opens the log first):
//
//   - The log on the models' database (the SQLite file the application
//     opens, with any DSN; audit.WithDB(db); the same PostgreSQL
//     database): each entry is written inside the statement's transaction
//     through RecordTx, so it commits if and only if the change commits,
//     across rollbacks to savepoints and across crashes. A refused entry
//     (a closed service, say) fails the statement, so that no change
//     commits unaudited; an entry too large for the log keeps only the
//     names of its columns. The plugin adds nothing to the DB's pool.
//   - The log on another database: entries are recorded with Record after
//     the commit. The plugin places its own pool beneath GORM's pool types
//     (the DB's ConnPool, or the one inside GORM's *gorm.PreparedStmtDB, so
//     that PrepareStmt keeps working and SAVEPOINT is never prepared) and
//     sees every transaction GORM begins on it: entries are held until
//     Commit succeeds and then recorded, in order, and are dropped by
//     Rollback or by a rollback to a savepoint set after them. A crash
//     (kill -9, power loss) after the business commit and before the
//     service commits the entries loses them while the changes stand. A
//     refused Record cannot fail the committed statement: it is logged and
//     counted by [Plugin.Dropped]. A transaction begun outside the plugin's
//     pool (on the connection of db.Connection) cannot be tracked: its
//     entries are recorded at once, before it commits, and a warning is
//     logged the first time. Register the plugin before deriving sessions
//     from the DB: a session made earlier keeps the pool without it.
//
// Outside a transaction (SkipDefaultTransaction) an entry is recorded with
// Record as soon as its statement has run, in either case.
//
// # SQLite
//
// A SQLite transaction that reads before it writes cannot upgrade its read
// once another connection (another request's, or the audit service's
// writer on the same file) has written in between: SQLite fails it at once
// with "database is locked", whatever the busy timeout. So on SQLite the
// plugin takes the write lock as each audited statement's transaction
// begins, before the model's hooks and its own reads run, with a DELETE
// that matches no row; the transaction then waits for the lock like any
// writer. No DSN setting is needed (_txlock=immediate still helps
// transactions that read before their first audited statement).
//
// # What is not recorded
//
// Raw SQL (db.Exec, db.Raw) is not seen. The audit service's own tables
// ([audit.DefaultTable] or the name given to [WithAuditTable], and
// [audit.ChainTable]) and any table named by [WithSkipTables] are never
// audited, so that the service and the models can share one database
// without recursion.
//
// A failure to read the before or after values, which happens inside the
// statement, fails the statement, so that no unaudited change commits.
package gormaudit
