package otlp

import (
	"context"
	"database/sql"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
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

const helperRoleEnv = "OTLP_HELPER_ROLE"

// TestMain fails the run if a goroutine outlives the tests; a child of
// the helper-process pattern runs the exporter instead.
func TestMain(m *testing.M) {
	if os.Getenv(helperRoleEnv) == "export" {
		os.Exit(childExport())
	}
	goleak.VerifyTestMain(m)
}

// childExport exports the log at OTLP_DB to the collector at OTLP_URL
// until it is killed or, with OTLP_DRAIN set, nothing is left.
func childExport() int {
	discard := slog.New(slog.DiscardHandler)
	path := os.Getenv("OTLP_DB")
	fail := func(err error) int { fmt.Fprintln(os.Stderr, err); return 1 }
	src, err := audit.New(audit.WithSQLite(path), audit.WithLogger(discard))
	if err != nil {
		return fail(err)
	}
	db, err := sql.Open("sqlite3", path+"?_busy_timeout=5000")
	if err != nil {
		return fail(err)
	}
	sink, err := NewSink(os.Getenv("OTLP_URL"), Options{})
	if err != nil {
		return fail(err)
	}
	x, err := auditexport.New(auditexport.Config{Source: src, Sink: sink, DB: db, Consumer: "otel", BatchSize: killBatch,
		PollInterval: 10 * time.Millisecond, MaxBackoff: 500 * time.Millisecond, Logger: discard})
	if err != nil {
		return fail(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	if os.Getenv("OTLP_DRAIN") != "" {
		go func() {
			for {
				if lag, err := x.Lag(ctx); err == nil && lag == 0 {
					cancel()
					return
				}
				time.Sleep(10 * time.Millisecond)
			}
		}()
	}
	_ = x.Run(ctx)
	return 0
}

const killBatch = 64

// TestKillAndRestart kills the exporter, a separate process, 20 times
// while entries are recorded, then lets a last one drain: the collector
// gets every entry, in ID order, with duplicates only from within one
// batch.
func TestKillAndRestart(t *testing.T) {
	if testing.Short() {
		t.Skip("starts processes")
	}
	col := startCollector(t)
	path := filepath.Join(t.TempDir(), "audit.db")
	s, err := audit.New(audit.WithSQLite(path), audit.WithLogger(slog.New(slog.DiscardHandler)))
	require.NoError(t, err)
	defer s.Close()
	ctx := context.Background()
	require.NoError(t, s.Record(ctx, audit.Entry{EventType: "load", Actor: "a"}))
	require.NoError(t, s.Flush(ctx))
	stop, loaded := make(chan struct{}), make(chan struct{})
	go func() { // the load: about 500 entries a second
		defer close(loaded)
		tick := time.NewTicker(2 * time.Millisecond)
		defer tick.Stop()
		for i := 0; ; i++ {
			select {
			case <-stop:
				return
			case <-tick.C:
			}
			if !assert.NoError(t, s.Record(ctx, audit.Entry{EventType: "load", Actor: "a", RequestID: strconv.Itoa(i)})) {
				return
			}
		}
	}()
	env := []string{helperRoleEnv + "=export", "OTLP_DB=" + path, "OTLP_URL=" + col.srv.URL + "/v1/logs"}
	start := func(more ...string) *exec.Cmd {
		cmd := exec.Command(os.Args[0], "-test.run=^$")
		cmd.Env = append(append(os.Environ(), env...), more...)
		cmd.Stderr = os.Stderr
		require.NoError(t, cmd.Start())
		return cmd
	}
	rng := rand.New(rand.NewPCG(3, 4))
	for k := 0; k < 20; k++ {
		before := len(col.records())
		cmd := start()
		deadline := time.Now().Add(time.Minute)
		for len(col.records()) <= before {
			require.True(t, time.Now().Before(deadline), "the exporter delivers")
			time.Sleep(5 * time.Millisecond)
		}
		time.Sleep(time.Duration(rng.IntN(20)) * time.Millisecond) // a random point of its work
		require.NoError(t, cmd.Process.Kill())
		_ = cmd.Wait()
	}
	close(stop)
	<-loaded
	require.NoError(t, s.Flush(ctx))
	require.NoError(t, start("OTLP_DRAIN=1").Wait(), "the last exporter drains")

	n, err := s.Count(ctx, audit.Filter{})
	require.NoError(t, err)
	seen := map[int64]bool{}
	var top int64
	var first []int64
	for i, lr := range col.records() {
		id := attrs(lr)["audit.id"].(int64)
		if id <= top {
			require.True(t, seen[id], "ID %d arrives after %d (delivery %d) and never came before", id, top, i)
			require.Less(t, top-id, int64(killBatch), "ID %d again after %d: more than one batch back", id, top)
			continue
		}
		seen[id] = true
		first = append(first, id)
		top = id
	}
	require.Len(t, first, int(n))
	for i, id := range first {
		require.Equal(t, int64(i+1), id, "every entry, in ID order")
	}
}

// collector is an OTLP/HTTP logs receiver on 127.0.0.1 that decodes each
// request as an ExportLogsServiceRequest; it refuses while down says so.
type collector struct {
	mu   sync.Mutex
	recs []*logspb.LogRecord
	down bool
	srv  *httptest.Server
}

func startCollector(t testing.TB) *collector {
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
