package gormaudit_test

import (
	"errors"
	"fmt"
	"sort"
	"testing"

	"github.com/cleveragents/audit/gormaudit"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"gorm.io/gorm"
)

var errRollback = errors.New("roll back, please")

func TestCreate(t *testing.T) {
	t.Run("records the row with actor, request ID and tagged fields", func(t *testing.T) {
		db, svc, _ := setup(t)
		u := User{Name: "Ann", Age: 30, Email: "ann@example.com", Password: "s3cret", Notes: "private"}
		require.NoError(t, db.WithContext(actorCtx("alice", "req-1")).Create(&u).Error)

		es := recorded(t, svc)
		require.Len(t, es, 1)
		e := es[0]
		assert.Equal(t, "users.create", e.EventType)
		assert.Equal(t, fmt.Sprintf("users/%d", u.ID), e.Resource)
		assert.Equal(t, "alice", e.Actor)
		assert.Equal(t, "req-1", e.RequestID)
		assert.Equal(t, map[string]any{"after": map[string]any{
			"id":       float64(u.ID),
			"name":     "Ann",
			"age":      float64(30),
			"email":    "ann@example.com",
			"password": hmacOf(redactKey, `"s3cret"`),
		}}, e.Details)
	})

	t.Run("actor defaults to system and is configurable", func(t *testing.T) {
		db, svc, _ := setup(t)
		require.NoError(t, db.Create(&User{Name: "a"}).Error)
		db2, svc2, _ := setup(t, gormaudit.WithDefaultActor("batch-job"))
		require.NoError(t, db2.Create(&User{Name: "b"}).Error)

		es := recorded(t, svc)
		require.Len(t, es, 1)
		assert.Equal(t, "system", es[0].Actor)
		assert.Empty(t, es[0].RequestID)
		es2 := recorded(t, svc2)
		require.Len(t, es2, 1)
		assert.Equal(t, "batch-job", es2[0].Actor)
	})

	t.Run("a batch create records one entry per row", func(t *testing.T) {
		db, svc, _ := setup(t)
		users := []User{{Name: "a"}, {Name: "b"}, {Name: "c"}}
		require.NoError(t, db.Create(&users).Error)

		es := recorded(t, svc)
		require.Len(t, es, 3)
		for i, e := range es {
			assert.Equal(t, "users.create", e.EventType)
			assert.Equal(t, fmt.Sprintf("users/%d", users[i].ID), e.Resource)
			assert.Equal(t, users[i].Name, e.Details["after"].(map[string]any)["name"])
		}
	})

	t.Run("a map create records its columns and generated key", func(t *testing.T) {
		db, svc, _ := setup(t)
		require.NoError(t, db.Model(&User{}).Create(map[string]any{"Name": "m", "age": 7, "Password": "pw"}).Error)

		es := recorded(t, svc)
		require.Len(t, es, 1)
		assert.Equal(t, "users/1", es[0].Resource)
		assert.Equal(t, map[string]any{
			"id": float64(1), "name": "m", "age": float64(7), "password": hmacOf(redactKey, `"pw"`),
		}, es[0].Details["after"])
	})

	t.Run("a failed create records nothing", func(t *testing.T) {
		db, svc, _ := setup(t)
		require.NoError(t, db.Create(&User{ID: 1, Name: "a"}).Error)
		require.Error(t, db.Create(&User{ID: 1, Name: "dup"}).Error)
		es := recorded(t, svc)
		require.Len(t, es, 1)
		assert.Equal(t, "a", es[0].Details["after"].(map[string]any)["name"])
	})
}

func TestUpdate(t *testing.T) {
	t.Run("a model update records before, after and changed columns", func(t *testing.T) {
		db, svc, _ := setup(t)
		u := User{Name: "Ann", Age: 30, Password: "old", Notes: "n1"}
		require.NoError(t, db.Create(&u).Error)
		ctx := actorCtx("bob", "req-9")
		require.NoError(t, db.WithContext(ctx).Model(&u).Updates(map[string]any{"age": 31, "password": "new", "notes": "n2"}).Error)

		es := recorded(t, svc)
		require.Len(t, es, 2)
		e := es[1]
		assert.Equal(t, "users.update", e.EventType)
		assert.Equal(t, fmt.Sprintf("users/%d", u.ID), e.Resource)
		assert.Equal(t, "bob", e.Actor)
		assert.Equal(t, "req-9", e.RequestID)
		assert.Equal(t, map[string]any{
			"before": map[string]any{
				"id": float64(u.ID), "name": "Ann", "age": float64(30), "email": "", "password": hmacOf(redactKey, `"old"`),
			},
			"after": map[string]any{
				"id": float64(u.ID), "name": "Ann", "age": float64(31), "email": "", "password": hmacOf(redactKey, `"new"`),
			},
			// notes changed too, but it is left out of Details entirely.
			"changed": []any{"age", "password"},
		}, e.Details)
	})

	t.Run("after values are read back from the database", func(t *testing.T) {
		db, svc, _ := setup(t)
		u := User{Name: "Ann", Age: 30}
		require.NoError(t, db.Create(&u).Error)
		require.NoError(t, db.Model(&u).Update("age", gorm.Expr("age + ?", 5)).Error)

		es := recorded(t, svc)
		require.Len(t, es, 2)
		assert.Equal(t, float64(30), es[1].Details["before"].(map[string]any)["age"])
		assert.Equal(t, float64(35), es[1].Details["after"].(map[string]any)["age"])
		assert.Equal(t, []any{"age"}, es[1].Details["changed"])
	})

	t.Run("before values come from the database, not the stale model", func(t *testing.T) {
		db, svc, _ := setup(t)
		u := User{Name: "Ann", Age: 30}
		require.NoError(t, db.Create(&u).Error)
		require.NoError(t, db.Model(&User{}).Where("id = ?", u.ID).Update("name", "Bea").Error)
		u.Name = "Cid"
		require.NoError(t, db.Save(&u).Error)

		es := recorded(t, svc)
		require.Len(t, es, 3)
		e := es[2]
		assert.Equal(t, "users.update", e.EventType)
		assert.Equal(t, "Bea", e.Details["before"].(map[string]any)["name"])
		assert.Equal(t, "Cid", e.Details["after"].(map[string]any)["name"])
		assert.Equal(t, []any{"name"}, e.Details["changed"])
	})

	t.Run("a slice of models records one entry per row", func(t *testing.T) {
		db, svc, _ := setup(t)
		users := []User{{Name: "a", Age: 1}, {Name: "b", Age: 2}, {Name: "c", Age: 3}}
		require.NoError(t, db.Create(&users).Error)
		sel := users[:2]
		require.NoError(t, db.Model(&sel).Update("age", 9).Error)

		es := recorded(t, svc)[3:]
		require.Len(t, es, 2)
		resources := []string{es[0].Resource, es[1].Resource}
		sort.Strings(resources)
		assert.Equal(t, []string{fmt.Sprintf("users/%d", users[0].ID), fmt.Sprintf("users/%d", users[1].ID)}, resources)
		for _, e := range es {
			assert.Equal(t, float64(9), e.Details["after"].(map[string]any)["age"])
		}
	})

	t.Run("an update that matches no row records nothing", func(t *testing.T) {
		db, svc, _ := setup(t)
		require.NoError(t, db.Model(&User{ID: 99}).Update("age", 1).Error)
		require.NoError(t, db.Model(&User{}).Where("age > ?", 100).Update("age", 1).Error)
		assert.Empty(t, recorded(t, svc))
	})

	t.Run("a batch update records one entry with condition, rows and changes", func(t *testing.T) {
		db, svc, _ := setup(t)
		for i := 1; i <= 5; i++ {
			require.NoError(t, db.Create(&User{Name: fmt.Sprint("u", i), Age: i}).Error)
		}
		err := db.WithContext(actorCtx("ops", "req-b")).Model(&User{}).Where("age > ?", 3).
			Updates(map[string]any{"email": "x@example.com", "password": "reset", "notes": "hidden"}).Error
		require.NoError(t, err)

		es := recorded(t, svc)
		require.Len(t, es, 6)
		e := es[5]
		assert.Equal(t, "users.update", e.EventType)
		assert.Equal(t, "users", e.Resource)
		assert.Equal(t, "ops", e.Actor)
		assert.Equal(t, "req-b", e.RequestID)
		assert.Equal(t, map[string]any{
			"where":         "age > ?",
			"vars":          []any{float64(3)},
			"rows_affected": float64(2),
			"changes":       map[string]any{"email": "x@example.com", "password": hmacOf(redactKey, `"reset"`)},
		}, e.Details)
	})

	t.Run("a batch update with an expression shows its SQL", func(t *testing.T) {
		db, svc, _ := setup(t)
		require.NoError(t, db.Create(&User{Name: "a", Age: 1}).Error)
		require.NoError(t, db.Model(&User{}).Where("name = ?", "a").Update("age", gorm.Expr("age + ?", 1)).Error)
		es := recorded(t, svc)
		require.Len(t, es, 2)
		assert.Equal(t, "name = ?", es[1].Details["where"])
		assert.Equal(t, []any{"a"}, es[1].Details["vars"])
		assert.Equal(t, map[string]any{"age": "age + 1"}, es[1].Details["changes"])
	})
}

func TestDelete(t *testing.T) {
	t.Run("a model delete records the row as it was", func(t *testing.T) {
		db, svc, _ := setup(t)
		u := User{Name: "Ann", Age: 30, Password: "pw"}
		require.NoError(t, db.Create(&u).Error)
		require.NoError(t, db.Model(&u).Update("age", 40).Error)
		u.Age = 12345 // stale in memory: the entry shows the stored value
		require.NoError(t, db.WithContext(actorCtx("carol", "")).Delete(&u).Error)

		es := recorded(t, svc)
		require.Len(t, es, 3)
		e := es[2]
		assert.Equal(t, "users.delete", e.EventType)
		assert.Equal(t, fmt.Sprintf("users/%d", u.ID), e.Resource)
		assert.Equal(t, "carol", e.Actor)
		assert.Equal(t, map[string]any{"before": map[string]any{
			"id": float64(u.ID), "name": "Ann", "age": float64(40), "email": "", "password": hmacOf(redactKey, `"pw"`),
		}}, e.Details)
	})

	t.Run("a batch delete records one entry with condition and rows", func(t *testing.T) {
		db, svc, _ := setup(t)
		for i := 1; i <= 5; i++ {
			require.NoError(t, db.Create(&User{Name: fmt.Sprint("u", i), Age: i}).Error)
		}
		require.NoError(t, db.Where("age < ?", 3).Delete(&User{}).Error)
		require.NoError(t, db.Where("age > ?", 100).Delete(&User{}).Error) // no row: no entry

		es := recorded(t, svc)
		require.Len(t, es, 6)
		e := es[5]
		assert.Equal(t, "users.delete", e.EventType)
		assert.Equal(t, "users", e.Resource)
		assert.Equal(t, map[string]any{"where": "age < ?", "vars": []any{float64(3)}, "rows_affected": float64(2)}, e.Details)
	})

	t.Run("a slice of models records one entry per row", func(t *testing.T) {
		db, svc, _ := setup(t)
		users := []User{{Name: "a"}, {Name: "b"}, {Name: "c"}}
		require.NoError(t, db.Create(&users).Error)
		require.NoError(t, db.Delete(users[1:]).Error)

		es := recorded(t, svc)[3:]
		require.Len(t, es, 2)
		names := []any{es[0].Details["before"].(map[string]any)["name"], es[1].Details["before"].(map[string]any)["name"]}
		assert.ElementsMatch(t, []any{"b", "c"}, names)
		var left []User
		require.NoError(t, db.Find(&left).Error)
		require.Len(t, left, 1)
	})

	t.Run("a soft delete is a delete", func(t *testing.T) {
		db, svc, _ := setup(t)
		w := Widget{Label: "w"}
		require.NoError(t, db.Create(&w).Error)
		require.NoError(t, db.Delete(&w).Error)
		require.NoError(t, db.Delete(&w).Error) // already deleted: no row, no entry

		es := recorded(t, svc)
		require.Len(t, es, 2)
		assert.Equal(t, "widgets.delete", es[1].EventType)
		assert.Equal(t, fmt.Sprintf("widgets/%d", w.ID), es[1].Resource)
		assert.Equal(t, map[string]any{"id": float64(w.ID), "label": "w", "deleted_at": nil}, es[1].Details["before"])
	})
}

func TestCompositeKey(t *testing.T) {
	db, svc, _ := setup(t)
	m := Membership{OrgID: 7, UserID: 42, Role: "member"}
	require.NoError(t, db.Create(&m).Error)
	require.NoError(t, db.Model(&m).Update("role", "admin").Error)

	es := recorded(t, svc)
	require.Len(t, es, 2)
	assert.Equal(t, "memberships/7,42", es[0].Resource)
	assert.Equal(t, "memberships/7,42", es[1].Resource)
	assert.Equal(t, []any{"role"}, es[1].Details["changed"])
}

func TestAssociations(t *testing.T) {
	db, svc, _ := setup(t)
	team := Team{Name: "red", Members: []Member{{Name: "ann"}, {Name: "bob"}}}
	require.NoError(t, db.WithContext(actorCtx("alice", "req-t")).Create(&team).Error)

	es := recorded(t, svc)
	require.Len(t, es, 3)
	assert.Equal(t, fmt.Sprintf("teams/%d", team.ID), es[0].Resource, "the row before its associations")
	assert.Equal(t, map[string]any{"id": float64(team.ID), "name": "red"}, es[0].Details["after"])
	for i, m := range team.Members {
		assert.Equal(t, "members.create", es[i+1].EventType)
		assert.Equal(t, fmt.Sprintf("members/%d", m.ID), es[i+1].Resource)
		assert.Equal(t, "alice", es[i+1].Actor)
		assert.Equal(t, "req-t", es[i+1].RequestID)
	}
}
