package auditexport

import (
	"context"
	"database/sql"
	"fmt"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"slices"
	"strconv"
	"sync/atomic"
	"testing"
	"time"

	"github.com/cleveragents/audit"
	"github.com/cleveragents/audit/internal/testutil"
	"github.com/stretchr/testify/require"
)

// BenchmarkRecordDuringOutage measures Record + Flush (one entry
// committed) on a log whose webhook exporter is failing the whole time
// (the receiver answers 503), beside the same without an exporter, in
// one run. For the 60 s outage of the issue:
//
//	go test -run '^$' -bench BenchmarkRecordDuringOutage -benchtime 60s ./auditexport
func BenchmarkRecordDuringOutage(b *testing.B) {
	for _, mode := range []string{"no-exporter", "exporter-in-outage"} {
		b.Run(mode, func(b *testing.B) {
			path := filepath.Join(b.TempDir(), "audit.db")
			s, err := audit.New(audit.WithSQLite(path), audit.WithLogger(testutil.Discard()))
			require.NoError(b, err)
			defer s.Close()
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			var x *Exporter
			ran := make(chan struct{})
			if mode == "exporter-in-outage" {
				srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
					http.Error(w, "outage", http.StatusServiceUnavailable)
				}))
				defer srv.Close()
				db, err := sql.Open("sqlite3", path+"?_busy_timeout=5000")
				require.NoError(b, err)
				defer db.Close()
				sink, err := NewWebhookSink(srv.URL, testSecret, WebhookOptions{})
				require.NoError(b, err)
				defer sink.Close()
				x, err = New(Config{Source: s, Sink: sink, DB: db, Consumer: "bench", MaxBackoff: time.Second, Logger: testutil.Discard()})
				require.NoError(b, err)
				go func() { defer close(ran); _ = x.Run(ctx) }()
				require.NoError(b, s.Record(ctx, audit.Entry{EventType: "e", Actor: "a"}))
				testutil.WaitFor(b, time.Minute, func() bool { return x.Stats().Failures > 0 }, "the outage to begin")
			} else {
				close(ran)
			}
			lat := make([]time.Duration, 0, b.N)
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				t0 := time.Now()
				require.NoError(b, s.Record(ctx, audit.Entry{EventType: "e", Actor: "a", RequestID: strconv.Itoa(i)}))
				require.NoError(b, s.Flush(ctx))
				lat = append(lat, time.Since(t0))
			}
			b.StopTimer()
			if x != nil {
				require.Positive(b, x.Stats().Failures, "the sink was down")
				require.Zero(b, x.Stats().Exported)
			}
			cancel()
			<-ran
			slices.Sort(lat)
			b.ReportMetric(float64(lat[len(lat)/2])/1e6, "p50-ms")
			b.ReportMetric(float64(lat[min(len(lat)-1, len(lat)*99/100)])/1e6, "p99-ms")
		})
	}
}

var consumerSeq atomic.Int64

// BenchmarkExportThroughput exports a log of 20,000 entries to each sink
// and its receiver on 127.0.0.1, from a new cursor each time.
//
//	go test -run '^$' -bench BenchmarkExportThroughput -benchtime 3x ./auditexport
func BenchmarkExportThroughput(b *testing.B) {
	const n = 20000
	path := filepath.Join(b.TempDir(), "audit.db")
	s, err := audit.New(audit.WithSQLite(path), audit.WithLogger(testutil.Discard()))
	require.NoError(b, err)
	defer s.Close()
	ctx := context.Background()
	for i := 0; i < n; i++ {
		require.NoError(b, s.Record(ctx, audit.Entry{EventType: "user.login", Actor: fmt.Sprintf("user-%d", i%1000),
			Resource: fmt.Sprintf("/projects/%06d/items/%05d", i*7919%1000000, i%100000), Outcome: "success",
			RequestID: fmt.Sprintf("%032x", i), Details: map[string]any{"ip": "10.0.0.1", "agent": "bench", "n": i}}))
	}
	require.NoError(b, s.Flush(ctx))
	db, err := sql.Open("sqlite3", path+"?_busy_timeout=5000")
	require.NoError(b, err)
	defer db.Close()
	for _, kind := range []string{"file", "webhook", "tcp", "udp"} {
		b.Run(kind, func(b *testing.B) {
			rcv := startReceiver(b, kind)
			for i := 0; i < b.N; i++ {
				sink, err := newSink(kind, rcv.target)
				require.NoError(b, err)
				x, err := New(Config{Source: s, Sink: sink, DB: db, Consumer: fmt.Sprintf("bench-%s-%d", kind, consumerSeq.Add(1)),
					BatchSize: 1000, PollInterval: 5 * time.Millisecond, Logger: testutil.Discard()})
				require.NoError(b, err)
				rctx, cancel := context.WithCancel(ctx)
				ran := make(chan struct{})
				go func() { defer close(ran); _ = x.Run(rctx) }()
				for x.Stats().Exported < n {
					time.Sleep(time.Millisecond)
				}
				cancel()
				<-ran
				_ = sink.Close()
			}
			b.ReportMetric(float64(n*b.N)/b.Elapsed().Seconds(), "entries/s")
		})
	}
}
