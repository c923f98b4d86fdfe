package gormaudit_test

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"testing"

	"github.com/cleveragents/audit"
	"github.com/cleveragents/audit/gormaudit"
	"github.com/cleveragents/audit/internal/testutil"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"gorm.io/gorm"
)

func TestTransactions(t *testing.T) {
	t.Run("entries are recorded after commit, not before", func(t *testing.T) {
		db, svc, _ := setup(t)
		ctx := context.Background()
		err := db.Transaction(func(tx *gorm.DB) error {
			u := User{Name: "a"}
			if err := tx.Create(&u).Error; err != nil {
				return err
			}
			if err := tx.Model(&u).Update("age", 5).Error; err != nil {
				return err
			}
			require.NoError(t, svc.Flush(ctx))
			n, err := svc.Count(ctx, audit.Filter{})
			require.NoError(t, err)
			assert.Zero(t, n, "nothing may be recorded before the commit")
			return nil
		})
		require.NoError(t, err)

		es := recorded(t, svc)
		require.Len(t, es, 2)
		assert.Equal(t, "users.create", es[0].EventType)
		assert.Equal(t, "users.update", es[1].EventType)
		assert.Equal(t, float64(0), es[1].Details["before"].(map[string]any)["age"])
	})

	t.Run("a rolled-back transaction records nothing", func(t *testing.T) {
		db, svc, _ := setup(t)
		err := db.Transaction(func(tx *gorm.DB) error {
			u := User{Name: "a"}
			require.NoError(t, tx.Create(&u).Error)
			require.NoError(t, tx.Model(&u).Update("age", 5).Error)
			require.NoError(t, tx.Delete(&u).Error)
			return errRollback
		})
		require.ErrorIs(t, err, errRollback)

		tx := db.Begin()
		require.NoError(t, tx.Create(&User{Name: "b"}).Error)
		require.NoError(t, tx.Rollback().Error)

		var n int64
		require.NoError(t, db.Model(&User{}).Count(&n).Error)
		assert.Zero(t, n)
		assert.Empty(t, recorded(t, svc))
	})

	t.Run("Begin and Commit record", func(t *testing.T) {
		db, svc, _ := setup(t)
		tx := db.WithContext(actorCtx("dave", "req-tx")).Begin()
		require.NoError(t, tx.Create(&User{Name: "a"}).Error)
		require.NoError(t, tx.Where("name = ?", "a").Delete(&User{}).Error)
		assert.Empty(t, recorded(t, svc))
		require.NoError(t, tx.Commit().Error)

		es := recorded(t, svc)
		require.Len(t, es, 2)
		for _, e := range es {
			assert.Equal(t, "dave", e.Actor)
			assert.Equal(t, "req-tx", e.RequestID)
		}
	})

	t.Run("a nested transaction rolled back to its savepoint drops its entries", func(t *testing.T) {
		db, svc, _ := setup(t)
		err := db.Transaction(func(tx *gorm.DB) error {
			require.NoError(t, tx.Create(&User{Name: "outer-1"}).Error)
			nested := tx.Transaction(func(tx2 *gorm.DB) error {
				require.NoError(t, tx2.Create(&User{Name: "inner"}).Error)
				return errRollback
			})
			require.ErrorIs(t, nested, errRollback)
			require.NoError(t, tx.Transaction(func(tx2 *gorm.DB) error {
				return tx2.Create(&User{Name: "inner-kept"}).Error
			}))
			return tx.Create(&User{Name: "outer-2"}).Error
		})
		require.NoError(t, err)

		var names []string
		for _, e := range recorded(t, svc) {
			names = append(names, e.Details["after"].(map[string]any)["name"].(string))
		}
		assert.Equal(t, []string{"outer-1", "inner-kept", "outer-2"}, names)
		var stored []string
		require.NoError(t, db.Model(&User{}).Order("id").Pluck("name", &stored).Error)
		assert.Equal(t, names, stored)
	})

	t.Run("a statement's own transaction that rolls back records nothing", func(t *testing.T) {
		db, svc, _ := setup(t)
		// A callback after the plugin's, still inside the statement's
		// transaction, fails it: GORM rolls back what the plugin held.
		require.NoError(t, db.Callback().Create().Before("gorm:commit_or_rollback_transaction").
			Register("test:fail_late", func(tx *gorm.DB) {
				if u, ok := tx.Statement.Dest.(*User); ok && u.Name == "doomed" {
					_ = tx.AddError(errRollback)
				}
			}))
		require.ErrorIs(t, db.Create(&User{Name: "doomed"}).Error, errRollback)
		require.NoError(t, db.Create(&User{Name: "fine"}).Error)

		es := recorded(t, svc)
		require.Len(t, es, 1)
		assert.Equal(t, "fine", es[0].Details["after"].(map[string]any)["name"])
		var n int64
		require.NoError(t, db.Model(&User{}).Count(&n).Error)
		assert.Equal(t, int64(1), n)
	})

	t.Run("concurrent transactions record exactly the committed ones", func(t *testing.T) {
		db, svc, _ := setup(t)
		const workers = 8
		start := make(chan struct{})
		var wg sync.WaitGroup
		errs := make([]error, workers)
		for i := range workers {
			wg.Add(1)
			go func() {
				defer wg.Done()
				<-start
				ctx := actorCtx(fmt.Sprint("worker-", i), fmt.Sprint("req-", i))
				errs[i] = db.WithContext(ctx).Transaction(func(tx *gorm.DB) error {
					u := User{Name: fmt.Sprint("w", i), Age: i}
					if err := tx.Create(&u).Error; err != nil {
						return err
					}
					if err := tx.Model(&u).Update("age", i+100).Error; err != nil {
						return err
					}
					if i%2 == 1 {
						return errRollback
					}
					return nil
				})
			}()
		}
		close(start)
		wg.Wait()
		for i, err := range errs {
			if i%2 == 1 {
				require.ErrorIs(t, err, errRollback)
			} else {
				require.NoError(t, err)
			}
		}

		es := recorded(t, svc)
		require.Len(t, es, workers) // two entries for each of the workers/2 commits
		byWorker := map[string][]string{}
		for _, e := range es {
			byWorker[e.Actor] = append(byWorker[e.Actor], e.EventType)
			assert.Equal(t, "req-"+e.Actor[len("worker-"):], e.RequestID)
		}
		want := map[string][]string{}
		for i := 0; i < workers; i += 2 {
			want[fmt.Sprint("worker-", i)] = []string{"users.create", "users.update"}
		}
		assert.Equal(t, want, byWorker)
		var n int64
		require.NoError(t, db.Model(&User{}).Count(&n).Error)
		assert.Equal(t, int64(workers/2), n)
	})

	t.Run("without a transaction entries are recorded at once", func(t *testing.T) {
		db, svc, _ := setup(t)
		s := db.Session(&gorm.Session{SkipDefaultTransaction: true})
		u := User{Name: "a"}
		require.NoError(t, s.Create(&u).Error)
		require.NoError(t, s.Model(&u).Update("name", "b").Error)
		require.NoError(t, s.Delete(&u).Error)

		es := recorded(t, svc)
		require.Len(t, es, 3)
		assert.Equal(t, []string{"users.create", "users.update", "users.delete"},
			[]string{es[0].EventType, es[1].EventType, es[2].EventType})
		assert.Equal(t, []any{"name"}, es[1].Details["changed"])
	})
}

func TestUntrackedTransactionIsRecordedAndWarned(t *testing.T) {
	db, _ := openApp(t, nil)
	svc := newService(t)
	var logs testutil.LogBuffer
	use(t, db, svc, gormaudit.WithLogger(logs.Logger()))
	// db.Connection pins an *sql.Conn, whose transactions bypass the
	// plugin's pool: as documented, their entries are recorded at once.
	require.NoError(t, db.Connection(func(conn *gorm.DB) error {
		tx := conn.Begin()
		require.NoError(t, tx.Create(&User{Name: "a"}).Error)
		require.NoError(t, tx.Create(&User{Name: "b"}).Error)
		return tx.Rollback().Error
	}))
	assert.Len(t, recorded(t, svc), 2)
	assert.Equal(t, 1, strings.Count(logs.String(), "cannot be tracked"), "warned once")
}

func TestPreparedStatements(t *testing.T) {
	for _, tc := range []struct {
		name string
		cfg  *gorm.Config
		sess bool
	}{
		{"PrepareStmt in the config", &gorm.Config{PrepareStmt: true}, false},
		{"PrepareStmt in a session", nil, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			db, _ := openApp(t, tc.cfg)
			svc := newService(t)
			use(t, db, svc)
			if tc.sess {
				db = db.Session(&gorm.Session{PrepareStmt: true})
			}
			require.NoError(t, db.Transaction(func(tx *gorm.DB) error {
				u := User{Name: "kept"}
				if err := tx.Create(&u).Error; err != nil {
					return err
				}
				require.ErrorIs(t, tx.Transaction(func(tx2 *gorm.DB) error {
					require.NoError(t, tx2.Create(&User{Name: "dropped"}).Error)
					return errRollback
				}), errRollback)
				return tx.Model(&u).Update("age", 3).Error
			}))
			require.ErrorIs(t, db.Transaction(func(tx *gorm.DB) error {
				require.NoError(t, tx.Create(&User{Name: "rolled back"}).Error)
				return errRollback
			}), errRollback)

			es := recorded(t, svc)
			require.Len(t, es, 2)
			assert.Equal(t, "users.create", es[0].EventType)
			assert.Equal(t, "kept", es[0].Details["after"].(map[string]any)["name"])
			assert.Equal(t, "users.update", es[1].EventType)

			// GORM still finds its own type, and its statement cache holds
			// only the application's statements: neither SAVEPOINT nor the
			// plugin's own.
			var pdb *gorm.PreparedStmtDB
			if tc.sess {
				pdb, _ = db.Statement.ConnPool.(*gorm.PreparedStmtDB)
			} else {
				pdb, _ = db.ConnPool.(*gorm.PreparedStmtDB)
			}
			require.NotNil(t, pdb, "the DB's pool is still a *gorm.PreparedStmtDB")
			keys := pdb.Stmts.Keys()
			require.NotEmpty(t, keys)
			for _, k := range keys {
				assert.NotContains(t, k, "SAVEPOINT")
				assert.NotContains(t, k, "WHERE 0")
			}
			require.NoError(t, db.Transaction(func(tx *gorm.DB) error {
				_, ok := tx.Statement.ConnPool.(*gorm.PreparedStmtTX)
				assert.True(t, ok, "a transaction is still a *gorm.PreparedStmtTX")
				return nil
			}))
		})
	}
}

func TestRefusedRecordIsCountedNotFailed(t *testing.T) {
	db, _ := openApp(t, nil)
	svc := newService(t)
	var logs testutil.LogBuffer
	p := use(t, db, svc, gormaudit.WithLogger(logs.Logger()))
	require.NoError(t, svc.Close())

	require.NoError(t, db.Create(&User{Name: "a"}).Error, "the change stands")
	require.NoError(t, db.Transaction(func(tx *gorm.DB) error {
		return tx.Create(&User{Name: "b"}).Error
	}))
	assert.Equal(t, uint64(2), p.Dropped())
	assert.Contains(t, logs.String(), "change not audited")
	assert.Contains(t, logs.String(), "users.create")
	var n int64
	require.NoError(t, db.Model(&User{}).Count(&n).Error)
	assert.Equal(t, int64(2), n)
}
