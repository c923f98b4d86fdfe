package main

import (
	"context"
	"database/sql"
	"encoding/csv"
	"fmt"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/cleveragents/audit"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"gorm.io/driver/postgres"
)

// postgresDSNEnv names the PostgreSQL server of the tests, as in the root
// package's tests; .ci/run starts one and sets it.
const postgresDSNEnv = "AUDIT_TEST_POSTGRES_DSN"

func TestPostgres(t *testing.T) {
	dsn := os.Getenv(postgresDSNEnv)
	if dsn == "" {
		msg := "the PostgreSQL test needs a server: set " + postgresDSNEnv + ", or run bash .ci/run, which starts one"
		if os.Getenv("CI") == "true" {
			t.Fatal(msg)
		}
		t.Skip(msg)
	}
	raw, err := sql.Open("pgx", dsn)
	require.NoError(t, err)
	defer raw.Close()
	table := fmt.Sprintf("auditctl_%d", time.Now().UnixNano())
	t.Cleanup(func() {
		_, _ = raw.Exec(`DROP TABLE IF EXISTS "` + table + `"`)
		_, _ = raw.Exec(`DELETE FROM audit_chain_heads WHERE table_name = $1`, table)
	})

	svc, err := audit.New(audit.WithDialector(postgres.Open(dsn)), audit.WithTable(table))
	require.NoError(t, err)
	ctx := context.Background()
	for i := 1; i <= 5; i++ {
		require.NoError(t, svc.Record(ctx, entryFor(i)))
	}
	require.NoError(t, svc.Flush(ctx))
	stored, err := svc.List(ctx, audit.Filter{})
	require.NoError(t, err)
	require.NoError(t, svc.Close())
	require.Len(t, stored, 5)

	pg := []string{"--driver", "postgres", "--dsn", dsn, "--table", table}
	cli := func(args ...string) result {
		t.Helper()
		return runCLI(t, "", append(append([]string{}, pg...), args...)...)
	}

	r := cli("count", "--outcome", "failure")
	require.Equal(t, 0, r.code, r)
	assert.Equal(t, "3\n", r.stdout)

	r = cli("list", "--json")
	require.Equal(t, 0, r.code, r)
	objs := jsonLines(t, r.stdout)
	require.Len(t, objs, 5)
	for i, obj := range objs {
		assertEntryJSON(t, i+1, obj)
		assert.Equal(t, stored[i].Hash, obj["hash"])
	}

	r = cli("export", "--format", "csv")
	require.Equal(t, 0, r.code, r)
	recs, err := csv.NewReader(strings.NewReader(r.stdout)).ReadAll()
	require.NoError(t, err)
	assert.Len(t, recs, 6)

	r = cli("stats")
	require.Equal(t, 0, r.code, r)
	assert.Contains(t, r.stdout, "entries: 5\n")
	assert.Contains(t, r.stdout, "size:    n/a (postgres)\n")
	assert.Contains(t, r.stdout, "head:    "+stored[4].Hash+"\n")

	r = cli("verify", "--head", stored[4].Hash)
	require.Equal(t, 0, r.code, r)

	_, err = raw.Exec(`UPDATE "`+table+`" SET resource = 'doc/x' WHERE id = $1`, stored[2].ID)
	require.NoError(t, err)
	r = cli("verify")
	require.Equal(t, 1, r.code, r)
	assert.Contains(t, r.stderr, fmt.Sprintf("ID %d", stored[2].ID))

	r = cli("prune", "--before", "2020-01-01T00:02:30Z", "--yes")
	require.Equal(t, 0, r.code, r)
	assert.Contains(t, r.stdout, "pruned 2 entries")

	t.Run("a missing table exits 2", func(t *testing.T) {
		r := runCLI(t, "", "--driver", "postgres", "--dsn", dsn, "--table", table+"_nope", "verify")
		require.Equal(t, 2, r.code, r)
		assert.Contains(t, r.stderr, "no table")
	})
	t.Run("an unreachable server exits 2", func(t *testing.T) {
		r := runCLI(t, "", "--driver", "postgres", "--dsn", "postgres://postgres@127.0.0.1:1/postgres?sslmode=disable&connect_timeout=5", "count")
		require.Equal(t, 2, r.code, r)
		assert.Contains(t, r.stderr, "open postgres")
	})
	t.Run("--db with postgres exits 2", func(t *testing.T) {
		r := runCLI(t, "", "--driver", "postgres", "--dsn", dsn, "--db", "x.db", "count")
		require.Equal(t, 2, r.code, r)
	})
}
