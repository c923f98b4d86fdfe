package gormaudit_test

import (
	"context"
	"database/sql"
	"strings"
	"testing"

	"github.com/cleveragents/audit"
	"github.com/cleveragents/audit/gormaudit"
	"github.com/cleveragents/audit/internal/testutil"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"gorm.io/gorm"
)

// sameDatabase returns the ways to put the log on the application's own
// database, as examples/httpservice does and as audit.WithDB does.
func sameDatabase() []struct {
	name string
	open func(t *testing.T, db *gorm.DB, path string) *audit.AuditService
} {
	open := func(t *testing.T, opt audit.Option) *audit.AuditService {
		svc, err := audit.New(opt)
		require.NoError(t, err)
		t.Cleanup(func() { _ = svc.Close() })
		return svc
	}
	return []struct {
		name string
		open func(t *testing.T, db *gorm.DB, path string) *audit.AuditService
	}{
		{"the same SQLite file", func(t *testing.T, _ *gorm.DB, path string) *audit.AuditService {
			return open(t, audit.WithSQLite(path))
		}},
		{"WithDB", func(t *testing.T, db *gorm.DB, _ string) *audit.AuditService {
			return open(t, audit.WithDB(db))
		}},
	}
}

func TestInTransaction(t *testing.T) {
	for _, c := range sameDatabase() {
		t.Run(c.name, func(t *testing.T) {
			db, path := openApp(t, nil)
			svc := c.open(t, db, path)
			use(t, db, svc)
			_, plain := db.ConnPool.(*sql.DB)
			assert.True(t, plain, "no pool of the plugin's under the DB")

			err := db.Transaction(func(tx *gorm.DB) error {
				_, isTx := tx.Statement.ConnPool.(*sql.Tx)
				assert.True(t, isTx, "a transaction is GORM's *sql.Tx")
				u := User{Name: "kept"}
				require.NoError(t, tx.Create(&u).Error)
				require.ErrorIs(t, tx.Transaction(func(tx2 *gorm.DB) error {
					require.NoError(t, tx2.Create(&User{Name: "to savepoint"}).Error)
					return errRollback
				}), errRollback)
				return tx.Model(&u).Update("age", 3).Error
			})
			require.NoError(t, err)
			require.ErrorIs(t, db.Transaction(func(tx *gorm.DB) error {
				require.NoError(t, tx.Create(&User{Name: "rolled back"}).Error)
				return errRollback
			}), errRollback)
			require.NoError(t, db.Create(&User{Name: "own transaction"}).Error)

			es := recorded(t, svc)
			require.Len(t, es, 3)
			assert.Equal(t, "kept", after(es[0])["name"])
			assert.Equal(t, "users.update", es[1].EventType)
			assert.Equal(t, "own transaction", after(es[2])["name"])
			_, err = svc.Verify(context.Background())
			require.NoError(t, err)
		})
	}
}

func TestInTransactionRefusedEntryFailsTheChange(t *testing.T) {
	db, path := openApp(t, nil)
	svc, err := audit.New(audit.WithSQLite(path))
	require.NoError(t, err)
	use(t, db, svc)
	require.NoError(t, svc.Close())

	err = db.Create(&User{Name: "unaudited"}).Error
	require.ErrorIs(t, err, audit.ErrClosed)
	assert.Contains(t, err.Error(), "gormaudit: record users.create")
	var n int64
	require.NoError(t, db.Model(&User{}).Count(&n).Error)
	assert.Zero(t, n, "no change commits without its entry")
}

func TestInTransactionTooLargeKeepsColumnNames(t *testing.T) {
	db, path := openApp(t, nil)
	svc, err := audit.New(audit.WithSQLite(path))
	require.NoError(t, err)
	t.Cleanup(func() { _ = svc.Close() })
	use(t, db, svc)
	require.NoError(t, db.Create(&User{Name: strings.Repeat("x", audit.MaxDetailsLen)}).Error)

	es := recorded(t, svc)
	require.Len(t, es, 1)
	assert.Equal(t, "too large to record", es[0].Details["values_omitted"])
	assert.Equal(t, []any{"age", "email", "id", "name", "password"}, es[0].Details["columns"])
}

func TestLogElsewhereIsSaidAtUse(t *testing.T) {
	db, _ := openApp(t, nil)
	svc := newService(t) // its own file
	var logs testutil.LogBuffer
	use(t, db, svc, gormaudit.WithLogger(logs.Logger()))
	assert.Contains(t, logs.String(), "the audit log is on another database; entries are recorded after each commit, and a crash right after a commit loses its entries")

	// The probe left nothing behind: no entry, no table on the app's file.
	require.NoError(t, db.Create(&User{Name: "a"}).Error)
	assert.Len(t, recorded(t, svc), 1)
	assert.False(t, db.Migrator().HasTable(audit.DefaultTable+audit.OutboxSuffix))
}

func TestInTransactionWithPreparedStatements(t *testing.T) {
	db, path := openApp(t, &gorm.Config{PrepareStmt: true})
	svc, err := audit.New(audit.WithSQLite(path))
	require.NoError(t, err)
	t.Cleanup(func() { _ = svc.Close() })
	use(t, db, svc)
	require.NoError(t, db.Transaction(func(tx *gorm.DB) error {
		_, ok := tx.Statement.ConnPool.(*gorm.PreparedStmtTX)
		assert.True(t, ok, "a transaction is still a *gorm.PreparedStmtTX")
		u := User{Name: "a"}
		if err := tx.Create(&u).Error; err != nil {
			return err
		}
		require.ErrorIs(t, tx.Transaction(func(tx2 *gorm.DB) error {
			require.NoError(t, tx2.Create(&User{Name: "to savepoint"}).Error)
			return errRollback
		}), errRollback)
		return tx.Model(&u).Update("age", 2).Error
	}))
	assert.Len(t, recorded(t, svc), 2)

	pdb, ok := db.ConnPool.(*gorm.PreparedStmtDB)
	require.True(t, ok, "the DB's pool is still a *gorm.PreparedStmtDB")
	for _, k := range pdb.Stmts.Keys() {
		assert.NotContains(t, k, "SAVEPOINT")
		assert.NotContains(t, k, "WHERE 0")
		assert.NotContains(t, k, audit.OutboxSuffix, "the outbox INSERT is the plugin's, not the application's")
	}
}
