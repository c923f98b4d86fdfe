package gormaudit

import (
	"fmt"
	"reflect"
	"strings"

	"github.com/cleveragents/audit"
	"gorm.io/gorm"
	"gorm.io/gorm/callbacks"
	"gorm.io/gorm/clause"
)

// Operations, the suffixes of EventType.
const (
	opCreate = "create"
	opUpdate = "update"
	opDelete = "delete"
)

// processor is what the plugin calls on one of GORM's callback processors
// (db.Callback().Create() and the like, whose type GORM does not export).
type processor interface {
	Get(name string) func(*gorm.DB)
	Replace(name string, fn func(*gorm.DB)) error
}

// register puts the plugin around GORM's own gorm:create, gorm:update and
// gorm:delete: each wrapper reads what it needs just before the statement
// runs, when every other callback (the model's hooks, callbacks registered
// before or after the plugin) has shaped it, and records just after, in
// the statement's transaction. On SQLite it also takes the write lock as
// the statement's transaction begins (see lockSQLite).
func (p *Plugin) register(db *gorm.DB) error {
	cb := db.Callback()
	for _, w := range []struct {
		proc  processor
		name  string
		wrap  func(next func(*gorm.DB)) func(*gorm.DB)
		hooks string
	}{
		{cb.Create(), "gorm:create", p.wrapCreate, "gorm:before_create"},
		{cb.Update(), "gorm:update", p.wrapUpdate, "gorm:before_update"},
		{cb.Delete(), "gorm:delete", p.wrapDelete, "gorm:before_delete"},
	} {
		next := w.proc.Get(w.name)
		if next == nil {
			return fmt.Errorf("gormaudit: register: the DB has no %s callback to audit", w.name)
		}
		if err := w.proc.Replace(w.name, w.wrap(next)); err != nil {
			return fmt.Errorf("gormaudit: register around %s: %w", w.name, err)
		}
	}
	for _, r := range []struct {
		name string
		err  error
	}{
		{"create", cb.Create().After("gorm:begin_transaction").Before("gorm:before_create").Register("gormaudit:lock", p.lockSQLite)},
		{"update", cb.Update().After("gorm:begin_transaction").Before("gorm:before_update").Register("gormaudit:lock", p.lockSQLite)},
		{"delete", cb.Delete().After("gorm:begin_transaction").Before("gorm:before_delete").Register("gormaudit:lock", p.lockSQLite)},
	} {
		if r.err != nil {
			return fmt.Errorf("gormaudit: register gormaudit:lock for %s: %w", r.name, r.err)
		}
	}
	return nil
}

// lockSQLite takes SQLite's write lock for the statement's transaction
// before anything in it reads. A transaction that reads first (the
// plugin's before values, a model's hook) and then writes cannot upgrade
// its read once another connection has written in between: SQLite fails it
// at once with "database is locked", busy timeout or not. Taking the lock
// first makes it wait, as any writer does, and needs no change to the DSN.
// The write is a DELETE that matches no row (WHERE 0): SQLite takes the
// lock for it all the same. An error is left to the statement itself.
func (p *Plugin) lockSQLite(db *gorm.DB) {
	if db.Error != nil || db.DryRun || db.Dialector.Name() != "sqlite" || !p.audited(db) {
		return
	}
	if _, inTx := txOf(db.Statement.ConnPool); !inTx {
		return
	}
	var b strings.Builder
	db.Dialector.QuoteTo(&b, tableName(db.Statement))
	_, _ = unprepared(db.Statement.ConnPool).ExecContext(db.Statement.Context, "DELETE FROM "+b.String()+" WHERE 0")
}

// wrapCreate records one entry per created row, with its values as
// stored (read back, so that Omit, Select, defaults and hooks show as
// they are). An upsert (ON CONFLICT) records an update for each row that
// existed and changed, a create for each that did not, and nothing for a
// row that DO NOTHING left alone.
func (p *Plugin) wrapCreate(next func(*gorm.DB)) func(*gorm.DB) {
	return func(db *gorm.DB) {
		if db.Error != nil || !p.audited(db) {
			next(db)
			return
		}
		stmt := db.Statement
		rv := reflect.Indirect(stmt.ReflectValue)
		if rv.Kind() == reflect.Map || (rv.Kind() == reflect.Slice && rv.Type().Elem().Kind() == reflect.Map) {
			next(db)
			p.afterMapCreate(db, rv)
			return
		}
		if stmt.Schema == nil {
			next(db) // no model, no rows to name
			return
		}
		up, isUpsert := onConflict(stmt)
		var (
			cols   []string
			before map[string]row
		)
		if isUpsert {
			cols = conflictColumns(stmt, up)
			var err error
			if before, err = p.readByColumns(db, cols, p.structValues(db, rv)); err != nil {
				db.AddError(fmt.Errorf("gormaudit: read %s before upsert: %w", tableName(stmt), err))
				return
			}
		}
		next(db)
		if db.Error != nil || (db.RowsAffected == 0 && !isUpsert) {
			return
		}
		structs := p.structValues(db, rv)
		if !isUpsert {
			cols = stmt.Schema.PrimaryFieldDBNames
		}
		after, err := p.readByColumns(db, cols, structs)
		if err != nil {
			db.AddError(fmt.Errorf("gormaudit: read %s after create: %w", tableName(stmt), err))
			return
		}
		var entries []audit.Entry
		for _, v := range structs {
			k, ok := p.keyOf(db, v, cols)
			a, stored := after[k]
			if !ok || !stored {
				// No key to read the row back by (a key GORM cannot read,
				// `->:false`): the row as GORM wrote it.
				if isUpsert || db.RowsAffected == 0 {
					continue
				}
				if r, ok := p.structRow(db, v, true); ok {
					entries = append(entries, p.entry(db, opCreate, r.resource(tableName(stmt)), map[string]any{"after": r.values}))
				}
				continue
			}
			b, existed := before[k]
			switch {
			case !existed:
				entries = append(entries, p.entry(db, opCreate, a.resource(tableName(stmt)), map[string]any{"after": a.values}))
			case !up.DoNothing:
				if ch := changed(b, a); len(ch) > 0 {
					entries = append(entries, p.entry(db, opUpdate, a.resource(tableName(stmt)), map[string]any{
						"before": b.values, "after": a.values, "changed": ch,
					}))
				}
			}
		}
		p.emit(db, entries)
	}
}

// afterMapCreate records the rows of a create from maps
// (db.Model(...).Create(map)), as the maps hold them.
func (p *Plugin) afterMapCreate(db *gorm.DB, rv reflect.Value) {
	if db.Error != nil || db.RowsAffected == 0 {
		return
	}
	var entries []audit.Entry
	add := func(m reflect.Value) {
		r := p.mapRow(db, m)
		entries = append(entries, p.entry(db, opCreate, r.resource(tableName(db.Statement)), map[string]any{"after": r.values}))
	}
	if rv.Kind() == reflect.Map {
		add(rv)
	} else {
		for i := 0; i < rv.Len(); i++ {
			add(reflect.Indirect(rv.Index(i)))
		}
	}
	p.emit(db, entries)
}

// wrapUpdate records the update: one entry per row when the model value
// carries primary keys, with the values read before and after; one batch
// entry otherwise.
func (p *Plugin) wrapUpdate(next func(*gorm.DB)) func(*gorm.DB) {
	return func(db *gorm.DB) {
		if db.Error != nil || !p.audited(db) {
			next(db)
			return
		}
		stmt := db.Statement
		// The keys before the SET clause is built: building it assigns
		// the new values to the model, a new primary key among them.
		keys := modelKeys(db)
		// Build the SET clause as gorm:update would (the same exported
		// function), so that the assignments can be read afterwards; and
		// remove it afterwards, as gorm:update removes the one it builds.
		if stmt.SQL.Len() == 0 {
			if _, ok := stmt.Clauses["SET"]; !ok {
				if set := callbacks.ConvertToAssignments(stmt); len(set) != 0 {
					stmt.AddClause(set)
					defer delete(stmt.Clauses, "SET")
				}
			}
		}
		set := setClause(stmt)
		rows, model, err := p.readBefore(db, opUpdate, keys)
		if err != nil {
			db.AddError(err)
			return
		}
		next(db)
		if db.Error != nil || db.RowsAffected == 0 {
			return
		}
		if !model {
			details := p.batchDetails(db)
			details["changes"] = p.setChanges(db, set)
			p.emit(db, []audit.Entry{p.entry(db, opUpdate, tableName(stmt), details)})
			return
		}
		if len(rows) == 0 {
			return
		}
		pks := make([][]any, len(rows))
		for i, r := range rows {
			pks[i] = r.pk
		}
		if newKey, ok := assignedKey(stmt, set, rows); ok {
			pks = [][]any{newKey} // the update moved the row's own key
		}
		after, err := p.readRows(db, pkIn(stmt, pks), true, false)
		if err != nil {
			db.AddError(fmt.Errorf("gormaudit: read %s after update: %w", tableName(stmt), err))
			return
		}
		byKey := make(map[string]row, len(after))
		for _, r := range after {
			byKey[r.key] = r
		}
		entries := make([]audit.Entry, 0, len(rows))
		for _, before := range rows {
			a, ok := byKey[before.key]
			if !ok && len(rows) == 1 && len(after) == 1 {
				a, ok = after[0], true
			}
			if !ok {
				continue
			}
			entries = append(entries, p.entry(db, opUpdate, before.resource(tableName(stmt)), map[string]any{
				"before":  before.values,
				"after":   a.values,
				"changed": changed(before, a),
			}))
		}
		p.emit(db, entries)
	}
}

// wrapDelete records the delete: one entry per row when the model value
// carries primary keys, with the values read just before; one batch entry
// otherwise.
func (p *Plugin) wrapDelete(next func(*gorm.DB)) func(*gorm.DB) {
	return func(db *gorm.DB) {
		if db.Error != nil || !p.audited(db) {
			next(db)
			return
		}
		stmt := db.Statement
		rows, model, err := p.readBefore(db, opDelete, modelKeys(db))
		if err != nil {
			db.AddError(err)
			return
		}
		details := map[string]any{}
		if !model {
			details = p.batchDetails(db) // the condition as the statement has it now
		}
		next(db)
		if db.Error != nil || db.RowsAffected == 0 {
			return
		}
		if !model {
			details["rows_affected"] = db.RowsAffected
			p.emit(db, []audit.Entry{p.entry(db, opDelete, tableName(stmt), details)})
			return
		}
		entries := make([]audit.Entry, 0, len(rows))
		for _, r := range rows {
			entries = append(entries, p.entry(db, opDelete, r.resource(tableName(stmt)), map[string]any{"before": r.values}))
		}
		p.emit(db, entries)
	}
}

// audited reports whether the statement's changes are recorded: not a dry
// run, and not on a skipped table.
func (p *Plugin) audited(db *gorm.DB) bool {
	t := tableName(db.Statement)
	return !db.DryRun && t != "" && !p.cfg.tables[strings.ToLower(t)]
}

// entry builds the entry of one change. Actor and RequestID come from the
// statement's context now, because a transaction's entries may be
// recorded later, at Commit.
func (p *Plugin) entry(db *gorm.DB, op, resource string, details map[string]any) audit.Entry {
	ctx := db.Statement.Context
	actor, _ := audit.ActorFromContext(ctx)
	if actor == "" {
		actor = p.cfg.actor
	}
	reqID, _ := audit.RequestIDFromContext(ctx)
	return audit.Entry{
		EventType: tableName(db.Statement) + "." + op,
		Actor:     actor,
		Resource:  resource,
		RequestID: reqID,
		Details:   details,
	}
}

// onConflict returns the statement's ON CONFLICT clause, if it has one.
func onConflict(stmt *gorm.Statement) (clause.OnConflict, bool) {
	c, ok := stmt.Clauses["ON CONFLICT"]
	if !ok {
		return clause.OnConflict{}, false
	}
	oc, ok := c.Expression.(clause.OnConflict)
	return oc, ok
}

// conflictColumns returns the columns an upsert's rows are identified
// by: its conflict target, or else the primary key.
func conflictColumns(stmt *gorm.Statement, oc clause.OnConflict) []string {
	if len(oc.Columns) == 0 {
		return stmt.Schema.PrimaryFieldDBNames
	}
	cols := make([]string, len(oc.Columns))
	for i, c := range oc.Columns {
		cols[i] = c.Name
	}
	return cols
}

// setClause returns the statement's SET assignments.
func setClause(stmt *gorm.Statement) clause.Set {
	c, ok := stmt.Clauses["SET"]
	if !ok {
		return nil
	}
	set, _ := c.Expression.(clause.Set)
	return append(clause.Set(nil), set...)
}

// assignedKey returns the new primary key of the one row an update
// assigns its own primary key columns to, as plain values.
func assignedKey(stmt *gorm.Statement, set clause.Set, rows []row) ([]any, bool) {
	if len(rows) != 1 || stmt.Schema == nil {
		return nil, false
	}
	key := append([]any(nil), rows[0].pk...)
	moved := false
	for i, name := range stmt.Schema.PrimaryFieldDBNames {
		for _, a := range set {
			if a.Column.Name != name {
				continue
			}
			if _, isExpr := a.Value.(clause.Expression); isExpr {
				return nil, false
			}
			key[i], moved = a.Value, true
		}
	}
	return key, moved
}
