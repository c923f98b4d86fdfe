package audit

import (
	"context"
	"database/sql"
	"fmt"
	"testing"
	"time"

	"github.com/cleveragents/audit/internal/testutil"
	"github.com/stretchr/testify/require"
)

// The realistic suite at scale (issue 13, goal 6): Prune and Verify on a
// log of AUDIT_REALISTIC_SCALE realistic entries (default 1,000,000),
// written by Record and kept between runs (realFixture), for
// AUDIT_REALISTIC_ROUNDS rounds:
//
//	go test -run '^$' -bench '^BenchmarkRealistic(PruneStall|Verify)$' -benchtime 1x -timeout 60m .

// BenchmarkRealisticPruneStall is the writer's longest wait while Prune
// deletes the oldest 10% of the realistic log: per round, on a fresh copy
// of it, one goroutine calls Record in sync mode without pause, first in
// a quiet phase, then while Prune runs (perfPruneStall). max-stall-ms is
// the median over the rounds of the longest call while Prune ran, beside
// quiet-max-ms, the longest before it; ns/op is Prune's time per entry
// deleted. Every round's values are logged.
func BenchmarkRealisticPruneStall(b *testing.B) {
	rounds := realEnvInt(b, "AUDIT_REALISTIC_ROUNDS", 3)
	n := realEnvInt(b, "AUDIT_REALISTIC_SCALE", 1_000_000)
	writes := realEntries(3, 20_000)
	c := perfStallCase{fixture: realFixture(b, n), before: realStart.Add(time.Duration(n/10) * realStep),
		pruned: int64(n / 10), entry: func(i int) Entry { return writes[i%len(writes)] }}
	ms := func(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }
	var maxMS, p99MS, quietMS, quietP99MS, perEntry, during []float64
	for range rounds {
		realQuiesce() // no writeback of the last round's files pending
		st := perfPruneStall(b, c)
		maxMS, p99MS = append(maxMS, ms(st.max)), append(p99MS, ms(st.p99))
		quietMS, quietP99MS = append(quietMS, ms(st.quietMax)), append(quietP99MS, ms(st.quietP99))
		perEntry = append(perEntry, float64(st.prune.Nanoseconds())/float64(st.pruned))
		during = append(during, float64(st.recorded))
	}
	b.Run(fmt.Sprintf("entries=%d", n), func(b *testing.B) {
		b.ReportMetric(median(perEntry), "ns/op") // per entry deleted
		for _, m := range []struct {
			unit     string
			perRound []float64
			decimals int
		}{
			{"max-stall-ms", maxMS, 1}, {"p99-stall-ms", p99MS, 1}, {"quiet-max-ms", quietMS, 1},
			{"quiet-p99-ms", quietP99MS, 1}, {"records-during", during, 0},
		} {
			b.ReportMetric(median(m.perRound), m.unit)
			realLogRounds(b, m.perRound, m.unit, m.decimals)
		}
		rates := make([]float64, len(perEntry))
		for i, v := range perEntry {
			rates[i] = 1e9 / v
		}
		b.ReportMetric(median(rates), "pruned/s")
		realLogRounds(b, rates, "pruned/s", 0)
	})
}

// BenchmarkRealisticVerify is a full Verify of the realistic log beside a
// hand-written loop that checks the same chain (realHandVerify): per
// round, each walks the whole log, taking turns at going first. ns/op is
// time per entry; x-hand, on verify/audit, is the median of the per-round
// ratios of the loop's time to Verify's (higher is better).
func BenchmarkRealisticVerify(b *testing.B) {
	rounds := realEnvInt(b, "AUDIT_REALISTIC_ROUNDS", 3)
	n := realEnvInt(b, "AUDIT_REALISTIC_SCALE", 1_000_000)
	path := realFixture(b, n)
	ctx := context.Background()
	s := newServiceAt(b, WithSQLite(path), WithLogger(testutil.Discard()))
	dsn, _ := sqliteDSN(path)
	db, err := sql.Open("sqlite3", dsn)
	require.NoError(b, err)
	b.Cleanup(func() { _ = db.Close() })

	hand := func() float64 {
		began := time.Now()
		got, err := realHandVerify(ctx, db, s.chain)
		require.NoError(b, err)
		require.Equal(b, int64(n), got)
		return float64(time.Since(began).Nanoseconds()) / float64(n)
	}
	lib := func() float64 {
		began := time.Now()
		rep, err := s.Verify(ctx)
		require.NoError(b, err)
		require.Equal(b, int64(n), rep.Entries)
		return float64(time.Since(began).Nanoseconds()) / float64(n)
	}
	var hs, ls, ratios []float64
	for round := range rounds {
		var h, l float64
		if round%2 == 0 { // the one that runs second finds the cache warmer: take turns
			h, l = hand(), lib()
		} else {
			l = lib()
			h = hand()
		}
		hs, ls, ratios = append(hs, h), append(ls, l), append(ratios, h/l)
	}
	name := fmt.Sprintf("entries=%d/", n)
	b.Run(name+"verify/hand", func(b *testing.B) {
		b.ReportMetric(median(hs), "ns/op") // per entry
		realLogRounds(b, hs, "ns/entry", 0)
	})
	b.Run(name+"verify/audit", func(b *testing.B) {
		b.ReportMetric(median(ls), "ns/op")
		realLogRounds(b, ls, "ns/entry", 0)
		realReportRatio(b, ratios, "x-hand")
	})
}

// realHandVerify is what a service would write by hand to check the
// chain of an unpruned log: in one read transaction, the rows in ID
// order, verifyPage at a time, each checked for the next ID, the previous
// entry's hash as its PrevHash and its content's hash (the library's
// hasher over the same stored bytes). It returns how many entries it
// checked.
func realHandVerify(ctx context.Context, db *sql.DB, h hasher) (int64, error) {
	tx, err := db.BeginTx(ctx, &sql.TxOptions{ReadOnly: true})
	if err != nil {
		return 0, err
	}
	defer tx.Rollback() //nolint:errcheck // read-only
	const page = "SELECT " + columns + " FROM audit_entries WHERE id > ? ORDER BY id LIMIT ?"
	var n, last int64
	prev := ""
	for {
		rows, err := tx.QueryContext(ctx, page, last, verifyPage)
		if err != nil {
			return n, err
		}
		got := 0
		for rows.Next() {
			var id int64
			var r record
			var prevHash, hash string
			if err := rows.Scan(&id, &r.time, &r.eventType, &r.actor, &r.resource, &r.outcome, &r.requestID,
				&r.details, &prevHash, &hash); err != nil {
				rows.Close()
				return n, err
			}
			if id != last+1 || prevHash != prev || h.hash(prevHash, &r) != hash {
				rows.Close()
				return n, fmt.Errorf("entry %d does not check", id)
			}
			got, n, last, prev = got+1, n+1, id, hash
		}
		if err := rows.Close(); err != nil {
			return n, err
		}
		if err := rows.Err(); err != nil {
			return n, err
		}
		if got < verifyPage {
			return n, tx.Commit()
		}
	}
}
