package purego

import (
	"context"
	"database/sql"
	"fmt"
	"io"
	"log/slog"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/cleveragents/audit"
	"github.com/glebarez/sqlite"
	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"
	"gorm.io/gorm"
	gormlogger "gorm.io/gorm/logger"
)

// No goroutine of a service, of the driver or of database/sql outlives the
// tests: every service is shut down and every pool closed.
func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// The tests do not use internal/testutil: its helpers open mattn/go-sqlite3,
// and this package's test binary must build and run without cgo. Every
// connection here, the library's and the tests' own, goes through
// glebarez/sqlite.

// pureLog is one log file that tests open services on through the pure-Go
// driver and reach around with plain SQL, as an operator or attacker would.
type pureLog struct {
	path string
	raw  *sql.DB // an independent pool on the file, through the same driver
}

func freshLog(tb testing.TB) *pureLog {
	tb.Helper()
	path := filepath.Join(tb.TempDir(), "audit.db")
	raw, err := sql.Open("sqlite", DSN(path)) // glebarez/go-sqlite's driver name
	require.NoError(tb, err)
	tb.Cleanup(func() { _ = raw.Close() })
	return &pureLog{path: path, raw: raw}
}

// dialector returns a new pure-Go dialector of the log's file.
func (l *pureLog) dialector() gorm.Dialector { return pureDriver.open(l.path) }

// A driver is a SQLite GORM driver under test, by the dialector of a file.
type driver struct {
	name string
	open func(path string) gorm.Dialector
}

// glebarez is the pure-Go driver the README recommends.
var glebarez = driver{name: "glebarez", open: func(path string) gorm.Dialector { return sqlite.Open(DSN(path)) }}

// pureDriver is the driver under test: glebarez, or ncruces/go-sqlite3's
// gormlite built with -tags ncruces (see ncruces_test.go).
var pureDriver = glebarez

// service starts a service on the log through WithDialector and shuts it
// down when the test ends.
func (l *pureLog) service(tb testing.TB, more ...audit.Option) *audit.AuditService {
	tb.Helper()
	opts := append([]audit.Option{audit.WithDialector(l.dialector()), audit.WithLogger(discard())}, more...)
	s, err := audit.New(opts...)
	require.NoError(tb, err)
	tb.Cleanup(func() { _ = s.Close() })
	return s
}

// exec runs SQL on the raw pool.
func (l *pureLog) exec(tb testing.TB, query string) {
	tb.Helper()
	_, err := l.raw.Exec(query)
	require.NoError(tb, err, query)
}

// appDB opens the application's own *gorm.DB on the log's file, as a user
// of RecordTx would, with GORM's defaults.
func (l *pureLog) appDB(tb testing.TB) *gorm.DB {
	tb.Helper()
	db, err := gorm.Open(l.dialector(), &gorm.Config{Logger: gormlogger.Discard})
	require.NoError(tb, err)
	tb.Cleanup(func() {
		if sqlDB, err := db.DB(); err == nil {
			_ = sqlDB.Close()
		}
	})
	require.NoError(tb, db.AutoMigrate(&bizRow{}))
	return db
}

// bizRow is the business table of the RecordTx tests.
type bizRow struct {
	ID    string `gorm:"primaryKey"`
	Value int
}

func discard() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }

// sampleEntry is entry i of a log shaped like production: unique request
// IDs, a spread of actors, resources and outcomes, one second apart.
func sampleEntry(i int) audit.Entry {
	return audit.Entry{
		Time:      time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC).Add(time.Duration(i) * time.Second),
		EventType: []string{"user.login", "doc.read", "doc.write"}[i%3],
		Actor:     fmt.Sprintf("user-%d", i%7),
		Resource:  fmt.Sprintf("doc/%d", i%11),
		Outcome:   []string{"success", "failure", "denied", "success"}[i%4],
		RequestID: fmt.Sprintf("req-%d", i),
		Details:   map[string]any{"i": float64(i), "ip": "10.0.0.1"},
	}
}

// recordN records sampleEntry(from) .. sampleEntry(to-1) and flushes.
func recordN(tb testing.TB, s *audit.AuditService, from, to int) {
	tb.Helper()
	ctx := context.Background()
	for i := from; i < to; i++ {
		require.NoError(tb, s.Record(ctx, sampleEntry(i)))
	}
	require.NoError(tb, s.Flush(ctx))
}

func ids(es []audit.Entry) []int64 {
	out := make([]int64, len(es))
	for i, e := range es {
		out[i] = e.ID
	}
	return out
}

// seq returns from, from+1, .., to.
func seq(from, to int64) []int64 {
	var out []int64
	for i := from; i <= to; i++ {
		out = append(out, i)
	}
	return out
}

// sqlQuote quotes s as an SQL string literal.
func sqlQuote(s string) string { return "'" + strings.ReplaceAll(s, "'", "''") + "'" }
