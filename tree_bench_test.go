package audit

import (
	"context"
	"database/sql"
	"fmt"
	"path/filepath"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// The tree's benchmarks, each beside its baseline in the same run:
//
//	go test -run '^$' -bench 'TreeIngest|VerifySince' -benchtime 20000x .
//
// BenchmarkTreeIngest: the writer alone (a queue filled while the write
// lock was held, drained to Flush) and 16 async callers, with and without
// the tree; "x-notree" is the cost with the tree over the cost without.
func BenchmarkTreeIngest(b *testing.B) {
	for _, be := range backends {
		for _, mode := range []string{"writer_only", "async16", "sync64"} {
			var base float64
			for _, tree := range []bool{false, true} {
				name := fmt.Sprintf("%s/%s/tree=%v", be.name, mode, tree)
				b.Run(name, func(b *testing.B) {
					opts := []Option{}
					if !tree {
						opts = append(opts, withoutTree())
					}
					st := be.fresh(b)
					var ns float64
					switch mode {
					case "writer_only":
						ns = benchWriterOnly(b, st, opts...)
					case "async16":
						ns = benchCallers(b, st, 16, opts...)
					case "sync64":
						ns = benchCallers(b, st, 64, append(opts, WithAsync(false))...)
					}
					if !tree {
						base = ns
					} else {
						perfReportCost(b, ns, base, "x-notree")
					}
				})
			}
		}
	}
}

// BenchmarkTreeIngestPaired is the writer alone with and without the tree,
// alternating (without, with, without, ...) on fresh logs so that a busy
// machine's drift falls on both alike; "x-notree" is the total time with
// the tree over the total without. b.N entries per run, 6 runs of each.
func BenchmarkTreeIngestPaired(b *testing.B) {
	for _, be := range backends {
		b.Run(be.name, func(b *testing.B) {
			var with, without float64
			for round := range 12 {
				tree := round%2 == 1
				var opts []Option
				if !tree {
					opts = append(opts, withoutTree())
				}
				ns := benchWriterOnly(b, be.fresh(b), opts...)
				if tree {
					with += ns
				} else {
					without += ns
				}
			}
			perfReportCost(b, with, without, "x-notree")
		})
	}
}

func benchCallers(b *testing.B, st *backend, callers int, opts ...Option) float64 {
	s := st.service(b, opts...)
	ctx := context.Background()
	_, err := s.Count(ctx, Filter{})
	require.NoError(b, err)
	return runCallers(b, callers, func(i int) error {
		return s.Record(ctx, sampleEntry(i))
	}, func() error { return s.Flush(ctx) })
}

func benchWriterOnly(b *testing.B, st *backend, opts ...Option) float64 {
	s := st.service(b, append(opts, WithQueueSize(b.N+1))...)
	ctx := context.Background()
	_, err := s.Count(ctx, Filter{})
	require.NoError(b, err)
	release := st.holdWriteLock(b)
	for i := range b.N {
		require.NoError(b, s.Record(ctx, sampleEntry(i)))
	}
	b.ResetTimer()
	began := time.Now()
	release()
	require.NoError(b, s.Flush(ctx))
	elapsed := time.Since(began)
	b.StopTimer()
	ns := float64(elapsed.Nanoseconds()) / float64(b.N)
	b.ReportMetric(1e9/ns, "entries/s")
	return ns
}

// benchLogEntries is the size of the log of BenchmarkVerifySince.
const benchLogEntries = 1_000_000

// BenchmarkVerifySince: a log of a million entries with a checkpoint, then
// 1,000 more; VerifySince against the checkpoint beside a full Verify.
// The log is written with plain SQL in large transactions (a fast path)
// and its tree built by the first open, as for a log that predates the
// tree. Also reports the bytes per entry that the tree's tables add, and
// the size of an inclusion proof at a million leaves.
func BenchmarkVerifySince(b *testing.B) {
	ctx := context.Background()
	signer, verifier := testKeys(b, "audit.bench")
	path := filepath.Join(b.TempDir(), "big.db")
	s0 := newServiceAt(b, WithSQLite(path), withoutTree())
	_, err := s0.Count(ctx, Filter{})
	require.NoError(b, err)
	require.NoError(b, s0.Close())
	writeRawLog(b, path, benchLogEntries)

	s := newServiceAt(b, WithSQLite(path), WithSigner(signer))
	began := time.Now()
	cp, err := s.Checkpoint(ctx) // opens: builds the tree of the million
	require.NoError(b, err)
	b.Logf("tree of %d entries built on first open in %v", cp.Size, time.Since(began))
	require.Equal(b, int64(benchLogEntries), cp.Size)
	recordN(b, s, benchLogEntries, 1000)

	p, err := s.InclusionProof(ctx, 123456, cp.Size)
	require.NoError(b, err)
	require.NoError(b, VerifyInclusion(p, cp))
	b.Logf("inclusion proof at %d leaves: %d hashes, %d bytes", cp.Size, len(p.Proof), 32*len(p.Proof))
	treeBytes := tableBytes(b, path)
	b.Logf("tree tiles: %.1f bytes per entry (tile data + 24 bytes a row)", treeBytes/float64(benchLogEntries+1000))

	var full float64
	b.Run("full_verify", func(b *testing.B) {
		began := time.Now()
		for range b.N {
			rep, err := s.Verify(ctx)
			require.NoError(b, err)
			require.Equal(b, int64(benchLogEntries+1000), rep.Entries)
		}
		full = float64(time.Since(began).Nanoseconds()) / float64(b.N)
	})
	b.Run("since_checkpoint", func(b *testing.B) {
		began := time.Now()
		for range b.N {
			rep, err := s.VerifySince(ctx, cp.Note, verifier)
			require.NoError(b, err)
			require.Equal(b, int64(1000), rep.Entries)
		}
		ns := float64(time.Since(began).Nanoseconds()) / float64(b.N)
		perfReportRatio(b, full, ns, "x-faster")
	})
}

// writeRawLog appends n entries to the log at path with plain SQL, chained
// and hashed as the writer does, in transactions of 50,000.
func writeRawLog(tb testing.TB, path string, n int) {
	db, err := sql.Open("sqlite3", path+"?_busy_timeout=5000&_synchronous=OFF")
	require.NoError(tb, err)
	defer db.Close()
	q := newQueries(&sqliteDialect, DefaultTable)
	h := hasher{}
	prev := ""
	const rowsPer = 50
	text := insertTextOf(&q, false).rows(rowsPer)
	for start := 0; start < n; start += 50000 {
		tx, err := db.Begin()
		require.NoError(tb, err)
		stmt, err := tx.Prepare(text)
		require.NoError(tb, err)
		args := make([]any, 0, rowsPer*10)
		for i := start; i < min(start+50000, n); i++ {
			e := sampleEntry(i)
			r := &record{time: timeText(e.Time), eventType: e.EventType, actor: e.Actor, resource: e.Resource, outcome: e.Outcome, requestID: e.RequestID}
			hash := h.hash(prev, r)
			args = append(args, int64(i+1), r.time, r.eventType, r.actor, r.resource, r.outcome, r.requestID, nil, prev, hash)
			prev = hash
			if len(args) == rowsPer*10 {
				_, err := stmt.Exec(args...)
				require.NoError(tb, err)
				args = args[:0]
			}
		}
		require.Empty(tb, args, "n is a multiple of rowsPer")
		require.NoError(tb, stmt.Close())
		require.NoError(tb, tx.Commit())
	}
	_, err = db.Exec(`UPDATE `+chainTable+` SET last_id = ?, last_hash = ? WHERE table_name = ?`, n, prev, DefaultTable)
	require.NoError(tb, err)
}

// tableBytes returns the bytes that the tree's tables take in the SQLite
// file at path, from the dbstat virtual table when the driver has it, else
// from the tile data.
func tableBytes(tb testing.TB, path string) float64 {
	db, err := sql.Open("sqlite3", path)
	require.NoError(tb, err)
	defer db.Close()
	var n float64
	err = db.QueryRow(`SELECT SUM(pgsize) FROM dbstat WHERE name IN ('audit_tree_tiles', 'sqlite_autoindex_audit_tree_tiles_1')`).Scan(&n)
	if err == nil {
		return n
	}
	tb.Logf("no dbstat (%v): counting tile bytes instead", err)
	require.NoError(tb, db.QueryRow(`SELECT SUM(LENGTH(data)) + 24 * COUNT(*) FROM audit_tree_tiles`).Scan(&n))
	return n
}

// BenchmarkTreeStorage measures what the tree adds to a SQLite file: the
// same 100,000 entries in two files, one with its tree built, one without;
// it reports the difference in file size per entry ("B/entry").
func BenchmarkTreeStorage(b *testing.B) {
	const n = 100_000
	ctx := context.Background()
	size := func(tree bool) int64 {
		path := filepath.Join(b.TempDir(), "audit.db")
		opts := []Option{WithSQLite(path)}
		s0 := newServiceAt(b, append(opts, withoutTree())...)
		_, err := s0.Count(ctx, Filter{})
		require.NoError(b, err)
		require.NoError(b, s0.Close())
		writeRawLog(b, path, n)
		if !tree {
			opts = append(opts, withoutTree())
		}
		s := newServiceAt(b, opts...)
		_, err = s.Count(ctx, Filter{}) // opens: builds the tree
		require.NoError(b, err)
		require.NoError(b, s.Close())
		db, err := sql.Open("sqlite3", path)
		require.NoError(b, err)
		defer db.Close()
		_, err = db.Exec("PRAGMA wal_checkpoint(TRUNCATE)")
		require.NoError(b, err)
		var pages, pageSize, free int64
		require.NoError(b, db.QueryRow("PRAGMA freelist_count").Scan(&free))
		b.Logf("tree=%v: %d free pages", tree, free)
		require.NoError(b, db.QueryRow("PRAGMA page_count").Scan(&pages))
		require.NoError(b, db.QueryRow("PRAGMA page_size").Scan(&pageSize))
		return pages * pageSize
	}
	for range b.N {
		without, with := size(false), size(true)
		b.ReportMetric(float64(with-without)/n, "B/entry")
	}
}
