package audit

import (
	"context"
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"gorm.io/gorm"
)

// BenchmarkRecordTx measures what RecordTx adds to a business transaction
// on SQLite: the same transaction (one INSERT of a business row) without
// and with RecordTx, interleaved round by round, and the drain lag, from
// the business commit to the entry's being readable in the chain.
//
//	go test -run '^$' -bench BenchmarkRecordTx -benchtime 2000x .
func BenchmarkRecordTx(b *testing.B) {
	st := freshSQLite(b)
	s := st.service(b)
	db := appDB(b, st)
	ctx := context.Background()
	require.NoError(b, s.Ping(ctx))
	n := 0
	tx := func(audited bool) time.Duration {
		n++
		id := fmt.Sprintf("bench-%08d", n)
		began := time.Now()
		err := db.Transaction(func(tx *gorm.DB) error {
			if err := tx.Create(&bizRow{ID: id, Value: n}).Error; err != nil {
				return err
			}
			if audited {
				return s.RecordTx(ctx, tx, Entry{EventType: "biz.create", Actor: "bench", RequestID: id})
			}
			return nil
		})
		require.NoError(b, err)
		return time.Since(began)
	}
	var plain, audited time.Duration
	lags := make([]time.Duration, 0, b.N)
	b.ResetTimer()
	for i := range b.N {
		plain += tx(false)
		audited += tx(true)
		if i%20 == 0 { // the lag of one in twenty: polling it would slow the rest
			committed := time.Now()
			id := fmt.Sprintf("bench-%08d", n)
			for {
				c, err := s.Count(ctx, Filter{RequestID: id})
				require.NoError(b, err)
				if c == 1 {
					break
				}
				time.Sleep(time.Millisecond)
			}
			lags = append(lags, time.Since(committed))
		}
	}
	b.StopTimer()
	us := func(d time.Duration) float64 { return float64(d) / float64(b.N) / 1e3 }
	b.ReportMetric(us(plain), "plain-tx-µs")
	b.ReportMetric(us(audited), "recordtx-tx-µs")
	b.ReportMetric(us(audited-plain), "added-µs")
	b.ReportMetric(float64(audited)/float64(plain), "x-plain")
	slices.Sort(lags)
	b.ReportMetric(float64(lags[len(lags)/2])/1e6, "drain-lag-p50-ms")
	b.ReportMetric(float64(lags[len(lags)*99/100])/1e6, "drain-lag-p99-ms")
}
