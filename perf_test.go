package audit

import (
	"context"
	"database/sql"
	"encoding/json"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/cleveragents/audit/internal/testutil"
	"github.com/stretchr/testify/require"
	"gorm.io/gorm"
	gormlogger "gorm.io/gorm/logger"
)

// The performance suite of issue 5. Every benchmark runs its baseline
// first, as a sub-benchmark of the same benchmark, and reports its own
// figure as a multiple of the baseline's, so that each ratio comes from one
// run on one machine:
//
//	go test -run '^$' -bench '^Benchmark(Ingest|RecordCall|Query)$' -benchtime 2s .
//	go test -run '^$' -bench '^BenchmarkPruneStall$' -benchtime 1x .
//	go run ./tools/bench   # all of it, a table against the goals and docs/benchmarks.png
//
// Multiples named x-... are throughput (higher is better); cost-x-... are
// time per call (lower is better). The suite runs on SQLite, the embedded
// default, with the library's own settings (WAL, synchronous=FULL, the
// indexes of newQueries); bench_test.go has the PostgreSQL runs.
//
// BenchmarkQuery, BenchmarkPruneStall and TestPerfPruneStall share a log
// of 1M entries (perfFixture). Building it takes a while, so it is built
// once and kept in os.TempDir() under a name that holds a hash of the
// fixture's version and of the schema's DDL: later runs reuse it, and a
// change to either builds a new one. It takes about 550 MB; remove it with
// rm "${TMPDIR:-/tmp}"/audit-perf-*.db. The benchmarks only read it;
// BenchmarkPruneStall prunes a copy.

// BenchmarkIngest is ingest end to end, in entries per second, beside its
// baselines on fresh files with the same schema and indexes:
//
//   - raw_sql: what database/sql can do by hand: a prepared 1024-row
//     multi-row INSERT, one transaction each, rows made by a producer
//     goroutine so that only the database is timed;
//   - naive/callers=N: one GORM Create per entry from N goroutines, what a
//     service would otherwise hand-write;
//   - async/callers=16: 16 goroutines Record, then Flush (x-raw, x-naive);
//   - writer_only: the writer by itself, draining a queue filled while
//     another connection held the write lock (x-raw): what async ingest
//     would reach if the callers cost nothing;
//   - sync/callers=64: 64 goroutines Record in sync mode, each waiting for
//     its commit (x-naive).
func BenchmarkIngest(b *testing.B) {
	sqliteBE := backends[0]
	require.Equal(b, "sqlite", sqliteBE.name)
	var raw, naive16, naive64 float64
	b.Run("raw_sql", func(b *testing.B) { raw = perfRawInsert(b) })
	b.Run("naive/callers=16", func(b *testing.B) { naive16 = perfNaiveCreate(b, sqliteBE, 16) })
	b.Run("async/callers=16", func(b *testing.B) {
		ns := perfIngest(b, 16, WithAsync(true))
		perfReportRatio(b, raw, ns, "x-raw")
		perfReportRatio(b, naive16, ns, "x-naive")
	})
	b.Run("writer_only", func(b *testing.B) {
		perfReportRatio(b, raw, perfWriterOnly(b), "x-raw")
	})
	b.Run("naive/callers=64", func(b *testing.B) { naive64 = perfNaiveCreate(b, sqliteBE, 64) })
	b.Run("sync/callers=64", func(b *testing.B) {
		ns := perfIngest(b, 64, WithAsync(false))
		perfReportRatio(b, naive64, ns, "x-naive")
	})
}

// perfReportRatio reports base/ns, how many times faster ns is than base,
// when the baseline ran.
func perfReportRatio(b *testing.B, base, ns float64, unit string) {
	if base > 0 && ns > 0 {
		b.ReportMetric(base/ns, unit)
	}
}

// perfReportCost reports ns/base, how many times the baseline's cost ns
// is, when the baseline ran.
func perfReportCost(b *testing.B, ns, base float64, unit string) {
	if base > 0 && ns > 0 {
		b.ReportMetric(ns/base, unit)
	}
}

// perfIngest is callers goroutines calling Record b.N times in all on a
// fresh log, then Flush; it returns ns per entry.
func perfIngest(b *testing.B, callers int, opts ...Option) float64 {
	s := freshSQLite(b).service(b, opts...)
	ctx := context.Background()
	_, err := s.Count(ctx, Filter{}) // open before timing
	require.NoError(b, err)
	return runCallers(b, callers, func(i int) error {
		return s.Record(ctx, sampleEntry(i))
	}, func() error { return s.Flush(ctx) })
}

// perfWriterOnly queues b.N entries while another connection holds the
// write lock, then times the writer from the lock's release to Flush. It
// returns ns per entry.
func perfWriterOnly(b *testing.B) float64 {
	st := freshSQLite(b)
	s := st.service(b, WithQueueSize(b.N+1))
	ctx := context.Background()
	_, err := s.Count(ctx, Filter{}) // open, so that the lock is the only obstacle
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

// perfNaiveCreate is the hand-written baseline: one GORM Create per entry,
// b.N in all from callers goroutines, into a table of the same columns and
// indexes (naiveRow) beside a fresh log. It returns ns per entry.
func perfNaiveCreate(b *testing.B, be backendKind, callers int) float64 {
	st := be.fresh(b)
	db, err := gorm.Open(st.dialector(), &gorm.Config{Logger: gormlogger.Discard})
	require.NoError(b, err)
	defer closeGorm(db)
	table := st.table + "_naive"
	b.Cleanup(func() { _, _ = st.raw.Exec("DROP TABLE IF EXISTS " + quote(table)) })
	require.NoError(b, db.Table(table).AutoMigrate(&naiveRow{}))
	return runCallers(b, callers, func(i int) error {
		e := sampleEntry(i)
		details, err := json.Marshal(e.Details)
		if err != nil {
			return err
		}
		row := naiveRow{
			Time: e.Time.UTC().Format(timeLayout), EventType: e.EventType, Actor: e.Actor,
			Resource: e.Resource, Outcome: e.Outcome, RequestID: e.RequestID, Details: string(details),
		}
		// Many SQLite writers starve one another in the busy handler, and
		// one may wait past the 5 s busy timeout: the naive service retries
		// (and pays for it), rather than losing the entry.
		for {
			err := db.Table(table).Create(&row).Error
			if !sqliteBusy(err) {
				return err
			}
			row.ID = 0
		}
	}, nil)
}

// perfRawRows is the rows per transaction (and per INSERT) of the raw
// baseline.
const perfRawRows = 1024

// perfHashText stands in for the hashes in the raw baseline's rows: the
// same width as a real one, and free to compute, so the baseline is timed
// on the database alone.
var perfHashText = strings.Repeat("0123456789abcdef", 4)

// perfRawInsert inserts b.N rows made from sampleEntry, as the service
// would store them, with a prepared multi-row INSERT of perfRawRows rows
// per transaction through database/sql, on the library's DSN and schema
// (an audit service creates it first). A producer goroutine makes the rows,
// so the timed loop does nothing but the database's work. It returns ns
// per entry and reports entries/s.
func perfRawInsert(b *testing.B) float64 {
	ctx := context.Background()
	st := freshSQLite(b)
	s := st.service(b)
	_, err := s.Count(ctx, Filter{}) // creates the schema
	require.NoError(b, err)
	require.NoError(b, s.Close())

	dsn, _ := sqliteDSN(st.path)
	db, err := sql.Open("sqlite3", dsn)
	require.NoError(b, err)
	defer db.Close()
	db.SetMaxOpenConns(1) // one connection, on which the statements stay prepared
	q := newQueries(&sqliteDialect, st.table)
	stmts := map[int]*sql.Stmt{}
	defer func() {
		for _, stmt := range stmts {
			_ = stmt.Close()
		}
	}()
	prepared := func(rows int) *sql.Stmt {
		if stmt, ok := stmts[rows]; ok {
			return stmt
		}
		stmt, err := db.PrepareContext(ctx, perfInsertSQL(q.insertHead, rows))
		require.NoError(b, err)
		stmts[rows] = stmt
		return stmt
	}
	prepared(perfRawRows)

	batches := make(chan []any, 4)
	start, stop := make(chan struct{}), make(chan struct{})
	var producer sync.WaitGroup
	producer.Add(1)
	go func() {
		defer producer.Done()
		defer close(batches)
		select {
		case <-start:
		case <-stop:
			return
		}
		for first := 0; first < b.N; first += perfRawRows {
			n := min(perfRawRows, b.N-first)
			args := make([]any, 0, n*10)
			for i := first; i < first+n; i++ {
				e := sampleEntry(i)
				details, _ := json.Marshal(e.Details)
				args = append(args, int64(i+1), e.Time.UTC().Format(timeLayout), e.EventType, e.Actor,
					e.Resource, e.Outcome, e.RequestID, string(details), perfHashText, perfHashText)
			}
			select {
			case batches <- args:
			case <-stop:
				return
			}
		}
	}()
	defer func() {
		close(stop)
		producer.Wait()
	}()

	b.ResetTimer()
	began := time.Now()
	close(start)
	for args := range batches {
		stmt := prepared(len(args) / 10) // before BeginTx takes the one connection
		tx, err := db.BeginTx(ctx, nil)
		require.NoError(b, err)
		_, err = tx.StmtContext(ctx, stmt).ExecContext(ctx, args...)
		require.NoError(b, err)
		require.NoError(b, tx.Commit())
	}
	elapsed := time.Since(began)
	b.StopTimer()
	ns := float64(elapsed.Nanoseconds()) / float64(b.N)
	b.ReportMetric(1e9/ns, "entries/s")
	return ns
}

// perfInsertSQL returns head followed by rows rows of ten placeholders:
// a multi-row INSERT on SQLite.
func perfInsertSQL(head string, rows int) string {
	return perfInsertSQLOf(head, rows, sqliteDialect.ph)
}

// perfInsertSQLOf is perfInsertSQL with the placeholders of ph, numbered
// from the first row's first column on (PostgreSQL's $n).
func perfInsertSQLOf(head string, rows int, ph func(int) string) string {
	var sb strings.Builder
	sb.WriteString(head)
	for r := range rows {
		if r > 0 {
			sb.WriteByte(',')
		}
		sb.WriteByte('(')
		for c := range 10 {
			if c > 0 {
				sb.WriteByte(',')
			}
			sb.WriteString(ph(r*10 + c + 1))
		}
		sb.WriteByte(')')
	}
	return sb.String()
}

// BenchmarkRecordCall is the cost of one Record call in async mode with
// room in the queue, beside the least a caller could do by hand: marshal
// the Details and send the entry down a channel (marshal+send). Both
// channels are drained by a consumer goroutine that does nothing else, so
// only the call is timed: the service's writer is parked (its database's
// directory does not exist, so it backs off holding its first batch) and
// a stand-in consumer empties the service's queue, as the writer would if
// the database kept up. The /parallel variants call from GOMAXPROCS
// goroutines. It reports calls/s and cost-x-base, the multiple of the
// baseline's time per call.
func BenchmarkRecordCall(b *testing.B) {
	entries := make([]Entry, 64)
	for i := range entries {
		entries[i] = sampleEntry(i)
	}
	for _, parallel := range []bool{false, true} {
		suffix := ""
		if parallel {
			suffix = "/parallel"
		}
		var base float64
		b.Run("marshal+send"+suffix, func(b *testing.B) {
			base = perfChannelCall(b, entries, parallel)
		})
		b.Run("record"+suffix, func(b *testing.B) {
			ns := perfRecordCall(b, entries, parallel)
			perfReportCost(b, ns, base, "cost-x-base")
		})
	}
}

// perfSent is what the baseline of BenchmarkRecordCall sends: the entry
// and its marshalled Details.
type perfSent struct {
	e       Entry
	details []byte
}

// perfChannelCall times b.N calls of json.Marshal(Details) plus a send of
// the entry on a buffered channel that a consumer drains. It returns ns
// per call.
func perfChannelCall(b *testing.B, entries []Entry, parallel bool) float64 {
	ch := make(chan perfSent, DefaultQueueSize)
	stop := perfDrain(ch)
	defer stop()
	return perfCalls(b, parallel, func(i int) error {
		e := entries[i%len(entries)]
		details, err := json.Marshal(e.Details)
		if err != nil {
			return err
		}
		ch <- perfSent{e: e, details: details}
		return nil
	})
}

// perfRecordCall times b.N async Record calls while a stand-in consumer
// drains the queue (see BenchmarkRecordCall). It returns ns per call.
func perfRecordCall(b *testing.B, entries []Entry, parallel bool) float64 {
	missing := filepath.Join(b.TempDir(), "missing", "audit.db")
	s, err := New(WithSQLite(missing), WithLogger(testutil.Discard()))
	require.NoError(b, err)
	defer func() {
		// Give up at once: the writer logs (to nowhere) the batch it holds.
		ctx, cancel := context.WithCancel(context.Background())
		cancel()
		_ = s.Shutdown(ctx)
	}()
	stop := perfDrain(s.in.queue)
	defer stop()
	ctx := context.Background()
	return perfCalls(b, parallel, func(i int) error {
		return s.Record(ctx, entries[i%len(entries)])
	})
}

// perfDrain receives from ch until the returned function is called, which
// waits for it to stop.
func perfDrain[T any](ch chan T) (stop func()) {
	quit, done := make(chan struct{}), make(chan struct{})
	go func() {
		defer close(done)
		for {
			select {
			case <-ch:
			case <-quit:
				return
			}
		}
	}()
	return func() {
		close(quit)
		<-done
	}
}

// perfCalls times b.N calls of op, from one goroutine or (parallel) from
// GOMAXPROCS goroutines, and returns ns per call.
func perfCalls(b *testing.B, parallel bool, op func(i int) error) float64 {
	b.ReportAllocs()
	b.ResetTimer()
	if parallel {
		var seq atomic.Int64
		b.RunParallel(func(pb *testing.PB) {
			i := int(seq.Add(1)) * 7
			for pb.Next() {
				if err := op(i); err != nil {
					b.Error(err)
					return
				}
				i++
			}
		})
	} else {
		for i := 0; i < b.N; i++ {
			if err := op(i); err != nil {
				b.Fatal(err)
			}
		}
	}
	b.StopTimer()
	ns := float64(b.Elapsed().Nanoseconds()) / float64(b.N)
	b.ReportMetric(1e9/ns, "calls/s")
	return ns
}
