package audit

import (
	"context"
	"crypto/rand"
	"database/sql"
	"encoding/hex"
	"errors"
	"fmt"
	"net/url"
	"strconv"
	"sync"
	"testing"

	"github.com/cleveragents/audit/internal/testutil"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// serializableDB is the database of the test server whose transactions
// default to SERIALIZABLE, as some DBAs configure it.
const serializableDB = "audit_test_serializable"

// TestPostgresSerializable runs the multi-writer cases of the backend suite
// on a database with default_transaction_isolation = serializable. There a
// writer that waited for the chain head's lock would fail with a
// serialization failure (SQLSTATE 40001) when it got it: the writer's
// transactions are READ COMMITTED (beginPostgres), and no failure may be
// counted, one chain kept, nothing lost. A 40001 that happens anyway runs
// the transaction again at once (retryNow).
func TestPostgresSerializable(t *testing.T) {
	dsn := serializableDSN(t)
	saved := backends
	backends = []backendKind{{name: "postgres-serializable", fresh: func(tb testing.TB) *backend { return freshPostgresAt(tb, dsn) }}}
	t.Cleanup(func() { backends = saved })

	t.Run("EightServicesOneChain", testEightServicesOneChain)
	t.Run("ConcurrentSchemaCreation", TestConcurrentSchemaCreation)
	t.Run("ConcurrentPrunesKeepTheChain", TestConcurrentPrunesKeepTheChain)
	t.Run("SeveralProcessesOneChain", TestSeveralProcessesOneChain)
}

// testEightServicesOneChain starts 8 services on one table together, each
// recording from several goroutines: one chain, every entry there in its
// writer's order, and not one failure counted.
func testEightServicesOneChain(t *testing.T) {
	modes := []struct {
		async         bool
		workers, each int
	}{{true, 1, 150}, {false, 3, 15}}
	const services = 8
	for _, mode := range modes {
		t.Run(fmt.Sprintf("async=%v", mode.async), func(t *testing.T) {
			forEachBackend(t, func(t *testing.T, st *backend) {
				ctx := context.Background()
				_, err := st.service(t).Count(ctx, Filter{}) // the schema first, as a deployment's first replica
				require.NoError(t, err)
				svcs := make([]*AuditService, services)
				for i := range svcs {
					svcs[i] = st.service(t, WithAsync(mode.async), WithBatchSize(8), WithLogger(testutil.Discard()))
				}
				start := make(chan struct{})
				var wg sync.WaitGroup
				for i, s := range svcs {
					for w := 0; w < mode.workers; w++ {
						wg.Add(1)
						go func() {
							defer wg.Done()
							<-start
							name := "svc" + strconv.Itoa(i) + "-w" + strconv.Itoa(w)
							for k := 0; k < mode.each; k++ {
								if !assert.NoError(t, s.Record(ctx, Entry{EventType: "e", Actor: name, RequestID: fmt.Sprintf("%s-%04d", name, k)})) {
									return
								}
							}
						}()
					}
				}
				close(start)
				wg.Wait()
				var failures, written uint64
				for _, s := range svcs {
					require.NoError(t, s.Flush(ctx))
					failures += s.Stats().Failures
					written += s.Stats().Written
				}
				total := services * mode.workers * mode.each
				assert.Zero(t, failures, "serialization failures are retried at once, not counted as outages")
				assert.Equal(t, uint64(total), written)
				rep, err := svcs[0].Verify(ctx)
				require.NoError(t, err, "one chain")
				assert.Equal(t, VerifyReport{Entries: int64(total), FirstID: 1, LastID: int64(total), Head: rep.Head}, rep)
				for i := range svcs {
					for w := 0; w < mode.workers; w++ {
						name := "svc" + strconv.Itoa(i) + "-w" + strconv.Itoa(w)
						list, err := svcs[0].List(ctx, Filter{Actor: name, Limit: MaxListLimit})
						require.NoError(t, err)
						require.Len(t, list, mode.each, name)
						for k, e := range list {
							require.Equal(t, fmt.Sprintf("%s-%04d", name, k), e.RequestID, "%s in its own order", name)
						}
					}
				}
			})
		})
	}
}

// serializableDSN returns the DSN of serializableDB on the test server,
// creating and configuring it if needed, or skips (fails under CI) without
// a server.
func serializableDSN(tb testing.TB) string {
	tb.Helper()
	base := postgresDSN(tb)
	u, err := url.Parse(base)
	require.NoError(tb, err, "%s must be a postgres:// URL for this test", postgresDSNEnv)
	require.NotEmpty(tb, u.Scheme, "%s must be a postgres:// URL for this test", postgresDSNEnv)
	admin, err := sql.Open("pgx", base)
	require.NoError(tb, err)
	defer admin.Close()
	var exists bool
	require.NoError(tb, admin.QueryRow(`SELECT EXISTS (SELECT 1 FROM pg_database WHERE datname = $1)`, serializableDB).Scan(&exists))
	if !exists {
		if _, err := admin.Exec(`CREATE DATABASE ` + serializableDB); err != nil && sqlState(err) != "42P04" { // duplicate_database: another run made it
			require.NoError(tb, err)
		}
	}
	_, err = admin.Exec(`ALTER DATABASE ` + serializableDB + ` SET default_transaction_isolation = serializable`)
	require.NoError(tb, err)
	u.Path = "/" + serializableDB
	dsn := u.String()

	db, err := sql.Open("pgx", dsn)
	require.NoError(tb, err)
	defer db.Close()
	var level string
	require.NoError(tb, db.QueryRow(`SHOW default_transaction_isolation`).Scan(&level))
	require.Equal(tb, "serializable", level)
	return dsn
}

// freshPostgresAt is freshPostgres on the database of dsn.
func freshPostgresAt(tb testing.TB, dsn string) *backend {
	tb.Helper()
	raw, err := sql.Open("pgx", dsn)
	require.NoError(tb, err)
	tb.Cleanup(func() { _ = raw.Close() })
	require.NoError(tb, raw.Ping())
	var b [4]byte
	_, _ = rand.Read(b[:])
	table := "s" + strconv.FormatInt(tableSeq.Add(1), 10) + "_" + hex.EncodeToString(b[:])
	dropTableAtEnd(tb, raw, table)
	return &backend{kind: "postgres", dsn: dsn, table: table, raw: raw}
}

// TestPostgresRetryNowBySQLState checks the classification on its own:
// only serialization failures and deadlocks run again at once.
func TestPostgresRetryNowBySQLState(t *testing.T) {
	for state, want := range map[string]bool{"40001": true, "40P01": true, "23505": false, "55P03": false, "": false} {
		err := fmt.Errorf("insert: %w", sqlStateError(state))
		assert.Equal(t, want, postgresDialect.retryNow(err), state)
	}
	assert.False(t, postgresDialect.retryNow(errors.New("40001")), "the SQLSTATE, not the text")
}

type sqlStateError string

func (e sqlStateError) Error() string    { return "pg error " + string(e) }
func (e sqlStateError) SQLState() string { return string(e) }

// TestPostgresWritesAreReadCommitted: on a database whose transactions
// default to SERIALIZABLE, the writer's are READ COMMITTED, and their lock
// timeout is set.
func TestPostgresWritesAreReadCommitted(t *testing.T) {
	ctx := context.Background()
	db, err := sql.Open("pgx", serializableDSN(t))
	require.NoError(t, err)
	defer db.Close()
	tx, err := beginPostgres(ctx, db)
	require.NoError(t, err)
	defer tx.rollback()
	var level, timeout string
	require.NoError(t, tx.(pgTxn).QueryRowContext(ctx, `SHOW transaction_isolation`).Scan(&level))
	require.NoError(t, tx.(pgTxn).QueryRowContext(ctx, `SHOW lock_timeout`).Scan(&timeout))
	assert.Equal(t, "read committed", level)
	assert.Equal(t, postgresLockTimeout, timeout)
}
