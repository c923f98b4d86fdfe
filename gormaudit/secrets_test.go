package gormaudit_test

import (
	"fmt"
	"path/filepath"
	"strings"
	"testing"

	"github.com/cleveragents/audit"
	"github.com/cleveragents/audit/gormaudit"
	"github.com/cleveragents/audit/internal/testutil"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"gorm.io/gorm"
)

// Session is keyed by an untagged token column.
type Session struct {
	ID           uint
	SessionToken string
	UserAgent    string
}

// Credential has columns whose names say they hold secrets, none tagged,
// one opted in, and a json:"-" field with a harmless name.
type Credential struct {
	ID           uint
	Login        string
	PasswordHash string
	APIToken     string
	TOTPSeed     string
	OTPEnabled   bool   `audit:"clear"` // opted in: not a secret
	Recovery     string `json:"-"`
	Leaked       string `json:"-" audit:"clear"` // json:"-" wins
}

// storedDetails returns the details column of every row of the audit
// table as stored, read with plain SQL.
func storedDetails(t *testing.T, path string) string {
	t.Helper()
	rows, err := testutil.RawDB(t, path).Query("SELECT COALESCE(details, '') FROM " + audit.DefaultTable)
	require.NoError(t, err)
	defer rows.Close()
	var all strings.Builder
	for rows.Next() {
		var d string
		require.NoError(t, rows.Scan(&d))
		all.WriteString(d + "\n")
	}
	require.NoError(t, rows.Err())
	return all.String()
}

// secretSetup is setup with the audit file's path, which storedDetails
// reads.
func secretSetup(t *testing.T) (*gorm.DB, *audit.AuditService, string) {
	t.Helper()
	db, _ := openApp(t, nil)
	require.NoError(t, db.AutoMigrate(&Session{}, &Credential{}))
	path := filepath.Join(t.TempDir(), "audit.db")
	svc, err := audit.New(audit.WithSQLite(path))
	require.NoError(t, err)
	t.Cleanup(func() { _ = svc.Close() })
	use(t, db, svc)
	return db, svc, path
}

func TestSecrets(t *testing.T) {
	t.Run("values bound to a redacted column in a where clause", func(t *testing.T) {
		db, svc, path := secretSetup(t)
		require.NoError(t, db.Create(&Session{SessionToken: "sess-old-111", UserAgent: "a"}).Error)
		require.NoError(t, db.Model(&Session{}).Where("session_token = ?", "sess-old-111").
			Updates(map[string]any{"session_token": "sess-new-999", "user_agent": "b"}).Error)
		require.NoError(t, db.Where("session_token = ? AND user_agent = ?", "sess-new-999", "b").Delete(&Session{}).Error)
		require.NoError(t, db.Table("sessions").Where("session_token = ?", "sess-raw-555").Update("user_agent", "c").Error) // no row: no entry

		es := recorded(t, svc)
		require.Len(t, es, 3)
		upd := es[1].Details
		assert.Equal(t, "session_token = ?", upd["where"], "the statement with its placeholders")
		assert.Equal(t, []any{"[redacted]"}, upd["vars"])
		assert.Equal(t, map[string]any{"session_token": "[redacted]", "user_agent": "b"}, upd["changes"])
		del := es[2].Details
		assert.Equal(t, "session_token = ? AND user_agent = ?", del["where"])
		assert.Equal(t, []any{"[redacted]", "[redacted]"}, del["vars"], "every value of a condition that names a secret")
		stored := storedDetails(t, path)
		for _, secret := range []string{"sess-old-111", "sess-new-999"} {
			assert.NotContains(t, stored, secret)
		}
	})

	t.Run("an expression that names a redacted column", func(t *testing.T) {
		db, svc, path := secretSetup(t)
		require.NoError(t, db.Create(&Session{SessionToken: "t1", UserAgent: "a"}).Error)
		require.NoError(t, db.Model(&Session{}).Where("1 = 1").
			Update("user_agent", gorm.Expr("session_token || ?", "-suffix-secret")).Error)
		es := recorded(t, svc)
		require.Len(t, es, 2)
		assert.Equal(t, map[string]any{"user_agent": `session_token || "[redacted]"`}, es[1].Details["changes"])
		assert.NotContains(t, storedDetails(t, path), "-suffix-secret")
	})

	t.Run("untagged columns whose names say secret", func(t *testing.T) {
		db, svc, path := secretSetup(t)
		c := Credential{Login: "ann", PasswordHash: "$2a$10$hash", APIToken: "tok-123", TOTPSeed: "JBSWY3DP",
			OTPEnabled: true, Recovery: "recovery-words", Leaked: "leaked-words"}
		require.NoError(t, db.Create(&c).Error)
		require.NoError(t, db.Model(&c).Updates(map[string]any{"password_hash": "$2a$10$new", "api_token": "tok-456"}).Error)
		require.NoError(t, db.Delete(&c).Error)

		es := recorded(t, svc)
		require.Len(t, es, 3)
		want := map[string]any{
			"id": float64(c.ID), "login": "ann", "otp_enabled": true,
			"password_hash": "[redacted]", "api_token": "[redacted]", "totp_seed": "[redacted]",
			"recovery": "[redacted]", "leaked": "[redacted]",
		}
		assert.Equal(t, want, after(es[0]))
		assert.Equal(t, []any{"api_token", "password_hash"}, es[1].Details["changed"], "a redacted column still shows as changed")
		assert.Equal(t, want, before(es[2]))
		stored := storedDetails(t, path)
		for _, secret := range []string{"$2a$10$hash", "$2a$10$new", "tok-123", "tok-456", "JBSWY3DP", "recovery-words", "leaked-words"} {
			assert.NotContains(t, stored, secret)
		}
	})

	t.Run("with a key, equal secrets stay correlatable", func(t *testing.T) {
		db, _ := openApp(t, nil)
		require.NoError(t, db.AutoMigrate(&Credential{}))
		svc := newService(t)
		use(t, db, svc, gormaudit.WithRedactKey(redactKey))
		require.NoError(t, db.Create(&Credential{Login: "a", APIToken: "same"}).Error)
		require.NoError(t, db.Create(&Credential{Login: "b", APIToken: "same"}).Error)
		es := recorded(t, svc)
		require.Len(t, es, 2)
		assert.Equal(t, hmacOf(redactKey, `"same"`), after(es[0])["api_token"])
		assert.Equal(t, after(es[0])["api_token"], after(es[1])["api_token"])
	})

	t.Run("secret-named columns of a table without a model", func(t *testing.T) {
		db, svc, path := secretSetup(t)
		require.NoError(t, db.Create(&Credential{Login: "ann", APIToken: "tok-1"}).Error)
		require.NoError(t, db.Table("credentials").Where("login = ?", "ann").Updates(map[string]any{"api_token": "tok-table-2"}).Error)
		es := recorded(t, svc)
		require.Len(t, es, 2)
		assert.Equal(t, map[string]any{"api_token": "[redacted]"}, es[1].Details["changes"])
		assert.Equal(t, []any{"ann"}, es[1].Details["vars"], "a condition on a column that is no secret stays readable")
		assert.NotContains(t, storedDetails(t, path), "tok-table-2")
	})
}

func TestSecretNames(t *testing.T) {
	db, svc, _ := secretSetup(t)
	type row struct {
		col    string
		secret bool
	}
	// Through a table without a model, only the name decides.
	cols := []row{
		{"password", true}, {"user_passwd", true}, {"client_secret", true}, {"refresh_token", true},
		{"api_key", true}, {"apikey", true}, {"private_key", true}, {"otp", true}, {"totp_code", true},
		{"mfa_backup", true}, {"seed", true}, {"aws_credentials", true},
		{"footprint", false}, {"seeded_at", false}, {"tokenless", true}, {"name", false},
	}
	var ddl []string
	changes := map[string]any{}
	for _, c := range cols {
		ddl = append(ddl, c.col+" TEXT")
		changes[c.col] = "v-" + c.col
	}
	require.NoError(t, db.Exec("CREATE TABLE names (id INTEGER PRIMARY KEY, "+strings.Join(ddl, ", ")+")").Error)
	require.NoError(t, db.Exec("INSERT INTO names (id) VALUES (1)").Error)
	require.NoError(t, db.Table("names").Where("id = ?", 1).Updates(changes).Error)
	es := recorded(t, svc)
	require.Len(t, es, 1)
	got := es[0].Details["changes"].(map[string]any)
	for _, c := range cols {
		want := any("v-" + c.col)
		if c.secret {
			want = "[redacted]"
		}
		assert.Equal(t, want, got[c.col], fmt.Sprintf("column %s", c.col))
	}
}
