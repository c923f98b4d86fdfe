package gormaudit_test

import (
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"os"
	"path/filepath"
	"testing"

	"github.com/cleveragents/audit"
	"github.com/cleveragents/audit/gormaudit"
	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"
	"gorm.io/driver/sqlite"
	"gorm.io/gorm"
	"gorm.io/gorm/logger"
)

// TestMain fails the run if a goroutine outlives the tests: every service
// and database pool must be closed. GORM's prepared-statement cache starts
// an expiry goroutine that nothing can stop (gorm v1.31, see its
// internal/lru): it is the one exception. A child process of the crash
// test runs its role instead (see crash_test.go).
func TestMain(m *testing.M) {
	if role := os.Getenv(helperRoleEnv); role != "" {
		os.Exit(runHelperRole(role))
	}
	goleak.VerifyTestMain(m, goleak.IgnoreTopFunction("gorm.io/gorm/internal/lru.NewLRU[...].func1"))
}

var redactKey = []byte("test-redact-key")

// User is the tests' main model.
type User struct {
	ID       uint
	Name     string
	Age      int
	Email    string
	Password string `audit:"redact"`
	Notes    string `audit:"-"`
}

// Widget has soft delete.
type Widget struct {
	ID        uint
	Label     string
	DeletedAt gorm.DeletedAt
}

// Membership has a composite primary key.
type Membership struct {
	OrgID  uint `gorm:"primaryKey;autoIncrement:false"`
	UserID uint `gorm:"primaryKey;autoIncrement:false"`
	Role   string
}

// Team has many Members, saved with it.
type Team struct {
	ID      uint
	Name    string
	Members []Member
}

// Member belongs to a Team.
type Member struct {
	ID     uint
	TeamID uint
	Name   string
}

// appDSN is the application's SQLite DSN: transactions take the write lock
// at BEGIN, so that concurrent read-then-write transactions queue on the
// busy timeout instead of failing (see the package doc).
func appDSN(path string) string {
	return path + "?_busy_timeout=10000&_journal_mode=WAL&_txlock=immediate"
}

// openApp opens the application's database on a new SQLite file, migrates
// the models and closes it when the test ends.
func openApp(tb testing.TB, cfg *gorm.Config) (*gorm.DB, string) {
	tb.Helper()
	path := filepath.Join(tb.TempDir(), "app.db")
	if cfg == nil {
		cfg = &gorm.Config{}
	}
	cfg.Logger = logger.Discard
	db, err := gorm.Open(sqlite.Open(appDSN(path)), cfg)
	require.NoError(tb, err)
	sqlDB, err := db.DB()
	require.NoError(tb, err)
	tb.Cleanup(func() { _ = sqlDB.Close() })
	require.NoError(tb, db.AutoMigrate(&User{}, &Widget{}, &Membership{}, &Team{}, &Member{}))
	return db, path
}

// newService starts an audit service on its own SQLite file (unless opts
// choose another database) and closes it when the test ends.
func newService(tb testing.TB, opts ...audit.Option) *audit.AuditService {
	tb.Helper()
	path := filepath.Join(tb.TempDir(), "audit.db")
	svc, err := audit.New(append([]audit.Option{audit.WithSQLite(path)}, opts...)...)
	require.NoError(tb, err)
	tb.Cleanup(func() { _ = svc.Close() })
	return svc
}

// setup returns an application database with the plugin registered and
// the service it records into.
func setup(tb testing.TB, opts ...gormaudit.Option) (*gorm.DB, *audit.AuditService, *gormaudit.Plugin) {
	tb.Helper()
	db, _ := openApp(tb, nil)
	svc := newService(tb)
	p := use(tb, db, svc, append([]gormaudit.Option{gormaudit.WithRedactKey(redactKey)}, opts...)...)
	return db, svc, p
}

// use registers a new plugin that records into rec on db.
func use(tb testing.TB, db *gorm.DB, rec gormaudit.Recorder, opts ...gormaudit.Option) *gormaudit.Plugin {
	tb.Helper()
	p, err := gormaudit.New(rec, opts...)
	require.NoError(tb, err)
	require.NoError(tb, db.Use(p))
	return p
}

// recorded flushes svc and returns every committed entry in ID order.
func recorded(tb testing.TB, svc *audit.AuditService) []audit.Entry {
	tb.Helper()
	ctx := context.Background()
	require.NoError(tb, svc.Flush(ctx))
	es, err := svc.List(ctx, audit.Filter{Limit: audit.MaxListLimit})
	require.NoError(tb, err)
	return es
}

// hmacOf computes the redacted form of a value's canonical JSON
// independently of the plugin.
func hmacOf(key []byte, canonicalJSON string) string {
	m := hmac.New(sha256.New, key)
	m.Write([]byte(canonicalJSON))
	return "hmac-sha256:" + hex.EncodeToString(m.Sum(nil))
}

// actorCtx returns a context carrying an actor and a request ID.
func actorCtx(actor, requestID string) context.Context {
	return audit.ContextWithRequestID(audit.ContextWithActor(context.Background(), actor), requestID)
}
