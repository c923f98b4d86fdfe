package gormaudit_test

import (
	"context"
	"errors"
	"fmt"
	"log"
	"os"
	"path/filepath"

	"github.com/cleveragents/audit"
	"github.com/cleveragents/audit/gormaudit"
	"gorm.io/driver/sqlite"
	"gorm.io/gorm"
	"gorm.io/gorm/logger"
)

// Account is an application model. Its secret is recorded only as a keyed
// hash, and its notes not at all.
type Account struct {
	ID      uint
	Owner   string
	Balance int
	APIKey  string `audit:"redact"`
	Notes   string `audit:"-"`
}

// The plugin records every committed create, update and delete, with the
// actor from the context; a rolled-back transaction records nothing.
func Example() {
	dir, err := os.MkdirTemp("", "gormaudit-example")
	if err != nil {
		log.Fatal(err)
	}
	defer os.RemoveAll(dir)

	svc, err := audit.New(audit.WithSQLite(filepath.Join(dir, "audit.db")))
	if err != nil {
		log.Fatal(err)
	}
	defer svc.Close()

	db, err := gorm.Open(sqlite.Open(filepath.Join(dir, "app.db")), &gorm.Config{Logger: logger.Discard})
	if err != nil {
		log.Fatal(err)
	}
	sqlDB, _ := db.DB()
	defer sqlDB.Close()
	if err := db.AutoMigrate(&Account{}); err != nil {
		log.Fatal(err)
	}
	plugin, err := gormaudit.New(svc, gormaudit.WithRedactKey([]byte("example key")))
	if err != nil {
		log.Fatal(err)
	}
	if err := db.Use(plugin); err != nil {
		log.Fatal(err)
	}

	ctx := audit.ContextWithActor(context.Background(), "alice")
	acct := Account{Owner: "alice", Balance: 100, APIKey: "k-123"}
	db.WithContext(ctx).Create(&acct)
	db.WithContext(ctx).Model(&acct).Update("balance", 250)
	_ = db.WithContext(ctx).Transaction(func(tx *gorm.DB) error {
		tx.Delete(&acct)
		return errors.New("changed my mind") // rolled back: not recorded
	})
	db.Where("balance > ?", 1000).Delete(&Account{}) // no row: not recorded

	if err := svc.Flush(ctx); err != nil {
		log.Fatal(err)
	}
	entries, err := svc.List(ctx, audit.Filter{})
	if err != nil {
		log.Fatal(err)
	}
	for _, e := range entries {
		fmt.Println(e.EventType, e.Resource, e.Actor)
	}
	update := entries[1].Details
	fmt.Println("changed:", update["changed"])
	fmt.Println("balance:", update["before"].(map[string]any)["balance"], "->", update["after"].(map[string]any)["balance"])
	// Output:
	// accounts.create accounts/1 alice
	// accounts.update accounts/1 alice
	// changed: [balance]
	// balance: 100 -> 250
}
