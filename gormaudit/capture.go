package gormaudit

import (
	"fmt"
	"reflect"
	"sort"
	"strings"

	"gorm.io/gorm"
	"gorm.io/gorm/clause"
	"gorm.io/gorm/schema"
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
