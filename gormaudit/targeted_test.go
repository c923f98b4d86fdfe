package gormaudit_test

import (
	"fmt"
	"testing"

	"github.com/cleveragents/audit"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"gorm.io/gorm"
	"gorm.io/gorm/clause"
)

// Ticket's primary key is write-only for GORM (`->:false`): GORM never
// reads it, not even back after a create.
type Ticket struct {
	ID    uint `gorm:"primaryKey;->:false"`
	Title string
}

// after returns an entry's "after" values.
func after(e audit.Entry) map[string]any { return e.Details["after"].(map[string]any) }

// before returns an entry's "before" values.
func before(e audit.Entry) map[string]any { return e.Details["before"].(map[string]any) }

// TestTargetedCases holds the cases in which the plugin once recorded a
// wrong entry, or none, or broke the statement.
func TestTargetedCases(t *testing.T) {
	t.Run("an update through a table alias", func(t *testing.T) {
		db, svc, _ := setup(t)
		u := User{Name: "ann", Age: 1}
		require.NoError(t, db.Create(&u).Error)
		require.NoError(t, db.Table("users AS u").Model(&u).Where("u.age = ?", 1).Update("age", 2).Error)

		es := recorded(t, svc)
		require.Len(t, es, 2)
		assert.Equal(t, "users.update", es[1].EventType)
		assert.Equal(t, fmt.Sprintf("users/%d", u.ID), es[1].Resource)
		assert.Equal(t, float64(1), before(es[1])["age"])
		assert.Equal(t, float64(2), after(es[1])["age"])
	})

	t.Run("a delete through a table alias", func(t *testing.T) {
		db, svc, _ := setup(t)
		u := User{Name: "ann", Age: 1}
		require.NoError(t, db.Create(&u).Error)
		require.NoError(t, db.Table("users AS u").Where("u.name = ?", "ann").Delete(&u).Error)

		es := recorded(t, svc)
		require.Len(t, es, 2)
		assert.Equal(t, "users.delete", es[1].EventType)
		assert.Equal(t, "ann", before(es[1])["name"])
		var n int64
		require.NoError(t, db.Model(&User{}).Count(&n).Error)
		assert.Zero(t, n)
	})

	t.Run("a SetColumn of a Before(gorm:update) callback registered after the plugin", func(t *testing.T) {
		db, svc, _ := setup(t)
		require.NoError(t, db.Callback().Update().Before("gorm:update").Register("test:set_email", func(tx *gorm.DB) {
			if tx.Statement.Schema != nil && tx.Statement.Schema.Table == "users" {
				tx.Statement.SetColumn("Email", "set@hook.example")
			}
		}))
		u := User{Name: "ann"}
		require.NoError(t, db.Create(&u).Error)
		require.NoError(t, db.Model(&u).Update("name", "bea").Error)

		var stored User
		require.NoError(t, db.First(&stored, u.ID).Error)
		assert.Equal(t, "set@hook.example", stored.Email, "the callback's column is stored")
		es := recorded(t, svc)
		require.Len(t, es, 2)
		assert.Equal(t, "set@hook.example", after(es[1])["email"])
		assert.Equal(t, []any{"email", "name"}, es[1].Details["changed"])
	})

	t.Run("an upsert that updates an existing row", func(t *testing.T) {
		db, svc, _ := setup(t)
		u := User{Name: "ann", Age: 1, Email: "ann@example.com"}
		require.NoError(t, db.Create(&u).Error)
		// Only age is updated on conflict: the name in the struct is
		// never stored.
		require.NoError(t, db.Clauses(clause.OnConflict{
			Columns:   []clause.Column{{Name: "id"}},
			DoUpdates: clause.AssignmentColumns([]string{"age"}),
		}).Create(&User{ID: u.ID, Name: "never stored", Age: 7}).Error)

		es := recorded(t, svc)
		require.Len(t, es, 2)
		e := es[1]
		assert.Equal(t, "users.update", e.EventType)
		assert.Equal(t, fmt.Sprintf("users/%d", u.ID), e.Resource)
		assert.Equal(t, "ann", after(e)["name"])
		assert.Equal(t, float64(7), after(e)["age"])
		assert.Equal(t, float64(1), before(e)["age"])
		assert.Equal(t, []any{"age"}, e.Details["changed"])
	})

	t.Run("an upsert batch creates some rows and updates others", func(t *testing.T) {
		db, svc, _ := setup(t)
		u := User{Name: "ann", Age: 1}
		require.NoError(t, db.Create(&u).Error)
		batch := []User{{ID: u.ID, Name: "ann", Age: 2}, {ID: u.ID + 1, Name: "new", Age: 3}}
		require.NoError(t, db.Clauses(clause.OnConflict{UpdateAll: true}).Create(&batch).Error)

		es := recorded(t, svc)
		require.Len(t, es, 3)
		assert.Equal(t, "users.update", es[1].EventType)
		assert.Equal(t, []any{"age"}, es[1].Details["changed"])
		assert.Equal(t, "users.create", es[2].EventType)
		assert.Equal(t, fmt.Sprintf("users/%d", u.ID+1), es[2].Resource)
	})

	t.Run("a DO NOTHING conflict records nothing for the row left alone", func(t *testing.T) {
		db, svc, _ := setup(t)
		u := User{Name: "ann", Age: 1}
		require.NoError(t, db.Create(&u).Error)
		batch := []User{{ID: u.ID, Name: "ignored"}, {ID: u.ID + 1, Name: "inserted"}}
		require.NoError(t, db.Clauses(clause.OnConflict{DoNothing: true}).Create(&batch).Error)
		require.NoError(t, db.Clauses(clause.OnConflict{DoNothing: true}).Create(&User{ID: u.ID, Name: "ignored too"}).Error)

		es := recorded(t, svc)
		require.Len(t, es, 2)
		assert.Equal(t, "users.create", es[1].EventType)
		assert.Equal(t, "inserted", after(es[1])["name"])
	})

	t.Run("a create with Omit records the stored values", func(t *testing.T) {
		db, svc, _ := setup(t)
		u := User{Name: "ann", Age: 3, Email: "not-stored@example.com"}
		require.NoError(t, db.Omit("Email", "Age").Create(&u).Error)

		es := recorded(t, svc)
		require.Len(t, es, 1)
		assert.Equal(t, "", after(es[0])["email"])
		assert.Equal(t, float64(0), after(es[0])["age"])
		assert.Equal(t, "ann", after(es[0])["name"])
	})

	t.Run("an update of the primary key", func(t *testing.T) {
		db, svc, _ := setup(t)
		u := User{Name: "ann"}
		require.NoError(t, db.Create(&u).Error)
		old := u.ID
		require.NoError(t, db.Model(&u).Update("id", 1000).Error)
		require.Equal(t, uint(1000), u.ID)

		es := recorded(t, svc)
		require.Len(t, es, 2)
		e := es[1]
		assert.Equal(t, "users.update", e.EventType)
		assert.Equal(t, fmt.Sprintf("users/%d", old), e.Resource, "the row as it was named")
		assert.Equal(t, float64(old), before(e)["id"])
		assert.Equal(t, float64(1000), after(e)["id"])
		assert.Equal(t, []any{"id"}, e.Details["changed"])
	})

	t.Run("a batch update without a model records its changes", func(t *testing.T) {
		db, svc, _ := setup(t)
		for i := 1; i <= 4; i++ {
			require.NoError(t, db.Create(&User{Name: fmt.Sprint("u", i), Age: i}).Error)
		}
		require.NoError(t, db.Table("users").Where("age > ?", 2).Updates(map[string]any{"email": "x@example.com"}).Error)

		es := recorded(t, svc)
		require.Len(t, es, 5)
		assert.Equal(t, map[string]any{
			"where":         "age > ?",
			"vars":          []any{float64(2)},
			"rows_affected": float64(2),
			"changes":       map[string]any{"email": "x@example.com"},
		}, es[4].Details)
	})

	t.Run("a delete narrowed by a later callback records only the rows deleted", func(t *testing.T) {
		db, svc, _ := setup(t)
		require.NoError(t, db.Callback().Delete().Before("gorm:delete").Register("test:narrow", func(tx *gorm.DB) {
			tx.Statement.AddClause(clause.Where{Exprs: []clause.Expression{clause.Neq{Column: "name", Value: "keep"}}})
		}))
		users := []User{{Name: "gone"}, {Name: "keep"}}
		require.NoError(t, db.Create(&users).Error)
		require.NoError(t, db.Delete(&users).Error)

		var left []User
		require.NoError(t, db.Find(&left).Error)
		require.Len(t, left, 1)
		es := recorded(t, svc)
		require.Len(t, es, 3)
		assert.Equal(t, "users.delete", es[2].EventType)
		assert.Equal(t, "gone", before(es[2])["name"])
	})

	t.Run("a create whose primary key GORM cannot read", func(t *testing.T) {
		db, svc, _ := setup(t)
		require.NoError(t, db.AutoMigrate(&Ticket{}))
		require.NoError(t, db.Create(&Ticket{Title: "t1"}).Error)

		es := recorded(t, svc)
		require.Len(t, es, 1)
		assert.Equal(t, "tickets.create", es[0].EventType)
		assert.Equal(t, "t1", after(es[0])["title"])
	})
}
