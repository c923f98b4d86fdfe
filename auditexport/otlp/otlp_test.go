package otlp

import (
	"context"
	"database/sql"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/cleveragents/audit"
	"github.com/cleveragents/audit/auditexport"
	_ "github.com/mattn/go-sqlite3"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	collogspb "go.opentelemetry.io/proto/otlp/collector/logs/v1"
	commonpb "go.opentelemetry.io/proto/otlp/common/v1"
	logspb "go.opentelemetry.io/proto/otlp/logs/v1"
	"go.uber.org/goleak"
	"google.golang.org/protobuf/proto"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// collector is an OTLP/HTTP logs receiver on 127.0.0.1 that decodes each
// request as an ExportLogsServiceRequest; it refuses while down says so.
type collector struct {
	mu   sync.Mutex
	recs []*logspb.LogRecord
	down bool
	srv  *httptest.Server
}

func startCollector(t *testing.T) *collector {
	c := &collector{}
	c.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, err := io.ReadAll(r.Body)
		if err != nil {
			return
		}
		c.mu.Lock()
		defer c.mu.Unlock()
		if c.down {
			http.Error(w, "unavailable", http.StatusServiceUnavailable)
			return
		}
		assert.Equal(t, "/v1/logs", r.URL.Path)
		assert.Equal(t, "application/x-protobuf", r.Header.Get("Content-Type"))
		var req collogspb.ExportLogsServiceRequest
		if !assert.NoError(t, proto.Unmarshal(body, &req)) {
			http.Error(w, "bad protobuf", http.StatusBadRequest)
			return
		}
		for _, rl := range req.ResourceLogs {
			assert.Equal(t, "service.name", rl.Resource.Attributes[0].Key)
			for _, sl := range rl.ScopeLogs {
				assert.Equal(t, ScopeName, sl.Scope.Name)
				c.recs = append(c.recs, sl.LogRecords...)
			}
		}
		resp, _ := proto.Marshal(&collogspb.ExportLogsServiceResponse{})
		w.Header().Set("Content-Type", "application/x-protobuf")
		_, _ = w.Write(resp)
	}))
	t.Cleanup(c.srv.Close)
	return c
}

func (c *collector) records() []*logspb.LogRecord {
	c.mu.Lock()
	defer c.mu.Unlock()
	return append([]*logspb.LogRecord(nil), c.recs...)
}

func attrs(lr *logspb.LogRecord) map[string]any {
	m := map[string]any{}
	for _, kv := range lr.Attributes {
		switch v := kv.Value.Value.(type) {
		case *commonpb.AnyValue_IntValue:
			m[kv.Key] = v.IntValue
		default:
			m[kv.Key] = kv.Value.GetStringValue()
		}
	}
	return m
}

// TestExportToCollector runs an exporter with this sink against the
// collector, through an outage: every entry arrives once, in order, as a
// log record that carries every field, and its body re-encodes the
// record exactly.
func TestExportToCollector(t *testing.T) {
	col := startCollector(t)
	col.mu.Lock()
	col.down = true
	col.mu.Unlock()
	path := filepath.Join(t.TempDir(), "audit.db")
	discard := slog.New(slog.DiscardHandler)
	s, err := audit.New(audit.WithSQLite(path), audit.WithLogger(discard))
	require.NoError(t, err)
	defer s.Close()
	db, err := sql.Open("sqlite3", path+"?_busy_timeout=5000")
	require.NoError(t, err)
	defer db.Close()
	sink, err := NewSink(col.srv.URL+"/v1/logs", Options{ServiceName: "billing"})
	require.NoError(t, err)
	defer sink.Close()
	x, err := auditexport.New(auditexport.Config{Source: s, Sink: sink, DB: db, Consumer: "otel", BatchSize: 50,
		PollInterval: 10 * time.Millisecond, MaxBackoff: 200 * time.Millisecond, Logger: discard})
	require.NoError(t, err)
	ctx, cancel := context.WithCancel(context.Background())
	ran := make(chan error, 1)
	go func() { ran <- x.Run(ctx) }()

	const n = 500
	when := time.Date(2026, 5, 6, 7, 8, 9, 123456789, time.UTC)
	for i := 0; i < n; i++ {
		outcome := "success"
		if i%10 == 0 {
			outcome = "denied"
		}
		require.NoError(t, s.Record(ctx, audit.Entry{Time: when, EventType: "user.login", Actor: "u" + strconv.Itoa(i), Outcome: outcome,
			RequestID: strconv.Itoa(i), Details: map[string]any{"big": json.Number("98765432109876543210")}}))
	}
	require.NoError(t, s.Flush(ctx))
	for x.Stats().Failures == 0 {
		time.Sleep(5 * time.Millisecond) // the outage is seen (bounded by the test's timeout)
	}
	col.mu.Lock()
	col.down = false
	col.mu.Unlock()
	for {
		lag, err := x.Lag(ctx)
		require.NoError(t, err)
		if lag == 0 {
			break
		}
		time.Sleep(5 * time.Millisecond)
	}
	cancel()
	require.NoError(t, <-ran)

	entries, err := s.List(context.Background(), audit.Filter{Limit: n})
	require.NoError(t, err)
	got := col.records()
	require.Len(t, got, n, "each once")
	for i, lr := range got {
		e := entries[i]
		a := attrs(lr)
		require.Equal(t, e.ID, a["audit.id"], "in ID order")
		assert.Equal(t, e.Actor, a["audit.actor"])
		assert.Equal(t, e.Hash, a["audit.hash"])
		assert.Equal(t, e.PrevHash, a["audit.prev_hash"])
		assert.Equal(t, "2026-05-06T07:08:09.123456789Z", a["audit.time"])
		assert.Equal(t, `{"big":98765432109876543210}`, a["audit.details"])
		assert.Equal(t, uint64(when.UnixNano()), lr.TimeUnixNano)
		assert.Equal(t, "user.login", lr.EventName)
		want := logspb.SeverityNumber_SEVERITY_NUMBER_INFO
		if e.Outcome == "denied" {
			want = logspb.SeverityNumber_SEVERITY_NUMBER_WARN
		}
		assert.Equal(t, want, lr.SeverityNumber)
		rec, err := auditexport.FromEntry(e)
		require.NoError(t, err)
		js, err := json.Marshal(rec)
		require.NoError(t, err)
		assert.Equal(t, string(js), lr.Body.GetStringValue())
	}
}

// TestPartialSuccess: records a collector rejects are counted, and the
// batch counts as delivered.
func TestPartialSuccess(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.Copy(io.Discard, r.Body)
		b, _ := proto.Marshal(&collogspb.ExportLogsServiceResponse{PartialSuccess: &collogspb.ExportLogsPartialSuccess{RejectedLogRecords: 2, ErrorMessage: "too old"}})
		_, _ = w.Write(b)
	}))
	defer srv.Close()
	sink, err := NewSink(srv.URL, Options{})
	require.NoError(t, err)
	defer sink.Close()
	require.NoError(t, sink.Write(context.Background(), []auditexport.Record{{ID: 1, Time: auditexport.TimeLayout, Details: []byte("null")}}))
	assert.Equal(t, int64(2), sink.Rejected())
	_, err = NewSink("localhost:4318", Options{})
	assert.ErrorContains(t, err, "endpoint")
}
