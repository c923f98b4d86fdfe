package gormaudit

import (
	"context"
	"errors"
	"fmt"
	"reflect"
	"regexp"
	"sort"
	"strings"

	"github.com/cleveragents/audit"
	"gorm.io/gorm"
	"gorm.io/gorm/clause"
	"gorm.io/gorm/schema"
)

// Bounds on a batch entry's condition, so that a long IN list cannot push
// Details over the service's size limit.
const (
	maxWhere = 8 << 10 // bytes of "where"
	maxVars  = 256     // values in "vars"
)

// readBefore reads, for a model value with primary keys, the rows that the
// statement's WHERE clause and those keys select: the rows it is about to
// change. model is false for a batch statement (no keys): it has no rows
// to read. A failed read fails the statement.
func (p *Plugin) readBefore(db *gorm.DB, op string, keys []clause.Expression) (rows []row, model bool, err error) {
	stmt := db.Statement
	if op == opDelete && stmt.ReflectValue.CanAddr() && stmt.Dest != stmt.Model && stmt.Model != nil {
		// gorm:delete also restricts a delete to the keys of the Model,
		// under this same condition (CanAddr first: it makes Dest a
		// pointer, which compares without panicking).
		keys = append(keys, primaryKeyConds(db, reflect.ValueOf(stmt.Model))...)
	}
	if len(keys) == 0 {
		return nil, false, nil
	}
	rows, err = p.readRows(db, append(whereExprs(stmt), keys...), stmt.Unscoped, true)
	if err != nil {
		return nil, true, fmt.Errorf("gormaudit: read %s before %s: %w", tableName(stmt), op, err)
	}
	return rows, true, nil
}

// readRows reads, in the statement's transaction, the rows of its table
// (under the statement's alias, if it has one) that conds select.
// forUpdate locks them where the dialect can.
func (p *Plugin) readRows(db *gorm.DB, conds []clause.Expression, unscoped, forUpdate bool) ([]row, error) {
	stmt := db.Statement
	dest := reflect.New(reflect.SliceOf(stmt.Schema.ModelType))
	q := db.Session(&gorm.Session{NewDB: true, SkipHooks: true})
	if te := stmt.TableExpr; te != nil && tableName(stmt) != stmt.Table {
		q = q.Table(te.SQL, te.Vars...) // "users u": conditions name u
	} else {
		q = q.Table(stmt.Table)
	}
	q.Statement.ConnPool = unprepared(stmt.ConnPool) // q's own Statement, since Table
	if unscoped {
		q = q.Unscoped()
	}
	q = q.Clauses(clause.Where{Exprs: conds})
	if forUpdate {
		q = q.Clauses(clause.Locking{Strength: clause.LockingStrengthUpdate})
	}
	if err := q.Find(dest.Interface()).Error; err != nil {
		return nil, err
	}
	slice := dest.Elem()
	rows := make([]row, 0, slice.Len())
	for i := 0; i < slice.Len(); i++ {
		if r, ok := p.structRow(db, slice.Index(i), false); ok {
			rows = append(rows, r)
		}
	}
	return rows, nil
}

// readByColumns reads the rows whose cols hold the values that the model
// values vs hold there, keyed by those values (see keyOf). A value whose
// cols are all zero (an auto-increment key not yet assigned) selects
// nothing.
func (p *Plugin) readByColumns(db *gorm.DB, cols []string, vs []reflect.Value) (map[string]row, error) {
	s := db.Statement.Schema
	if s == nil || len(cols) == 0 {
		return nil, nil
	}
	var tuples [][]any
	for _, v := range vs {
		if t, ok := p.tuple(db, v, cols); ok {
			tuples = append(tuples, t)
		}
	}
	if len(tuples) == 0 {
		return nil, nil
	}
	column, values := schema.ToQueryValues("", cols, tuples)
	rows, err := p.readRows(db, []clause.Expression{clause.IN{Column: column, Values: values}}, true, false)
	if err != nil {
		return nil, err
	}
	out := make(map[string]row, len(rows))
	for _, r := range rows {
		canons := make([]string, len(cols))
		for i, c := range cols {
			canons[i] = r.canon[c]
		}
		out["["+strings.Join(canons, ",")+"]"] = r
	}
	return out, nil
}

// tuple returns the values of cols in the model value v; false when a
// column is unknown or all of them are zero.
func (p *Plugin) tuple(db *gorm.DB, v reflect.Value, cols []string) ([]any, bool) {
	s := db.Statement.Schema
	t := make([]any, len(cols))
	allZero := true
	for i, c := range cols {
		f := s.LookUpField(c)
		if f == nil {
			return nil, false
		}
		fv, zero := f.ValueOf(db.Statement.Context, v)
		t[i], allZero = fv, allZero && zero
	}
	return t, !allZero
}

// keyOf returns the key that readByColumns gives the row v would read
// back as.
func (p *Plugin) keyOf(db *gorm.DB, v reflect.Value, cols []string) (string, bool) {
	t, ok := p.tuple(db, v, cols)
	if !ok {
		return "", false
	}
	canons := make([]string, len(t))
	for i, x := range t {
		_, canons[i] = normalize(x)
	}
	return "[" + strings.Join(canons, ",") + "]", true
}

// structValues returns the model values in rv: rv itself, or the elements
// of a slice or array of them.
func (p *Plugin) structValues(db *gorm.DB, rv reflect.Value) []reflect.Value {
	s := db.Statement.Schema
	if s == nil {
		return nil
	}
	var out []reflect.Value
	switch rv.Kind() {
	case reflect.Struct:
		if rv.Type() == s.ModelType {
			out = append(out, rv)
		}
	case reflect.Slice, reflect.Array:
		for i := 0; i < rv.Len(); i++ {
			if e := reflect.Indirect(rv.Index(i)); e.Kind() == reflect.Struct && e.Type() == s.ModelType {
				out = append(out, e)
			}
		}
	}
	return out
}

// modelKeys returns the condition on the primary keys that the model value
// of a statement carries, or nil when it carries none (or the model has no
// primary key).
func modelKeys(db *gorm.DB) []clause.Expression {
	if s := db.Statement.Schema; s == nil || len(s.PrimaryFields) == 0 {
		return nil
	}
	return primaryKeyConds(db, db.Statement.ReflectValue)
}

// primaryKeyConds returns the condition on the primary keys that v (a
// struct, or a slice or array of them) carries, or nil when it carries
// none. The columns are not qualified by the table, so that the condition
// holds under an alias too.
func primaryKeyConds(db *gorm.DB, v reflect.Value) []clause.Expression {
	for v.Kind() == reflect.Pointer || v.Kind() == reflect.Interface {
		if v.IsNil() {
			return nil
		}
		v = v.Elem()
	}
	if k := v.Kind(); k != reflect.Struct && k != reflect.Slice && k != reflect.Array {
		return nil
	}
	s := db.Statement.Schema
	if v.Kind() == reflect.Struct && v.Type() != s.ModelType {
		return nil
	}
	_, values := schema.GetIdentityFieldValuesMap(db.Statement.Context, v, s.PrimaryFields)
	if len(values) == 0 {
		return nil
	}
	return pkIn(db.Statement, values)
}

// pkIn returns the condition that the primary key is one of keys.
func pkIn(stmt *gorm.Statement, keys [][]any) []clause.Expression {
	column, vals := schema.ToQueryValues("", stmt.Schema.PrimaryFieldDBNames, keys)
	return []clause.Expression{clause.IN{Column: column, Values: vals}}
}

// unprepared returns the pool or transaction under GORM's prepared-
// statement types, so that the plugin's own statements do not fill the
// statement cache of a DB with PrepareStmt (GORM does the same for
// SAVEPOINT).
func unprepared(pool gorm.ConnPool) gorm.ConnPool {
	switch p := pool.(type) {
	case *gorm.PreparedStmtTX:
		return p.Tx
	case *gorm.PreparedStmtDB:
		return p.ConnPool
	}
	return pool
}

// tableName returns the name of the statement's table, which is not
// stmt.Table when the statement names it with an alias ("users AS u"):
// GORM's Statement.Table is then the alias.
func tableName(stmt *gorm.Statement) string {
	te := stmt.TableExpr
	if te == nil {
		return stmt.Table
	}
	sql := strings.TrimSpace(te.SQL)
	i := strings.IndexAny(sql, " \t\r\n")
	if i < 0 {
		return stmt.Table
	}
	return strings.Trim(sql[:i], "`\"[]")
}

// whereExprs returns the expressions of the statement's WHERE clause.
func whereExprs(stmt *gorm.Statement) []clause.Expression {
	c, ok := stmt.Clauses["WHERE"]
	if !ok {
		return nil
	}
	w, ok := c.Expression.(clause.Where)
	if !ok {
		return nil
	}
	return append([]clause.Expression(nil), w.Exprs...)
}

// batchDetails returns the condition of a statement without a model row:
// its SQL with the dialect's placeholders ("where", cut at 8 KiB) and the
// values bound to them ("vars"), all redacted when the condition names a
// redacted column (see the package doc), and the rows it affected.
func (p *Plugin) batchDetails(db *gorm.DB) map[string]any {
	d := map[string]any{"where": "", "rows_affected": db.RowsAffected}
	exprs := whereExprs(db.Statement)
	if len(exprs) == 0 {
		return d
	}
	sql, vars := buildExpr(db, clause.Where{Exprs: exprs})
	if len(sql) > maxWhere {
		cut := maxWhere
		for cut > 0 && !isRuneStart(sql[cut]) {
			cut--
		}
		sql = sql[:cut] + "..."
	}
	d["where"] = sql
	if len(vars) > 0 {
		if len(vars) > maxVars {
			vars, d["vars_truncated"] = vars[:maxVars], true
		}
		d["vars"] = p.values(db, sql, vars)
	}
	return d
}

// values returns the values bound to sql as Details hold them: redacted
// when sql names a redacted column.
func (p *Plugin) values(db *gorm.DB, sql string, vars []any) []any {
	secret := p.namesSecret(db, sql)
	out := make([]any, len(vars))
	for i, v := range vars {
		nv, canon := normalize(v)
		if secret {
			nv = p.redacted(canon)
		}
		out[i] = nv
	}
	return out
}

// setChanges returns the assignments of an update's SET clause by column,
// as rows show them; an SQL expression appears as its text with its
// values written in (redacted when it names a redacted column).
func (p *Plugin) setChanges(db *gorm.DB, set clause.Set) map[string]any {
	changes := map[string]any{}
	for _, a := range set {
		col := a.Column.Name
		pol := columnPolicy(db.Statement.Schema, col)
		if pol == omit {
			continue
		}
		var v any = a.Value
		if expr, ok := v.(clause.Expression); ok {
			v = p.exprText(db, expr)
		}
		nv, canon := normalize(v)
		if pol == redact {
			nv = p.redacted(canon)
		}
		changes[col] = nv
	}
	return changes
}

// buildExpr builds expr as the statement would: its SQL with the
// dialect's placeholders, and the values bound to them.
func buildExpr(db *gorm.DB, expr clause.Expression) (string, []any) {
	st := &gorm.Statement{
		DB:      db,
		Table:   db.Statement.Table,
		Schema:  db.Statement.Schema,
		Context: db.Statement.Context,
		Clauses: map[string]clause.Clause{},
	}
	expr.Build(st)
	return st.SQL.String(), st.Vars
}

// exprText returns expr's SQL with its values written in, as the
// dialect's logger shows it, the values redacted when it names a redacted
// column.
func (p *Plugin) exprText(db *gorm.DB, expr clause.Expression) string {
	sql, vars := buildExpr(db, expr)
	if p.namesSecret(db, sql) {
		for i, v := range vars {
			_, canon := normalize(v)
			vars[i] = p.redacted(canon)
		}
	}
	return db.Dialector.Explain(sql, vars...)
}

// identifier matches the words of SQL text that may name a column.
var identifier = regexp.MustCompile(`[A-Za-z_][A-Za-z0-9_]*`)

// namesSecret reports whether SQL text names a column whose values are
// redacted: one of the model's (by its tags and name) or, for any table,
// one whose name says it holds a secret.
func (p *Plugin) namesSecret(db *gorm.DB, sql string) bool {
	for _, w := range identifier.FindAllString(sql, -1) {
		if columnPolicy(db.Statement.Schema, w) == redact {
			return true
		}
	}
	return false
}

func isRuneStart(b byte) bool { return b&0xC0 != 0x80 }

// changed returns the columns whose values differ between two versions of
// a row, sorted.
func changed(before, after row) []string {
	cols := []string{}
	for col, c := range after.canon {
		if b, ok := before.canon[col]; !ok || b != c {
			cols = append(cols, col)
		}
	}
	for col := range before.canon {
		if _, ok := after.canon[col]; !ok {
			cols = append(cols, col)
		}
	}
	sort.Strings(cols)
	return cols
}

// emit writes entries inside the statement's transaction when the log is
// on its database, or holds them in the transaction until it commits, or,
// outside a transaction, records them now.
func (p *Plugin) emit(db *gorm.DB, entries []audit.Entry) {
	if len(entries) == 0 {
		return
	}
	ctx := db.Statement.Context
	tx, inTx := txOf(db.Statement.ConnPool)
	if inTx && p.txRec != nil {
		for _, e := range entries {
			if err := p.recordTx(db, e); err != nil {
				// Fail the statement: its transaction must not commit a
				// change without its entry.
				db.AddError(fmt.Errorf("gormaudit: record %s of %s: %w", e.EventType, e.Resource, err))
				return
			}
		}
		return
	}
	if tx != nil && tx.add(ctx, entries) {
		return
	}
	if inTx && tx == nil && p.warned.CompareAndSwap(false, true) {
		p.cfg.logger.Warn("gormaudit: a transaction begun outside the plugin's connection pool cannot be tracked; its changes are recorded before it commits",
			"table", db.Statement.Table)
	}
	for _, e := range entries {
		p.record(ctx, e)
	}
}

// recordTx writes e inside the statement's transaction. An entry too
// large for the log keeps only its columns' names, so that the change can
// still commit, audited.
func (p *Plugin) recordTx(db *gorm.DB, e audit.Entry) error {
	ctx := db.Statement.Context
	err := p.txRec.RecordTx(ctx, db, e)
	if err == nil || !errors.Is(err, audit.ErrInvalidEntry) || e.Details == nil {
		return err
	}
	e.Details = shrunk(e.Details)
	return p.txRec.RecordTx(ctx, db, e)
}

// shrunk returns Details that keep only the names of the columns, for an
// entry whose values are too large to record.
func shrunk(d map[string]any) map[string]any {
	out := map[string]any{"values_omitted": "too large to record"}
	if ch, ok := d["changed"]; ok {
		out["changed"] = ch
	}
	for _, k := range []string{"after", "before"} {
		if m, ok := d[k].(map[string]any); ok {
			cols := make([]string, 0, len(m))
			for c := range m {
				cols = append(cols, c)
			}
			sort.Strings(cols)
			out["columns"] = cols
		}
	}
	return out
}

// record hands e to the service. The change it describes has happened, so
// a refusal is logged and counted, not returned.
func (p *Plugin) record(ctx context.Context, e audit.Entry) {
	// The change has committed: its entry must not depend on the caller's
	// ctx any more (a client that hangs up cancels a request's ctx). The
	// ctx's values (actor, request ID) stay.
	if err := p.rec.Record(context.WithoutCancel(ctx), e); err != nil {
		p.dropped.Add(1)
		p.cfg.logger.Error("gormaudit: change not audited", "event_type", e.EventType, "resource", e.Resource, "err", err)
	}
}
