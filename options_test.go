package audit

import (
	"context"
	"fmt"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/cleveragents/audit/internal/testutil"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"gorm.io/driver/postgres"
	"gorm.io/driver/sqlite"
	"gorm.io/gorm"
)

func TestNewValidatesOptions(t *testing.T) {
	memDB, err := gorm.Open(sqlite.Open("file:/audit-test-new?vfs=memdb"), &gorm.Config{})
	require.NoError(t, err)
	t.Cleanup(func() { closeGorm(memDB) })

	tests := []struct {
		name   string
		opts   []Option
		option string // the option the error must name
	}{
		{"queue size zero", []Option{WithQueueSize(0)}, "WithQueueSize"},
		{"queue size negative", []Option{WithQueueSize(-1)}, "WithQueueSize"},
		{"batch size zero", []Option{WithBatchSize(0)}, "WithBatchSize"},
		{"table with space", []Option{WithTable("audit log")}, "WithTable"},
		{"table injection", []Option{WithTable(`x"; DROP TABLE users; --`)}, "WithTable"},
		{"table leading digit", []Option{WithTable("1audit")}, "WithTable"},
		{"table too long", []Option{WithTable("a" + strings.Repeat("b", 63))}, "WithTable"},
		{"table empty", []Option{WithTable("")}, "WithTable"},
		{"table reserved", []Option{WithTable(chainTable)}, "WithTable"},
		{"negative retention", []Option{WithRetention(-time.Second)}, "WithRetention"},
		{"empty sqlite path", []Option{WithSQLite("")}, "WithSQLite"},
		{"empty chain key", []Option{WithChainKey(nil)}, "WithChainKey"},
		{"nil dialector", []Option{WithDialector(nil)}, "WithDialector"},
		{"nil db", []Option{WithDB(nil)}, "WithDB"},
		{"nil logger", []Option{WithLogger(nil)}, "WithLogger"},
		{"nil clock", []Option{WithClock(nil)}, "WithClock"},
		{"unknown overflow", []Option{WithOverflow(OverflowPolicy(7))}, "WithOverflow"},
		{"empty redact key", []Option{WithRedactKeys(nil, "password")}, "WithRedactKeys"},
		{"sqlite and dialector", []Option{WithSQLite("a.db"), WithDialector(sqlite.Open("b.db"))}, "WithSQLite, WithDialector"},
		{"sqlite and db", []Option{WithSQLite("a.db"), WithDB(memDB)}, "WithDB"},
		{"nil option", []Option{nil}, "nil Option"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s, err := New(tt.opts...)
			require.Error(t, err)
			assert.Nil(t, s)
			assert.Contains(t, err.Error(), tt.option)
		})
	}

	t.Run("boundaries accepted", func(t *testing.T) {
		s, err := New(WithSQLite(testutil.TempDB(t)), WithQueueSize(1), WithBatchSize(1),
			WithTable("_"+strings.Repeat("a", 62)), WithRetention(0), WithChainKey([]byte{0}))
		require.NoError(t, err)
		require.NoError(t, s.Close())
	})
}

// hostMaliciousTables are table names that are not identifiers: every one
// must be refused by New before anything touches the database.
var hostMaliciousTables = []string{
	`x"; DROP TABLE audit_entries; --`,
	`audit_entries"; DROP TABLE "audit_chain_heads`,
	`t" (id INTEGER); --`,
	`audit_entries; DELETE FROM audit_entries`,
	`audit_entries--`,
	`a/**/b`,
	`a'b`,
	`a"b`,
	"a`b",
	`[audit_entries]`,
	`"audit_entries"`,
	`main.audit_entries`,
	`temp.x`,
	`public.audit_entries`,
	`a b`,
	"a\tb",
	"a\nb",
	"a\x00b",
	"audit_entries\x00; DROP TABLE audit_chain_heads",
	"",
	"1audit",
	"$audit",
	"audit$",
	"tаble",                       // a Cyrillic а
	"ｔａｂｌｅ",                       // fullwidth
	"audit\u200d",                 // a zero-width joiner
	"audit\u202e",                 // a right-to-left override
	"audit_entriés",               // not ASCII
	"a" + strings.Repeat("b", 63), // 64 bytes
	chainTable,
	strings.ToUpper(chainTable),
	"Audit_Chain_Heads",
}

func TestHostTableNamesRefused(t *testing.T) {
	ctx := context.Background()
	// A log with data, that the attempts must leave as it was.
	s, path := newService(t)
	recordN(t, s, 0, 5)

	for _, name := range hostMaliciousTables {
		t.Run(strconv.Quote(name), func(t *testing.T) {
			d := newCountingDialector(path, 0)
			for _, opts := range [][]Option{
				{WithSQLite(path), WithTable(name)},
				{WithDialector(d), WithTable(name)},
			} {
				got, err := New(opts...)
				require.Error(t, err)
				assert.Nil(t, got)
				assert.Contains(t, err.Error(), "WithTable")
			}
			assert.Zero(t, d.opens.Load(), "refused before the database was opened")
		})
	}

	// Nothing was created, dropped or changed.
	raw := testutil.RawDB(t, path)
	rows, err := raw.Query(`SELECT name FROM sqlite_master WHERE type = 'table' ORDER BY name`)
	require.NoError(t, err)
	var tables []string
	for rows.Next() {
		var name string
		require.NoError(t, rows.Scan(&name))
		tables = append(tables, name)
	}
	require.NoError(t, rows.Err())
	require.NoError(t, rows.Close())
	assert.Equal(t, []string{chainTable, CheckpointTable, DefaultTable, DefaultTable + OutboxSuffix, logsTable, TreeEdgeTable, TreeHeadTable, TreeTileTable}, tables, "no unexpected tables")
	n, err := s.Count(ctx, Filter{})
	require.NoError(t, err)
	assert.Equal(t, int64(5), n)
	_, err = s.Verify(ctx)
	require.NoError(t, err)
}

// Identifiers that are SQL keywords, or look like SQL, are fine table
// names: the library quotes them everywhere.
func TestHostTableNamesThatLookLikeSQL(t *testing.T) {
	names := []string{"select", "DROP", "table", "Order", "where_", "_", "__", "user", "union_all", "information_schema", "x" + strings.Repeat("_", 62)}
	forEachBackend(t, func(t *testing.T, st *backend) {
		ctx := context.Background()
		for _, name := range names {
			t.Run(name, func(t *testing.T) {
				other := *st
				other.table = name
				if st.kind == "postgres" {
					// Keep the shared database clean; names from this list are ours.
					dropTableAtEnd(t, st.raw, name)
					st.exec(t, "DROP TABLE IF EXISTS "+quote(name))
					_, err := st.raw.Exec("DELETE FROM "+chainTable+" WHERE table_name = $1", name)
					require.NoError(t, err)
				}
				s := other.service(t)
				recordN(t, s, 0, 3)
				list, err := s.List(ctx, Filter{})
				require.NoError(t, err)
				require.Len(t, list, 3)
				for i, e := range list {
					assert.Equal(t, sampleEntry(i).RequestID, e.RequestID)
				}
				rep, err := s.Verify(ctx)
				require.NoError(t, err)
				assert.Equal(t, int64(3), rep.Entries)
				var n int
				require.NoError(t, st.raw.QueryRow(`SELECT COUNT(*) FROM `+quote(name)).Scan(&n))
				assert.Equal(t, 3, n, "the table is literally named %q", name)
			})
		}
	})
}

// Names that match the identifier pattern but that the database reserves
// can never hold a log: SQLite refuses to create "sqlite_*" tables (in any
// case), and PostgreSQL resolves an unqualified "pg_class" to its system
// catalog, which comes first in every search path. A service that took one
// would accept entries it can never commit (Close would wait for them for
// ever), so New must refuse the name. New opens nothing, so the PostgreSQL
// dialector here needs no server.
func TestHostTableNamesReservedByTheDatabase(t *testing.T) {
	tests := []struct {
		name string
		db   func(t *testing.T) Option
	}{
		{"sqlite_master", hostSQLiteOption},
		{"sqlite_sequence", hostSQLiteOption},
		{"SQLITE_STAT1", hostSQLiteOption},
		{"sqlite_audit", hostSQLiteOption},
		{"pg_class", hostPostgresOption},
		{"pg_tables", hostPostgresOption},
		{"pg_settings", hostPostgresOption},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s, err := New(tt.db(t), WithTable(tt.name), WithLogger(testutil.Discard()))
			if err == nil {
				sctx, cancel := context.WithTimeout(context.Background(), time.Second)
				defer cancel()
				_ = s.Shutdown(sctx)
			}
			require.Error(t, err, "library gap: New accepts a table name that the database reserves, and every open then fails")
			assert.Contains(t, err.Error(), "WithTable")
		})
	}
}

func hostSQLiteOption(t *testing.T) Option { return WithSQLite(testutil.TempDB(t)) }

func hostPostgresOption(*testing.T) Option {
	return WithDialector(postgres.Open("postgres://nobody@127.0.0.1:1/none?sslmode=disable&connect_timeout=1"))
}

// SQLite compares identifiers case-insensitively, quoted or not: "Logs"
// and "logs" are one table there (two on PostgreSQL). Services that spell
// one table two ways must still keep one chain and commit everything.
func TestHostTableNameCaseAliases(t *testing.T) {
	forEachBackend(t, func(t *testing.T, st *backend) {
		ctx := context.Background()
		upper := *st
		upper.table = strings.ToUpper(st.table[:1]) + st.table[1:]
		require.NotEqual(t, st.table, upper.table)
		if st.kind == "postgres" {
			dropTableAtEnd(t, st.raw, upper.table)
		}
		open := func(st *backend) *AuditService {
			s, err := New(append(st.opts(), WithLogger(testutil.Discard()))...)
			require.NoError(t, err)
			t.Cleanup(func() {
				// Bounded: a writer that cannot commit must not hang the test.
				sctx, cancel := context.WithTimeout(context.Background(), time.Second)
				defer cancel()
				_ = s.Shutdown(sctx)
			})
			return s
		}
		a, b := open(st), open(&upper)
		flush := func(s *AuditService, what string) {
			t.Helper()
			fctx, cancel := context.WithTimeout(ctx, 5*time.Second)
			defer cancel()
			require.NoError(t, s.Flush(fctx), "%s: entries not committed; %q and %q must share one chain head where they name one table", what, st.table, upper.table)
		}
		for round := 0; round < 3; round++ {
			queueN(t, a, round*10, 3)
			flush(a, fmt.Sprintf("round %d, %q", round, st.table))
			queueN(t, b, round*10+5, 3)
			flush(b, fmt.Sprintf("round %d, %q", round, upper.table))
		}
		for _, s := range []*AuditService{a, b} {
			_, err := s.Verify(ctx)
			require.NoError(t, err)
		}
		na, err := a.Count(ctx, Filter{})
		require.NoError(t, err)
		nb, err := b.Count(ctx, Filter{})
		require.NoError(t, err)
		if st.kind == "sqlite" {
			assert.Equal(t, int64(18), na, "one table")
			assert.Equal(t, na, nb)
		} else {
			assert.Equal(t, int64(9), na, "two tables")
			assert.Equal(t, int64(9), nb)
		}
	})
}
