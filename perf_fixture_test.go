package audit

import (
	"context"
	"crypto/sha256"
	"database/sql"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/cleveragents/audit/internal/testutil"
	"github.com/stretchr/testify/require"
)

// The logs that benchmarks share: the 1M-entry sample fixture of the
// perf suite (perfFixture) and the realistic ones (realFixture). Each is
// built once and kept in os.TempDir() under a name that holds a hash of
// its kind, size and version and of the schema's DDL, so that later runs
// reuse it and a change to any of them builds a new one. Remove them with
// rm "${TMPDIR:-/tmp}"/audit-perf-*.db. Callers only read them; those that
// write (Prune) work on a copy (perfCopy).

// perfFixtureSpec says how to build one shared log.
type perfFixtureSpec struct {
	name    string // the file's name in os.TempDir() starts with it
	entries int
	// version changes whenever what build writes does, so that a log kept
	// from an earlier run is not reused.
	version string
	// build writes the log of entries entries at path, a new file, and
	// closes it.
	build func(path string, entries int) error
}

// perfShared is one shared log, built at most once per run.
type perfShared struct {
	once sync.Once
	path string
	err  error
}

var (
	perfSharedMu sync.Mutex
	perfShares   = map[string]*perfShared{}
)

// perfSharedLog returns the path of spec's log, building it on the run's
// first call unless an earlier run left it in os.TempDir().
func perfSharedLog(tb testing.TB, spec perfFixtureSpec) string {
	tb.Helper()
	key := spec.name + "/" + strconv.Itoa(spec.entries)
	perfSharedMu.Lock()
	sh := perfShares[key]
	if sh == nil {
		sh = &perfShared{}
		perfShares[key] = sh
	}
	perfSharedMu.Unlock()
	sh.once.Do(func() {
		began := time.Now()
		var built bool
		sh.path, built, sh.err = perfLoadFixture(spec)
		if built {
			tb.Logf("built the %d-entry fixture %s in %v", spec.entries, sh.path, time.Since(began).Round(time.Millisecond))
		}
	})
	require.NoError(tb, sh.err)
	return sh.path
}

// perfFixture returns the path of the 1M-entry sample log (see
// perfFixtureEntry). Callers must not write to it: copy it first.
func perfFixture(tb testing.TB) string {
	return perfSharedLog(tb, perfFixtureSpec{name: "audit-perf", entries: perfFixtureEntries,
		version: perfFixtureVersion, build: perfBuildFixture})
}

// realFixture returns the path of a log of n realistic entries,
// realEntries(realFixtureSeed, n), written by Record as a service would
// write them (the first build of 1M takes a minute or so). Callers must
// not write to it: copy it first.
func realFixture(tb testing.TB, n int) string {
	return perfSharedLog(tb, perfFixtureSpec{name: "audit-perf-real", entries: n,
		version: "1/seed " + strconv.FormatUint(realFixtureSeed, 10), build: realBuildFixture})
}

// realFixtureSeed is the seed of the realistic fixtures' entries.
const realFixtureSeed = 2

// realBuildFixture records entries realistic entries at path through an
// async service, then flushes and closes it.
func realBuildFixture(path string, entries int) error {
	s, err := New(WithSQLite(path), WithLogger(testutil.Discard()), WithQueueSize(DefaultQueueSize*4))
	if err != nil {
		return err
	}
	ctx := context.Background()
	next := realEntrySource(realFixtureSeed)
	for range entries {
		if err := s.Record(ctx, next()); err != nil {
			return errors.Join(err, s.Close())
		}
	}
	return errors.Join(s.Flush(ctx), s.Close())
}

// perfLoadFixture returns the path of spec's log, and whether it had to
// build it. It builds into a temporary name and renames, so that a run
// that stops half-way, or two runs building together, never leave a
// partial log under the final name.
func perfLoadFixture(spec perfFixtureSpec) (path string, built bool, err error) {
	q := newQueries(&sqliteDialect, DefaultTable)
	key := sha256.Sum256([]byte(strings.Join(append(q.schema, q.initHead, spec.version, strconv.Itoa(spec.entries)), "\x00")))
	path = filepath.Join(os.TempDir(), spec.name+"-"+hex.EncodeToString(key[:6])+".db")
	if perfFixtureReady(path, spec.entries) {
		return path, false, nil
	}
	f, err := os.CreateTemp(os.TempDir(), spec.name+"-build-*.db")
	if err != nil {
		return "", false, err
	}
	tmp := f.Name()
	_ = f.Close()
	defer func() {
		for _, p := range []string{tmp, tmp + "-wal", tmp + "-shm", tmp + "-journal"} {
			_ = os.Remove(p)
		}
	}()
	if err := spec.build(tmp, spec.entries); err != nil {
		return "", false, fmt.Errorf("build fixture: %w", err)
	}
	if err := perfCheckFixture(tmp, spec.entries); err != nil {
		return "", false, fmt.Errorf("check fixture: %w", err)
	}
	if err := os.Rename(tmp, path); err != nil {
		return "", false, err
	}
	return path, true, nil
}

// perfFixtureReady reports whether path holds a complete log of entries
// entries: it exists and its chain head is the last of them.
func perfFixtureReady(path string, entries int) bool {
	if _, err := os.Stat(path); err != nil {
		return false
	}
	db, err := sql.Open("sqlite3", "file:"+path+"?mode=ro&_busy_timeout=5000")
	if err != nil {
		return false
	}
	defer db.Close()
	var lastID, prunedID int64
	err = db.QueryRow("SELECT last_id, pruned_id FROM "+chainTable+" WHERE table_name = ?", DefaultTable).Scan(&lastID, &prunedID)
	return err == nil && lastID == int64(entries) && prunedID == 0
}

// perfBuildFixture is the fast loader of the sample log: the table of the
// library's own DDL (q.schema), filled by prepared multi-row INSERTs in
// big transactions without journal or fsync, records made by the
// service's newRecord and chained by its hasher, exactly as the writer
// would store them; then the indexes, the chain head row (q.initHead) and
// WAL.
func perfBuildFixture(path string, entries int) error {
	q := newQueries(&sqliteDialect, DefaultTable)
	// An unopened service: its newRecord and chain, and nothing else.
	s, err := New(WithSQLite(path), WithLogger(testutil.Discard()))
	if err != nil {
		return err
	}
	defer s.Close()
	db, err := sql.Open("sqlite3", path+"?_journal_mode=OFF&_synchronous=OFF&_cache_size=-262144")
	if err != nil {
		return err
	}
	defer db.Close()
	db.SetMaxOpenConns(1)
	ctx := context.Background()
	tables, indexes := q.schema[:2], q.schema[2:]
	for _, stmt := range tables {
		if _, err := db.ExecContext(ctx, stmt); err != nil {
			return err
		}
	}
	const rowsPerInsert, rowsPerTx = 256, 256 * 400
	insert, err := db.PrepareContext(ctx, perfInsertSQL(q.insertHead, rowsPerInsert))
	if err != nil {
		return err
	}
	defer insert.Close()
	prev := ""
	args := make([]any, 0, rowsPerInsert*10)
	var tx *sql.Tx
	for first := 0; first < entries; first += rowsPerInsert {
		n := min(rowsPerInsert, entries-first)
		if first%rowsPerTx == 0 {
			if tx, err = db.BeginTx(ctx, nil); err != nil {
				return err
			}
		}
		args = args[:0]
		for i := first; i < first+n; i++ {
			e := perfFixtureEntry(i)
			r, err := s.newRecord(&e)
			if err != nil {
				return err
			}
			hash := s.chain.hash(prev, r)
			args = append(args, int64(i+1), r.time, r.eventType, r.actor, r.resource, r.outcome, r.requestID, string(r.details), prev, hash)
			prev = hash
		}
		if n == rowsPerInsert {
			_, err = tx.StmtContext(ctx, insert).ExecContext(ctx, args...)
		} else {
			_, err = tx.ExecContext(ctx, perfInsertSQL(q.insertHead, n), args...)
		}
		if err != nil {
			_ = tx.Rollback()
			return err
		}
		if end := first + n; end%rowsPerTx == 0 || end == entries {
			if err := tx.Commit(); err != nil {
				return err
			}
		}
	}
	for _, stmt := range indexes {
		if _, err := db.ExecContext(ctx, stmt); err != nil {
			return err
		}
	}
	if _, err := db.ExecContext(ctx, q.initHead, DefaultTable); err != nil {
		return err
	}
	var mode string
	if err := db.QueryRowContext(ctx, "PRAGMA journal_mode = WAL").Scan(&mode); err != nil || mode != "wal" {
		return fmt.Errorf("journal_mode WAL: %q, %w", mode, err)
	}
	return nil
}

// perfCheckFixture opens a service on a new log and verifies its chain
// from end to end.
func perfCheckFixture(path string, entries int) error {
	s, err := New(WithSQLite(path), WithLogger(testutil.Discard()))
	if err != nil {
		return err
	}
	rep, err := s.Verify(context.Background())
	if cerr := s.Close(); err == nil {
		err = cerr
	}
	if err == nil && (rep.Entries != int64(entries) || rep.FirstID != 1) {
		err = fmt.Errorf("verify: %+v, want %d entries from ID 1", rep, entries)
	}
	return err
}

// perfCopy copies the log at src to a new file of the test's and returns
// its path.
func perfCopy(tb testing.TB, src string) string {
	tb.Helper()
	in, err := os.Open(src)
	require.NoError(tb, err)
	defer in.Close()
	path := filepath.Join(tb.TempDir(), "audit.db")
	dst, err := os.Create(path)
	require.NoError(tb, err)
	_, err = io.Copy(dst, in)
	if err == nil {
		// Written back now, not by the kernel in the middle of the
		// measurement: a commit's fsync would wait for it.
		err = dst.Sync()
	}
	require.NoError(tb, errors.Join(err, dst.Close()))
	return path
}
