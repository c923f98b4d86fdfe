//go:build gormsuite

// This file is copied into a copy of GORM's tests/ directory by
// scripts/gormsuite.sh, which also makes OpenTestConnection call
// gormauditRegister on every DB it opens. It is not part of this module's
// build (the gormsuite tag is set only by the script).

package tests_test

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/cleveragents/audit"
	"github.com/cleveragents/audit/gormaudit"
	"gorm.io/gorm"
)

// gormauditServices are the services opened for the DBs of this run, so
// that the last test can check what they recorded.
var (
	gormauditMu       sync.Mutex
	gormauditServices []*audit.AuditService
)

// gormauditRegister registers the plugin on db as GORMAUDIT_MODE says:
//
//	none      no plugin (the baseline)
//	separate  the log in its own SQLite file ($GORMAUDIT_DIR/audit.db)
//	samefile  the log on the application's own SQLite file (GORM's
//	          os.TempDir()/gorm.db, opened by GORM with the default DSN)
//	withdb    the log on the application's *gorm.DB (audit.WithDB)
func gormauditRegister(db *gorm.DB) error {
	var where audit.Option
	switch mode := os.Getenv("GORMAUDIT_MODE"); mode {
	case "", "none":
		return nil
	case "separate":
		where = audit.WithSQLite(filepath.Join(os.Getenv("GORMAUDIT_DIR"), "audit.db"))
	case "samefile":
		where = audit.WithSQLite(filepath.Join(os.TempDir(), "gorm.db"))
	case "withdb":
		where = audit.WithDB(db)
	default:
		return fmt.Errorf("GORMAUDIT_MODE %q: want none, separate, samefile or withdb", mode)
	}
	logFile, err := os.OpenFile(filepath.Join(os.Getenv("GORMAUDIT_DIR"), "audit.log"), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return err
	}
	logger := slog.New(slog.NewTextHandler(logFile, &slog.HandlerOptions{Level: slog.LevelWarn}))
	svc, err := audit.New(where, audit.WithLogger(logger))
	if err != nil {
		return err
	}
	if err := gormauditUse(db, svc, logger); err != nil {
		return err
	}
	gormauditMu.Lock()
	gormauditServices = append(gormauditServices, svc)
	gormauditMu.Unlock()
	return nil
}

// gormauditUse registers the plugin that records into svc.
func gormauditUse(db *gorm.DB, svc *audit.AuditService, logger *slog.Logger) error {
	p, err := gormaudit.New(svc, gormaudit.WithLogger(logger))
	if err != nil {
		return err
	}
	return db.Use(p)
}

// TestZZGormauditLogVerifies runs last (files and tests run in name
// order): every entry the plugin recorded is committed and the chain
// verifies.
func TestZZGormauditLogVerifies(t *testing.T) {
	gormauditMu.Lock()
	svcs := append([]*audit.AuditService(nil), gormauditServices...)
	gormauditMu.Unlock()
	if len(svcs) == 0 {
		t.Skip("no plugin registered (GORMAUDIT_MODE=none)")
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	// Every service of a run writes the same table (the DBs the tests open
	// are all on one file), and some tests close their DB: flush each
	// service, then count and verify through the first, the global DB's.
	for i, svc := range svcs {
		fctx, cancel := context.WithTimeout(ctx, 20*time.Second)
		if err := svc.Flush(fctx); err != nil {
			t.Logf("service %d: flush: %v", i, err)
		}
		cancel()
	}
	n, err := svcs[0].Count(ctx, audit.Filter{})
	if err != nil {
		t.Fatalf("count: %v", err)
	}
	rep, err := svcs[0].Verify(ctx)
	if err != nil {
		t.Errorf("verify: %v", err)
	}
	fmt.Printf("GORMAUDIT: %d services, %d entries, %d verified\n", len(svcs), n, rep.Entries)
	if n == 0 {
		t.Error("the plugin recorded nothing")
	}
}
