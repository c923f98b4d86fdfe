package gormaudit

import (
	"context"
	"errors"
	"fmt"
	"sort"

	"github.com/cleveragents/audit"
	"gorm.io/gorm"
)

// emit writes entries inside the statement's transaction when the log is
// on its database, or holds them in the transaction until it commits, or,
// outside a transaction, records them now.
func (p *Plugin) emit(db *gorm.DB, entries []audit.Entry) {
	if len(entries) == 0 {
		return
	}
	ctx := db.Statement.Context
	tx, inTx := txOf(db.Statement.ConnPool)
	if inTx && p.inTx {
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
	tx := unpreparedTx(db)
	err := p.rec.RecordTx(ctx, tx, e)
	if err == nil || !errors.Is(err, audit.ErrInvalidEntry) || e.Details == nil {
		return err
	}
	e.Details = shrunk(e.Details)
	return p.rec.RecordTx(ctx, tx, e)
}

// unpreparedTx returns a DB of its own on db's transaction, without
// GORM's prepared-statement layer, so that the outbox INSERT does not join
// GORM's statement cache, as no statement of the plugin's does.
func unpreparedTx(db *gorm.DB) *gorm.DB {
	tx := db.Session(&gorm.Session{NewDB: true, Initialized: true})
	tx.Statement.ConnPool = unprepared(db.Statement.ConnPool)
	return tx
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
