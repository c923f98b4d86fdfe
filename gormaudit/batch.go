package gormaudit

import (
	"regexp"

	"gorm.io/gorm"
	"gorm.io/gorm/clause"
)

// Bounds on a batch entry's condition, so that a long IN list cannot push
// Details over the service's size limit.
const (
	maxWhere = 8 << 10 // bytes of "where"
	maxVars  = 256     // values in "vars"
)

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
