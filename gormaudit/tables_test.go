package gormaudit_test

import (
	"context"
	"testing"
	"time"

	"github.com/cleveragents/audit"
	"github.com/cleveragents/audit/gormaudit"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"gorm.io/gorm"
)

// The audit's own tables, redaction and the options.

// auditRow maps the audit service's own table as a model would.
type auditRow struct {
	ID      int64
	Outcome string
}

func (auditRow) TableName() string { return "audit_entries" }

type customAuditRow struct {
	ID      int64
	Outcome string
}

func (customAuditRow) TableName() string { return "my_audit" }

func TestAuditTablesAreNotAudited(t *testing.T) {
	t.Run("shared database, default table", func(t *testing.T) {
		db, _ := openApp(t, nil)
		// Sync mode on the same SQLite file: an entry recorded while the
		// statement's transaction held the write lock would deadlock.
		svc, err := audit.New(audit.WithDB(db), audit.WithAsync(false))
		require.NoError(t, err)
		t.Cleanup(func() { _ = svc.Close() })
		use(t, db, svc)
		// Bounded, so that a deadlock fails the test instead of hanging it.
		ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
		defer cancel()
		db = db.WithContext(ctx)

		require.NoError(t, db.Create(&User{Name: "a"}).Error)
		require.NoError(t, db.Model(&auditRow{}).Where("id = ?", 1).Update("outcome", gorm.Expr("outcome")).Error)
		require.NoError(t, db.Table("audit_chain_heads").Where("1 = 1").Update("last_id", gorm.Expr("last_id")).Error)
		require.NoError(t, db.Create(&User{Name: "b"}).Error)

		es := recorded(t, svc)
		require.Len(t, es, 2)
		assert.Equal(t, "users.create", es[0].EventType)
		assert.Equal(t, "users.create", es[1].EventType)
		_, err = svc.Verify(context.Background())
		require.NoError(t, err)
	})

	t.Run("custom table and skipped tables", func(t *testing.T) {
		db, _ := openApp(t, nil)
		svc, err := audit.New(audit.WithDB(db), audit.WithTable("my_audit"))
		require.NoError(t, err)
		t.Cleanup(func() { _ = svc.Close() })
		use(t, db, svc, gormaudit.WithAuditTable("my_audit"), gormaudit.WithSkipTables("Widgets"))

		require.NoError(t, db.Create(&User{Name: "a"}).Error)
		require.NoError(t, svc.Flush(context.Background())) // the service has created its table
		require.NoError(t, db.Create(&Widget{Label: "skipped"}).Error)
		require.NoError(t, db.Model(&customAuditRow{}).Where("id = ?", 1).Update("outcome", gorm.Expr("outcome")).Error)

		es := recorded(t, svc)
		require.Len(t, es, 1)
		assert.Equal(t, "users.create", es[0].EventType)
	})
}

func TestRedactWithoutKey(t *testing.T) {
	db, _ := openApp(t, nil)
	svc := newService(t)
	use(t, db, svc)
	require.NoError(t, db.Create(&User{Name: "a", Password: "s3cret"}).Error)
	es := recorded(t, svc)
	require.Len(t, es, 1)
	assert.Equal(t, "[redacted]", es[0].Details["after"].(map[string]any)["password"])
}

func TestOptions(t *testing.T) {
	svc := newService(t)
	for _, tc := range []struct {
		name string
		rec  gormaudit.Recorder
		opts []gormaudit.Option
		want string
	}{
		{"nil recorder", nil, nil, "gormaudit: New: nil Recorder"},
		{"empty redact key", svc, []gormaudit.Option{gormaudit.WithRedactKey(nil)}, "gormaudit: WithRedactKey: empty key"},
		{"empty actor", svc, []gormaudit.Option{gormaudit.WithDefaultActor("")}, "gormaudit: WithDefaultActor: empty actor"},
		{"empty audit table", svc, []gormaudit.Option{gormaudit.WithAuditTable("")}, "gormaudit: WithAuditTable: empty table name"},
		{"empty skipped table", svc, []gormaudit.Option{gormaudit.WithSkipTables("a", "")}, "gormaudit: WithSkipTables: table name 1 is empty"},
		{"nil logger", svc, []gormaudit.Option{gormaudit.WithLogger(nil)}, "gormaudit: WithLogger: nil logger"},
		{"nil option", svc, []gormaudit.Option{gormaudit.WithDefaultActor("a"), nil}, "gormaudit: New: option 1 is nil"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p, err := gormaudit.New(tc.rec, tc.opts...)
			require.EqualError(t, err, tc.want)
			assert.Nil(t, p)
		})
	}
}

func TestDBKeepsWorking(t *testing.T) {
	db, svc, p := setup(t)
	assert.Equal(t, "gormaudit", p.Name())
	sqlDB, err := db.DB()
	require.NoError(t, err)
	require.NoError(t, sqlDB.Ping())
	require.NoError(t, db.Transaction(func(tx *gorm.DB) error {
		inner, err := tx.DB()
		require.NoError(t, err)
		assert.Same(t, sqlDB, inner)
		return nil
	}))
	again, err := gormaudit.New(svc)
	require.NoError(t, err)
	assert.ErrorIs(t, db.Use(again), gorm.ErrRegistered)
}
