package auditexport

import (
	"context"
	"database/sql"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/cleveragents/audit"
	"github.com/cleveragents/audit/internal/testutil"
	_ "github.com/mattn/go-sqlite3"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"
)

const helperRoleEnv = "AUDITEXPORT_HELPER_ROLE"

// TestMain fails the run if a goroutine outlives the tests. A child of the
// helper-process pattern runs its role instead.
func TestMain(m *testing.M) {
	if os.Getenv(helperRoleEnv) == "export" {
		os.Exit(childExport())
	}
	goleak.VerifyTestMain(m)
}

var testSecret = []byte("0123456789abcdef-webhook-secret")

// newSink builds the sink that kind and target name: "file" (a path),
// "webhook" (a URL), "tcp" or "udp" (an address).
func newSink(kind, target string) (Sink, error) {
	switch kind {
	case "file":
		return NewFileSink(target, FileOptions{MaxSize: 64 << 10})
	case "webhook":
		return NewWebhookSink(target, testSecret, WebhookOptions{})
	case "tcp", "udp":
		return NewSyslogSink(kind, target, SyslogOptions{Hostname: "test-host"})
	}
	return nil, fmt.Errorf("unknown sink %q", kind)
}

// childExport exports the log at AUDITEXPORT_DB to the sink of
// AUDITEXPORT_SINK and AUDITEXPORT_TARGET until it is killed or, with
// AUDITEXPORT_DRAIN set, until nothing is left to export.
func childExport() int {
	path := os.Getenv("AUDITEXPORT_DB")
	src, err := audit.New(audit.WithSQLite(path), audit.WithLogger(testutil.Discard()))
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	db, err := sql.Open("sqlite3", path+"?_busy_timeout=5000")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	sink, err := newSink(os.Getenv("AUDITEXPORT_SINK"), os.Getenv("AUDITEXPORT_TARGET"))
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	batch, _ := strconv.Atoi(os.Getenv("AUDITEXPORT_BATCH"))
	x, err := New(Config{Source: src, Sink: sink, DB: db, Consumer: "siem", BatchSize: batch,
		PollInterval: 10 * time.Millisecond, MaxBackoff: 500 * time.Millisecond, Logger: testutil.Discard()})
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	if os.Getenv("AUDITEXPORT_DRAIN") != "" {
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

// receiver is a sink's far end on 127.0.0.1: it keeps the IDs in the
// order they arrived.
type receiver struct {
	kind, target string
	ids          func() []int64
}

// TestKillAndRestart kills the exporter, a separate process, 20 times
// while entries are recorded, for each sink against a real receiver; a
// last run drains the log. Every entry arrives, in ID order, and the only
// duplicates are of entries less than one batch back (what a kill between
// a delivery and the cursor's update sends again), dedupable by ID.
func TestKillAndRestart(t *testing.T) {
	if testing.Short() {
		t.Skip("starts processes")
	}
	const batch = 64
	for _, kind := range []string{"file", "webhook", "tcp", "udp"} {
		t.Run(kind, func(t *testing.T) {
			rcv := startReceiver(t, kind)
			path := filepath.Join(t.TempDir(), "audit.db")
			s, err := audit.New(audit.WithSQLite(path), audit.WithLogger(testutil.Discard()))
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
					e := audit.Entry{EventType: "load", Actor: "a", RequestID: strconv.Itoa(i),
						Details: map[string]any{"n": json.Number("12345678901234567890"), "s": `q"\]` + "\n"}}
					if !assert.NoError(t, s.Record(ctx, e)) {
						return
					}
				}
			}()
			env := []string{"AUDITEXPORT_DB=" + path, "AUDITEXPORT_SINK=" + kind, "AUDITEXPORT_TARGET=" + rcv.target, "AUDITEXPORT_BATCH=" + strconv.Itoa(batch)}
			rng := rand.New(rand.NewPCG(7, 8))
			for k := 0; k < 20; k++ {
				before := len(rcv.ids())
				cmd := startChild(t, env...)
				testutil.WaitFor(t, time.Minute, func() bool { return len(rcv.ids()) > before }, "the exporter delivers")
				time.Sleep(time.Duration(rng.IntN(20)) * time.Millisecond) // a random point of its work
				require.NoError(t, cmd.Process.Kill())
				_ = cmd.Wait()
			}
			close(stop)
			<-loaded
			require.NoError(t, s.Flush(ctx))
			cmd := startChild(t, append(env, "AUDITEXPORT_DRAIN=1")...)
			require.NoError(t, cmd.Wait(), "the last exporter drains and exits")

			all, err := s.List(ctx, audit.Filter{Limit: audit.MaxListLimit})
			require.NoError(t, err)
			require.Less(t, len(all), audit.MaxListLimit)
			var want []int64
			for _, e := range all {
				want = append(want, e.ID)
			}
			// Syslog has no answer: the last messages may still be on
			// their way to the receiver after the exporter has exited.
			testutil.WaitFor(t, time.Minute, func() bool { return slices.Contains(rcv.ids(), want[len(want)-1]) }, "the receiver reads the last entry")
			got := rcv.ids()
			checkDelivery(t, got, want, batch)
			t.Logf("%d entries, %d deliveries (%d again after kills)", len(want), len(got), len(got)-len(want))
		})
	}
}

// checkDelivery asserts that got, the IDs in the order they arrived, hold
// every ID of want in order, and that an ID arrives again only within
// one batch of the highest ID before it.
func checkDelivery(t *testing.T, got, want []int64, batch int) {
	t.Helper()
	seen := map[int64]bool{}
	var first []int64
	var top int64
	for i, id := range got {
		if id <= top {
			require.True(t, seen[id], "ID %d arrives after %d (delivery %d) and never came before: out of order", id, top, i)
			require.Less(t, top-id, int64(batch), "ID %d arrives again after %d: more than one batch back", id, top)
			continue
		}
		seen[id] = true
		first = append(first, id)
		top = id
	}
	require.Equal(t, want, first, "every entry, in ID order")
}

func startChild(t *testing.T, env ...string) *exec.Cmd {
	t.Helper()
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(append(os.Environ(), helperRoleEnv+"=export"), env...)
	cmd.Stderr = os.Stderr
	require.NoError(t, cmd.Start())
	return cmd
}

// TestSinkOutage takes the webhook down while entries are recorded:
// Record and Flush go on as before, the exporter counts its failures and
// its lag grows, and once the receiver is back everything arrives, in
// order.
func TestSinkOutage(t *testing.T) {
	var mu sync.Mutex
	isDown := true
	down := func() bool { mu.Lock(); defer mu.Unlock(); return isDown }
	rcv := startWebhookReceiver(t, down)
	path := filepath.Join(t.TempDir(), "audit.db")
	s, err := audit.New(audit.WithSQLite(path), audit.WithLogger(testutil.Discard()))
	require.NoError(t, err)
	defer s.Close()
	db, err := sql.Open("sqlite3", path+"?_busy_timeout=5000")
	require.NoError(t, err)
	defer db.Close()
	sink, err := NewWebhookSink(rcv.target, testSecret, WebhookOptions{})
	require.NoError(t, err)
	defer sink.Close()
	x, err := New(Config{Source: s, Sink: sink, DB: db, Consumer: "hook", BatchSize: 100,
		PollInterval: 10 * time.Millisecond, MaxBackoff: 200 * time.Millisecond, Logger: testutil.Discard()})
	require.NoError(t, err)

	ctx, cancel := context.WithCancel(context.Background())
	ran := make(chan error, 1)
	go func() { ran <- x.Run(ctx) }()
	const n = 2000
	for i := 0; i < n; i++ {
		require.NoError(t, s.Record(ctx, audit.Entry{EventType: "e", Actor: "a", RequestID: strconv.Itoa(i)}))
	}
	require.NoError(t, s.Flush(ctx), "Record and Flush are untouched by the outage")
	testutil.WaitFor(t, time.Minute, func() bool { return x.Stats().Failures >= 3 }, "the exporter retries")
	assert.Empty(t, rcv.ids())
	lag, err := x.Lag(ctx)
	require.NoError(t, err)
	assert.Equal(t, int64(n), lag)
	var urlErr *StatusError
	require.ErrorAs(t, x.LastError(), &urlErr)
	assert.Equal(t, http.StatusServiceUnavailable, urlErr.Code)

	mu.Lock()
	isDown = false
	mu.Unlock()
	testutil.WaitFor(t, time.Minute, func() bool {
		lag, err := x.Lag(ctx)
		return err == nil && lag == 0
	}, "the exporter drains")
	cancel()
	require.NoError(t, <-ran)
	var want []int64
	for i := int64(1); i <= n; i++ {
		want = append(want, i)
	}
	assert.Equal(t, want, rcv.ids(), "each once, in order")
	st := x.Stats()
	assert.Equal(t, int64(n), st.Cursor)
	assert.Equal(t, uint64(n), st.Exported, "nothing sent twice without a kill")
	assert.GreaterOrEqual(t, st.Batches, uint64(n/100), "batches of at most 100")
}

// TestRecordCarriesTheStoredEntry: an exported record holds every field
// as stored, Details byte for byte, in a fixed key order.
func TestRecordCarriesTheStoredEntry(t *testing.T) {
	path := filepath.Join(t.TempDir(), "audit.db")
	s, err := audit.New(audit.WithSQLite(path), audit.WithLogger(testutil.Discard()))
	require.NoError(t, err)
	defer s.Close()
	ctx := context.Background()
	when := time.Date(2026, 3, 4, 5, 6, 7, 89, time.UTC)
	require.NoError(t, s.Record(ctx, audit.Entry{Time: when, EventType: "user.login", Actor: "alice", Resource: "/x",
		Outcome: "success", RequestID: "r1", Details: map[string]any{"big": json.Number("1234567890123456789"), "z": "<&>"}}))
	require.NoError(t, s.Record(ctx, audit.Entry{Time: when, EventType: "e", Actor: "bob"}))
	require.NoError(t, s.Flush(ctx))
	es, err := s.List(ctx, audit.Filter{})
	require.NoError(t, err)
	db, err := sql.Open("sqlite3", path)
	require.NoError(t, err)
	defer db.Close()
	var stored string
	require.NoError(t, db.QueryRow("SELECT details FROM audit_entries WHERE id = ?", es[0].ID).Scan(&stored))

	r, err := FromEntry(es[0])
	require.NoError(t, err)
	assert.Equal(t, stored, string(r.Details), "the stored Details bytes")
	b, err := json.Marshal(r)
	require.NoError(t, err)
	assert.Equal(t, `{"id":1,"time":"2026-03-04T05:06:07.000000089Z","event_type":"user.login","actor":"alice","resource":"/x",`+
		`"outcome":"success","request_id":"r1","details":`+stored+`,"prev_hash":"","hash":"`+es[0].Hash+`"}`, string(b))
	r2, err := FromEntry(es[1])
	require.NoError(t, err)
	assert.Equal(t, "null", string(r2.Details))
	assert.Equal(t, es[0].Hash, r2.PrevHash, "the chain link travels with the record")
}

// TestConfigErrors: each bad Config is refused, naming the field.
func TestConfigErrors(t *testing.T) {
	db, err := sql.Open("sqlite3", filepath.Join(t.TempDir(), "c.db"))
	require.NoError(t, err)
	defer db.Close()
	s, err := audit.New(audit.WithSQLite(filepath.Join(t.TempDir(), "a.db")))
	require.NoError(t, err)
	defer s.Close()
	sink, err := NewFileSink(filepath.Join(t.TempDir(), "o.jsonl"), FileOptions{})
	require.NoError(t, err)
	defer sink.Close()
	ok := Config{Source: s, Sink: sink, DB: db, Consumer: "c"}
	for _, tc := range []struct {
		field string
		edit  func(*Config)
	}{
		{"Source", func(c *Config) { c.Source = nil }},
		{"Sink", func(c *Config) { c.Sink = nil }},
		{"DB", func(c *Config) { c.DB = nil }},
		{"Consumer", func(c *Config) { c.Consumer = "" }},
		{"BatchSize", func(c *Config) { c.BatchSize = audit.MaxListLimit + 1 }},
		{"PollInterval", func(c *Config) { c.PollInterval = -1 }},
		{"MaxBackoff", func(c *Config) { c.MaxBackoff = time.Millisecond }},
	} {
		c := ok
		tc.edit(&c)
		_, err := New(c)
		assert.ErrorContains(t, err, "Config."+tc.field)
	}
	_, err = New(ok)
	assert.NoError(t, err)

	_, err = NewWebhookSink("ftp://x", testSecret, WebhookOptions{})
	assert.ErrorContains(t, err, "URL")
	_, err = NewWebhookSink("http://127.0.0.1:1", []byte("short"), WebhookOptions{})
	assert.ErrorContains(t, err, "secret")
	_, err = NewSyslogSink("unix", "127.0.0.1:1", SyslogOptions{})
	assert.ErrorContains(t, err, "network")
	_, err = NewSyslogSink("tcp", "127.0.0.1:1", SyslogOptions{SDID: "bad id"})
	assert.ErrorContains(t, err, "SDID")
	_, err = NewFileSink(filepath.Join(t.TempDir(), "missing", "o.jsonl"), FileOptions{})
	assert.ErrorContains(t, err, "missing")
}
