package otlp

import (
	"context"
	"database/sql"
	"fmt"
	"log/slog"
	"path/filepath"
	"testing"
	"time"

	"github.com/cleveragents/audit"
	"github.com/cleveragents/audit/auditexport"
	"github.com/stretchr/testify/require"
)

// BenchmarkExportThroughput exports a log of 20,000 entries to the
// decoding collector on 127.0.0.1, from a new cursor each time.
//
//	go test -run '^$' -bench BenchmarkExportThroughput -benchtime 1x .
func BenchmarkExportThroughput(b *testing.B) {
	const n = 20000
	discard := slog.New(slog.DiscardHandler)
	path := filepath.Join(b.TempDir(), "audit.db")
	s, err := audit.New(audit.WithSQLite(path), audit.WithLogger(discard))
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
	col := startCollector(b)
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		sink, err := NewSink(col.srv.URL+"/v1/logs", Options{})
		require.NoError(b, err)
		x, err := auditexport.New(auditexport.Config{Source: s, Sink: sink, DB: db, Consumer: fmt.Sprintf("bench-%d-%d", b.N, i),
			BatchSize: 1000, PollInterval: 5 * time.Millisecond, Logger: discard})
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
}
