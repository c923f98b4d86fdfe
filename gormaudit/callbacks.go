package gormaudit

import (
	"context"
	"fmt"
	"reflect"
	"sort"
	"strings"

	"github.com/cleveragents/audit"
	"gorm.io/gorm"
	"gorm.io/gorm/callbacks"
	"gorm.io/gorm/clause"
	"gorm.io/gorm/schema"
)

// Operations, the suffixes of EventType.
const (
	opCreate = "create"
	opUpdate = "update"
	opDelete = "delete"
)

// maxWhere bounds the condition text of a batch entry, so that a long IN
// list cannot push Details over the service's size limit.
const maxWhere = 8 << 10

// stateKey is where a before callback leaves its state for the after
// callback of the same statement (db.InstanceSet).
const stateKey = "gormaudit:state"

// opState is what the before callback of an update or delete learned.
type opState struct {
	rows     []row // model mode: the rows the statement is about to change
	model    bool  // the model value carries primary keys: one entry per row
	addedSet bool  // beforeUpdate built the SET clause: remove it afterwards
}

// beforeUpdate runs just before gorm:update, inside the statement's
// transaction. It builds the SET clause as gorm:update would (the same
// exported function, so that the assignments and the primary-key
// conditions they add are exactly GORM's), which lets the after callback
// read the assignments and lets the WHERE clause name the rows; then, for a
// model with primary keys, it reads the rows' current values.
func (p *Plugin) beforeUpdate(db *gorm.DB) {
	if !p.audited(db) || db.Error != nil {
		return
	}
	stmt := db.Statement
	st := &opState{}
	db.InstanceSet(stateKey, st)
	if stmt.SQL.Len() == 0 && stmt.Schema != nil {
		if _, ok := stmt.Clauses["SET"]; !ok {
			if set := callbacks.ConvertToAssignments(stmt); len(set) != 0 {
				stmt.AddClause(set)
				st.addedSet = true
			}
		}
	}
	p.loadBefore(db, st, opUpdate)
}

// beforeDelete runs just before gorm:delete, inside the statement's
// transaction, and reads the current values of the rows a model delete is
// about to remove.
func (p *Plugin) beforeDelete(db *gorm.DB) {
	if !p.audited(db) || db.Error != nil {
		return
	}
	st := &opState{}
	db.InstanceSet(stateKey, st)
	p.loadBefore(db, st, opDelete)
}

// loadBefore reads, for a model value with primary keys, the rows that the
// statement's WHERE clause and those keys select: the rows it is about to
// change. A failed read fails the statement.
func (p *Plugin) loadBefore(db *gorm.DB, st *opState, op string) {
	stmt := db.Statement
	if stmt.Schema == nil || len(stmt.Schema.PrimaryFields) == 0 {
		return
	}
	keys := primaryKeyConds(db, stmt.ReflectValue)
	if op == opDelete && stmt.ReflectValue.CanAddr() && stmt.Dest != stmt.Model && stmt.Model != nil {
		// gorm:delete also restricts a delete to the keys of the Model,
		// under this same condition (CanAddr first: it makes Dest a
		// pointer, which compares without panicking).
		keys = append(keys, primaryKeyConds(db, reflect.ValueOf(stmt.Model))...)
	}
	if len(keys) == 0 {
		return
	}
	st.model = true
	conds := append(whereExprs(stmt), keys...)
	rows, err := p.loadRows(db, conds, stmt.Unscoped, true)
	if err != nil {
		db.AddError(fmt.Errorf("gormaudit: read %s before %s: %w", stmt.Table, op, err))
		return
	}
	st.rows = rows
}

// afterCreate records one entry per created row.
func (p *Plugin) afterCreate(db *gorm.DB) {
	if !p.audited(db) || db.Error != nil || db.RowsAffected == 0 {
		return
	}
	stmt := db.Statement
	var entries []audit.Entry
	add := func(r row) {
		entries = append(entries, p.entry(db, opCreate, r.resource(stmt.Table), map[string]any{"after": r.values}))
	}
	rv := reflect.Indirect(stmt.ReflectValue)
	switch rv.Kind() {
	case reflect.Struct:
		if r, ok := p.structRow(db, rv); ok {
			add(r)
		}
	case reflect.Map:
		add(p.mapRow(db, rv))
	case reflect.Slice, reflect.Array:
		for i := 0; i < rv.Len(); i++ {
			elem := reflect.Indirect(rv.Index(i))
			switch elem.Kind() {
			case reflect.Struct:
				if r, ok := p.structRow(db, elem); ok {
					add(r)
				}
			case reflect.Map:
				add(p.mapRow(db, elem))
			}
		}
	}
	p.emit(db, entries)
}

// afterUpdate records the update: one entry per row in model mode, with
// the values read back from the database; one batch entry otherwise.
func (p *Plugin) afterUpdate(db *gorm.DB) {
	st := p.state(db)
	if st == nil {
		return
	}
	if st.addedSet {
		// gorm:update removes the SET clause it builds; do the same for
		// the one beforeUpdate built in its place.
		defer delete(db.Statement.Clauses, "SET")
	}
	if db.Error != nil || db.RowsAffected == 0 {
		return
	}
	stmt := db.Statement
	if !st.model {
		details := p.batchDetails(db)
		details["changes"] = p.setChanges(db)
		p.emit(db, []audit.Entry{p.entry(db, opUpdate, stmt.Table, details)})
		return
	}
	if len(st.rows) == 0 {
		return
	}
	pks := make([][]any, len(st.rows))
	for i, r := range st.rows {
		pks[i] = r.pk
	}
	column, values := schema.ToQueryValues(stmt.Table, stmt.Schema.PrimaryFieldDBNames, pks)
	after, err := p.loadRows(db, []clause.Expression{clause.IN{Column: column, Values: values}}, true, false)
	if err != nil {
		db.AddError(fmt.Errorf("gormaudit: read %s after update: %w", stmt.Table, err))
		return
	}
	byKey := make(map[string]row, len(after))
	for _, r := range after {
		byKey[r.key] = r
	}
	entries := make([]audit.Entry, 0, len(st.rows))
	for _, before := range st.rows {
		a, ok := byKey[before.key]
		if !ok {
			continue // the update changed the key itself: nothing to compare
		}
		entries = append(entries, p.entry(db, opUpdate, before.resource(stmt.Table), map[string]any{
			"before":  before.values,
			"after":   a.values,
			"changed": changed(before, a),
		}))
	}
	p.emit(db, entries)
}

// afterDelete records the delete: one entry per row in model mode, with
// the values read before it; one batch entry otherwise.
func (p *Plugin) afterDelete(db *gorm.DB) {
	st := p.state(db)
	if st == nil || db.Error != nil || db.RowsAffected == 0 {
		return
	}
	stmt := db.Statement
	if !st.model {
		p.emit(db, []audit.Entry{p.entry(db, opDelete, stmt.Table, p.batchDetails(db))})
		return
	}
	entries := make([]audit.Entry, 0, len(st.rows))
	for _, r := range st.rows {
		entries = append(entries, p.entry(db, opDelete, r.resource(stmt.Table), map[string]any{"before": r.values}))
	}
	p.emit(db, entries)
}

// audited reports whether the statement's changes are recorded: not a dry
// run, and not on a skipped table.
func (p *Plugin) audited(db *gorm.DB) bool {
	t := db.Statement.Table
	return !db.DryRun && t != "" && !p.cfg.tables[strings.ToLower(t)]
}

// state returns what the before callback of this statement left, and
// clears it: a *gorm.DB reused for a second statement shares the first
// one's instance settings.
func (p *Plugin) state(db *gorm.DB) *opState {
	v, ok := db.InstanceGet(stateKey)
	if !ok {
		return nil
	}
	st, _ := v.(*opState)
	if st != nil {
		db.InstanceSet(stateKey, (*opState)(nil))
	}
	return st
}

// entry builds the entry of one change. Actor and RequestID come from the
// statement's context now, because a transaction's entries are recorded
// later, at Commit.
func (p *Plugin) entry(db *gorm.DB, op, resource string, details map[string]any) audit.Entry {
	ctx := db.Statement.Context
	actor, _ := audit.ActorFromContext(ctx)
	if actor == "" {
		actor = p.cfg.actor
	}
	reqID, _ := audit.RequestIDFromContext(ctx)
	return audit.Entry{
		EventType: db.Statement.Table + "." + op,
		Actor:     actor,
		Resource:  resource,
		RequestID: reqID,
		Details:   details,
	}
}

// emit records entries now, or holds them in the statement's transaction
// until it commits.
func (p *Plugin) emit(db *gorm.DB, entries []audit.Entry) {
	if len(entries) == 0 {
		return
	}
	ctx := db.Statement.Context
	tx, inTx := txOf(db.Statement.ConnPool)
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

// record hands e to the service. The change it describes has happened, so
// a refusal is logged and counted, not returned.
func (p *Plugin) record(ctx context.Context, e audit.Entry) {
	// The change has committed: its entry must not depend on the caller's
	// ctx any more (a client that hangs up cancels a request's ctx). The
	// ctx's values (actor, request ID) stay.
	if err := p.svc.Record(context.WithoutCancel(ctx), e); err != nil {
		p.dropped.Add(1)
		p.cfg.logger.Error("gormaudit: change not audited", "event_type", e.EventType, "resource", e.Resource, "err", err)
	}
}

// batchDetails returns the condition and the rows affected of a statement
// without a model row.
func (p *Plugin) batchDetails(db *gorm.DB) map[string]any {
	return map[string]any{
		"where":         whereText(db),
		"rows_affected": db.RowsAffected,
	}
}

// setChanges returns the assignments of an update's SET clause by column,
// tagged fields handled as in rows; an SQL expression appears as its text.
func (p *Plugin) setChanges(db *gorm.DB) map[string]any {
	changes := map[string]any{}
	c, ok := db.Statement.Clauses["SET"]
	if !ok {
		return changes
	}
	set, _ := c.Expression.(clause.Set)
	for _, a := range set {
		col := a.Column.Name
		var tag string
		if s := db.Statement.Schema; s != nil {
			if f := s.LookUpField(col); f != nil {
				tag = f.Tag.Get("audit")
			}
		}
		if tag == "-" {
			continue
		}
		var v any = a.Value
		if expr, ok := v.(clause.Expression); ok {
			v = exprText(db, expr)
		}
		nv, canon := normalize(v)
		if tag == "redact" {
			nv = p.redacted(canon)
		}
		changes[col] = nv
	}
	return changes
}

// loadRows reads, in the statement's transaction, the rows of its table
// that conds select. forUpdate locks them where the dialect can.
func (p *Plugin) loadRows(db *gorm.DB, conds []clause.Expression, unscoped, forUpdate bool) ([]row, error) {
	stmt := db.Statement
	dest := reflect.New(reflect.SliceOf(stmt.Schema.ModelType))
	q := db.Session(&gorm.Session{NewDB: true, SkipHooks: true}).Table(stmt.Table)
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
		if r, ok := p.structRow(db, slice.Index(i)); ok {
			rows = append(rows, r)
		}
	}
	return rows, nil
}

// primaryKeyConds returns the condition on the primary keys that v (a
// struct, or a slice or array of them) carries, as gorm:delete builds it,
// or nil when it carries none.
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
	column, vals := schema.ToQueryValues(db.Statement.Table, s.PrimaryFieldDBNames, values)
	return []clause.Expression{clause.IN{Column: column, Values: vals}}
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

// whereText returns the statement's WHERE condition as SQL text with its
// values written in, cut at maxWhere bytes.
func whereText(db *gorm.DB) string {
	exprs := whereExprs(db.Statement)
	if len(exprs) == 0 {
		return ""
	}
	s := exprText(db, clause.Where{Exprs: exprs})
	if len(s) > maxWhere {
		cut := maxWhere
		for cut > 0 && !isRuneStart(s[cut]) {
			cut--
		}
		s = s[:cut] + "..."
	}
	return s
}

// exprText builds expr as the statement would and returns its SQL with the
// values written in, as the dialect's logger shows it.
func exprText(db *gorm.DB, expr clause.Expression) string {
	st := &gorm.Statement{
		DB:      db,
		Table:   db.Statement.Table,
		Schema:  db.Statement.Schema,
		Context: db.Statement.Context,
		Clauses: map[string]clause.Clause{},
	}
	expr.Build(st)
	return db.Dialector.Explain(st.SQL.String(), st.Vars...)
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
