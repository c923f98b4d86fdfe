package auditexport

import (
	"bufio"
	"bytes"
	"context"
	"crypto/hmac"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
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

func startReceiver(t *testing.T, kind string) receiver {
	switch kind {
	case "file":
		path := filepath.Join(t.TempDir(), "out.jsonl")
		return receiver{kind: kind, target: path, ids: func() []int64 { return readJSONL(t, path, false) }}
	case "webhook":
		return startWebhookReceiver(t, nil)
	case "tcp":
		return startTCPReceiver(t)
	case "udp":
		return startUDPReceiver(t)
	}
	t.Fatalf("unknown sink %q", kind)
	return receiver{}
}

// readJSONL returns the IDs in a file sink's files, oldest first. With
// strict, every line must be a whole record; without, a line being
// written is skipped.
func readJSONL(t *testing.T, path string, strict bool) []int64 {
	backups, err := Backups(path)
	require.NoError(t, err)
	var ids []int64
	for _, name := range append(backups, path) {
		b, err := os.ReadFile(name)
		if errors.Is(err, os.ErrNotExist) {
			continue // rotating
		}
		require.NoError(t, err)
		for line := range bytes.Lines(b) {
			var r Record
			if err := json.Unmarshal(line, &r); err != nil || !bytes.HasSuffix(line, []byte("\n")) {
				if strict {
					t.Fatalf("%s: bad line %q: %v", name, line, err)
				}
				continue
			}
			ids = append(ids, r.ID)
		}
	}
	return ids
}

// idsLog is what a receiver got, in order.
type idsLog struct {
	mu  sync.Mutex
	ids []int64
	raw [][]byte // syslog: each message
}

func (l *idsLog) add(raw []byte, ids ...int64) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.ids = append(l.ids, ids...)
	if raw != nil {
		l.raw = append(l.raw, raw)
	}
}

func (l *idsLog) get() []int64 {
	l.mu.Lock()
	defer l.mu.Unlock()
	return append([]int64(nil), l.ids...)
}

// startWebhookReceiver serves the webhook: it checks each request's
// signature, type and idempotency key, and answers 503 while down says so.
func startWebhookReceiver(t *testing.T, down func() bool) receiver {
	var l idsLog
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, err := io.ReadAll(r.Body)
		if err != nil {
			return // the sender died mid-request
		}
		if down != nil && down() {
			http.Error(w, "down for maintenance", http.StatusServiceUnavailable)
			return
		}
		ok := assert.Equal(t, NDJSONContentType, r.Header.Get("Content-Type")) &&
			assert.True(t, hmac.Equal([]byte(Sign(testSecret, body)), []byte(r.Header.Get(SignatureHeader))), "signature")
		var ids []int64
		for line := range bytes.Lines(body) {
			var rec Record
			ok = ok && assert.NoError(t, json.Unmarshal(line, &rec))
			ids = append(ids, rec.ID)
		}
		ok = ok && assert.NotEmpty(t, ids) &&
			assert.Equal(t, fmt.Sprintf("audit-%d-%d", ids[0], ids[len(ids)-1]), r.Header.Get(IdempotencyKeyHeader))
		if !ok {
			http.Error(w, "bad request", http.StatusBadRequest)
			return
		}
		l.add(nil, ids...)
	}))
	t.Cleanup(srv.Close)
	return receiver{kind: "webhook", target: srv.URL, ids: l.get}
}

// syslogID returns the id parameter of an RFC 5424 message of the sink.
func syslogID(t *testing.T, msg []byte) int64 {
	const marker = `[` + DefaultSDID + ` id="`
	i := bytes.Index(msg, []byte(marker))
	require.GreaterOrEqual(t, i, 0, "no structured data in %q", msg)
	rest := msg[i+len(marker):]
	j := bytes.IndexByte(rest, '"')
	id, err := strconv.ParseInt(string(rest[:j]), 10, 64)
	require.NoError(t, err)
	return id
}

// startTCPReceiver reads octet-counted frames; an incomplete last frame
// (the sender died in it) is dropped.
func startTCPReceiver(t *testing.T) receiver {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	var l idsLog
	var wg sync.WaitGroup
	var mu sync.Mutex
	var conns []net.Conn
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			mu.Lock()
			conns = append(conns, c)
			mu.Unlock()
			wg.Add(1)
			go func() {
				defer wg.Done()
				defer c.Close()
				br := bufio.NewReader(c)
				for {
					n, err := br.ReadString(' ')
					if err != nil {
						return
					}
					size, err := strconv.Atoi(strings.TrimSuffix(n, " "))
					if !assert.NoError(t, err, "frame length %q", n) {
						return
					}
					msg := make([]byte, size)
					if _, err := io.ReadFull(br, msg); err != nil {
						return
					}
					l.add(msg, syslogID(t, msg))
				}
			}()
		}
	}()
	t.Cleanup(func() {
		_ = ln.Close()
		mu.Lock()
		for _, c := range conns {
			_ = c.Close()
		}
		mu.Unlock()
		wg.Wait()
	})
	return receiver{kind: "tcp", target: ln.Addr().String(), ids: l.get}
}

// startUDPReceiver reads one message a datagram.
func startUDPReceiver(t *testing.T) receiver {
	pc, err := net.ListenPacket("udp", "127.0.0.1:0")
	require.NoError(t, err)
	if u, ok := pc.(*net.UDPConn); ok {
		_ = u.SetReadBuffer(8 << 20)
	}
	var l idsLog
	done := make(chan struct{})
	go func() {
		defer close(done)
		buf := make([]byte, 1<<16)
		for {
			n, _, err := pc.ReadFrom(buf)
			if err != nil {
				return
			}
			msg := append([]byte(nil), buf[:n]...)
			l.add(msg, syslogID(t, msg))
		}
	}()
	t.Cleanup(func() { _ = pc.Close(); <-done })
	return receiver{kind: "udp", target: pc.LocalAddr().String(), ids: l.get}
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
	assert.Equal(t, Stats{Cursor: n, Exported: n, Batches: n / 100, Failures: x.Stats().Failures}, x.Stats())
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
