package audit

import (
	"context"
	"math"
	"os"
	"path/filepath"
	"strconv"
	"testing"
	"time"

	"github.com/cleveragents/audit/internal/testutil"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// The causes that retrying cannot fix, on real files and tables: Ping
// names the database and the cause at once, Flush and sync Record return
// the cause instead of waiting for their ctx, Stats counts it, and the log
// says what to do.

// hardService starts a service whose entries may never commit: it is shut
// down with a short deadline when the test ends, not waited on.
func hardService(t *testing.T, logs *testutil.LogBuffer, opts ...Option) *AuditService {
	t.Helper()
	s, err := New(append(opts, WithLogger(logs.JSONLogger()))...)
	require.NoError(t, err)
	t.Cleanup(func() {
		sctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
		defer cancel()
		_ = s.Shutdown(sctx)
	})
	return s
}

// requirePermanent checks that err is a permanent error whose text holds
// every one of wants.
func requirePermanent(t *testing.T, err error, wants ...string) {
	t.Helper()
	require.Error(t, err)
	t.Log(err)
	assert.True(t, isPermanent(err), "a permanent error: %v", err)
	assert.NotErrorIs(t, err, context.DeadlineExceeded, "returned for its cause, not at its ctx's end")
	for _, w := range wants {
		assert.Contains(t, err.Error(), w)
	}
}

// requireFlushFails records an entry and checks that Flush, and a sync
// Record, return the permanent error long before their ctx's end (the
// deadline is a hang detector), and that the log says what to do.
func requireFlushFails(t *testing.T, opts []Option, wants ...string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), hangLimit)
	defer cancel()
	logs := &testutil.LogBuffer{}
	s := hardService(t, logs, opts...)
	require.NoError(t, s.Record(ctx, sampleEntry(0)))
	err := s.Flush(ctx)
	requirePermanent(t, err, wants...)
	assert.Contains(t, err.Error(), "audit: flush: not committed")
	assert.GreaterOrEqual(t, s.Stats().Failures, uint64(1))
	assert.Equal(t, 1, s.Stats().Queued, "the entry stays queued")
	assert.Contains(t, logs.String(), "retrying cannot help until the cause is fixed")

	sync := hardService(t, &testutil.LogBuffer{}, append(opts, WithAsync(false))...)
	requirePermanent(t, sync.Record(ctx, sampleEntry(1)), wants...)
}

func TestPingNamesTheFileAndCause(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	text := filepath.Join(dir, "notes.txt")
	require.NoError(t, os.WriteFile(text, []byte("these are notes, not an audit log: nothing here is SQLite\n"), 0o644))
	existing := filepath.Join(dir, "existing.db")
	seed := newServiceAt(t, WithSQLite(existing))
	queueN(t, seed, 0, 3)
	require.NoError(t, seed.Close())

	cases := []struct {
		name, path string
		wants      []string
	}{
		{"missing directory", filepath.Join(dir, "missing", "audit.db"),
			[]string{strconv.Quote(filepath.Join(dir, "missing")), "directory does not exist", "create it"}},
		{"a directory", dir, []string{strconv.Quote(dir), "is a directory"}},
		{"a text file", text, []string{strconv.Quote(text), "file is not a database"}},
		// Root writes through file modes, so the read-only open is made
		// with SQLite's own mode=ro (TestPingReadOnlyFile drops root).
		{"read-only", "file:" + existing + "?mode=ro", []string{strconv.Quote("file:" + existing + "?mode=ro"), "is read-only", "writable"}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			s := hardService(t, &testutil.LogBuffer{}, WithSQLite(c.path))
			requirePermanent(t, s.Ping(ctx), append([]string{"audit: ping: "}, c.wants...)...)
			assert.Equal(t, uint64(1), s.Stats().Failures, "a failed Ping counts")
			requireFlushFails(t, []Option{WithSQLite(c.path)}, c.wants...)
		})
	}
}

// TestPermanentErrorClearsWhenFixed: the writer keeps retrying a permanent
// error, so once the directory exists, Flush succeeds with nothing lost.
func TestPermanentErrorClearsWhenFixed(t *testing.T) {
	ctx := context.Background()
	dir := filepath.Join(t.TempDir(), "later")
	s := hardService(t, &testutil.LogBuffer{}, WithSQLite(filepath.Join(dir, "audit.db")))
	queueN(t, s, 0, 5)
	requirePermanent(t, s.Flush(ctx), "directory does not exist")
	require.NoError(t, os.Mkdir(dir, 0o755))
	fctx, cancel := context.WithTimeout(ctx, hangLimit)
	defer cancel()
	require.NoError(t, s.Flush(fctx))
	require.NoError(t, s.Ping(ctx))
	n, err := s.Count(ctx, Filter{})
	require.NoError(t, err)
	assert.Equal(t, int64(5), n)
}

func TestPingPermanentSchemaFaults(t *testing.T) {
	ctx := context.Background()
	t.Run("table exists with other columns", func(t *testing.T) {
		forEachBackend(t, func(t *testing.T, st *backend) {
			st.exec(t, `CREATE TABLE $TABLE (id BIGINT PRIMARY KEY, payload TEXT)`)
			s := hardService(t, &testutil.LogBuffer{}, st.opts()...)
			requirePermanent(t, s.Ping(ctx), "table exists with other columns", quote(st.table), "WithTable")
			requireFlushFails(t, st.opts(), "table exists with other columns")
		})
	})
	t.Run("index name taken by another table", func(t *testing.T) {
		forEachBackend(t, func(t *testing.T, st *backend) {
			other := st.sibling(t)
			st.exec(t, `CREATE TABLE `+quote(other.table)+` (actor TEXT)`)
			index := ident(st.table, "_actor_idx")
			st.exec(t, `CREATE INDEX `+quote(index)+` ON `+quote(other.table)+` (actor)`)
			s := hardService(t, &testutil.LogBuffer{}, st.opts()...)
			requirePermanent(t, s.Ping(ctx), "index name taken by another table", strconv.Quote(index))
			requireFlushFails(t, st.opts(), "index name taken by another table")
		})
	})
	t.Run("chain head row below MAX(id)", func(t *testing.T) {
		forEachBackend(t, func(t *testing.T, st *backend) {
			s := st.service(t)
			queueN(t, s, 0, 5)
			require.NoError(t, s.Flush(ctx))
			require.NoError(t, s.Close())
			st.exec(t, `UPDATE `+chainTable+` SET last_id = 2 WHERE $HEAD`)
			p := hardService(t, &testutil.LogBuffer{}, st.opts()...)
			requirePermanent(t, p.Ping(ctx), "chain head row below MAX(id)", "up to 5", "says 2", "Verify")
			requireFlushFails(t, st.opts(), "chain head row below MAX(id)")
		})
	})
	t.Run("head at MaxInt64", func(t *testing.T) {
		forEachBackend(t, func(t *testing.T, st *backend) {
			s := st.service(t)
			queueN(t, s, 0, 1)
			require.NoError(t, s.Flush(ctx))
			require.NoError(t, s.Close())
			st.exec(t, `UPDATE `+chainTable+` SET last_id = `+strconv.FormatInt(math.MaxInt64, 10)+` WHERE $HEAD`)
			st.exec(t, `UPDATE $TABLE SET id = `+strconv.FormatInt(math.MaxInt64, 10))
			p := hardService(t, &testutil.LogBuffer{}, st.opts()...)
			requirePermanent(t, p.Ping(ctx), "no ID left", strconv.FormatInt(math.MaxInt64, 10))
			requireFlushFails(t, st.opts(), "no ID left")
			var negative int
			require.NoError(t, st.raw.QueryRow(st.sql(`SELECT COUNT(*) FROM $TABLE WHERE id < 1`)).Scan(&negative))
			assert.Zero(t, negative, "no ID wrapped")
		})
	})
	t.Run("the last IDs are used, then refused", func(t *testing.T) {
		forEachBackend(t, func(t *testing.T, st *backend) {
			s := st.service(t)
			queueN(t, s, 0, 1)
			require.NoError(t, s.Flush(ctx))
			require.NoError(t, s.Close())
			below := strconv.FormatInt(math.MaxInt64-2, 10)
			st.exec(t, `UPDATE `+chainTable+` SET last_id = `+below+` WHERE $HEAD`)
			st.exec(t, `UPDATE $TABLE SET id = `+below)
			p := hardService(t, &testutil.LogBuffer{}, st.opts()...)
			require.NoError(t, p.Ping(ctx), "two IDs are left")
			queueN(t, p, 1, 2)
			require.NoError(t, p.Flush(ctx), "they are used")
			last, err := p.List(ctx, Filter{Desc: true, Limit: 1})
			require.NoError(t, err)
			require.Len(t, last, 1)
			assert.Equal(t, int64(math.MaxInt64), last[0].ID)
			requirePermanent(t, p.Ping(ctx), "no ID left")
			queueN(t, p, 3, 1)
			fctx, cancel := context.WithTimeout(ctx, hangLimit)
			defer cancel()
			requirePermanent(t, p.Flush(fctx), "no ID left")
			var negative int
			require.NoError(t, st.raw.QueryRow(st.sql(`SELECT COUNT(*) FROM $TABLE WHERE id < 1`)).Scan(&negative))
			assert.Zero(t, negative, "no ID wrapped")
		})
	})
}
