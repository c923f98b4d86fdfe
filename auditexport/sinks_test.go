package auditexport

import (
	"bytes"
	"context"
	"database/sql"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/cleveragents/audit"
	"github.com/cleveragents/audit/internal/testutil"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"gorm.io/driver/postgres"
	"gorm.io/gorm"
	"gorm.io/gorm/logger"
)

// TestSyslogFormat: one message of RFC 5424, with '"', '\' and ']'
// escaped in PARAM-VALUEs, control characters written as \u00XX, a MSGID
// of printable ASCII, and the record's JSON as MSG.
func TestSyslogFormat(t *testing.T) {
	s, err := NewSyslogSink("udp", "127.0.0.1:514", SyslogOptions{Hostname: "h ost", AppName: "app"})
	require.NoError(t, err)
	r := Record{ID: 7, Time: "2026-01-02T03:04:05.123456789Z", EventType: "user login\x1b", Actor: `a"b\c]d`,
		Resource: "line\nbreak\u0085", Outcome: "denied", RequestID: "é", Details: []byte(`{"k":"v"}`), PrevHash: "aa", Hash: "bb"}
	var b bytes.Buffer
	require.NoError(t, s.format(&b, &r))
	want := `<109>1 2026-01-02T03:04:05.123456Z h_ost app - user_login_ [audit@32473 id="7" time="2026-01-02T03:04:05.123456789Z"` +
		` event_type="user login\u001b" actor="a\"b\\c\]d" resource="line\u000abreak\u0085" outcome="denied" request_id="é"` +
		` prev_hash="aa" hash="bb"] ` + "\xef\xbb\xbf" +
		`{"id":7,"time":"2026-01-02T03:04:05.123456789Z","event_type":"user login\u001b","actor":"a\"b\\c]d","resource":"line\nbreak\u0085",` +
		`"outcome":"denied","request_id":"é","details":{"k":"v"},"prev_hash":"aa","hash":"bb"}`
	assert.Equal(t, want, b.String())
	for _, c := range b.String() {
		assert.False(t, c < 0x20 || c == 0x7f || (c >= 0x80 && c < 0xa0), "control character %U in the message", c)
	}
	r.Outcome = "success"
	require.NoError(t, s.format(&b, &r))
	assert.True(t, strings.HasPrefix(b.String(), "<110>1 "), "informational (13*8+6)")
}

// TestFileSinkRotatesAndRepairs: the file rotates by size into PATH.1,
// PATH.2, ... keeping MaxBackups, and a line half-written by a process
// that died is cut off when the sink opens the file again.
func TestFileSinkRotatesAndRepairs(t *testing.T) {
	path := filepath.Join(t.TempDir(), "out.jsonl")
	s, err := NewFileSink(path, FileOptions{MaxSize: 1000, MaxBackups: 2})
	require.NoError(t, err)
	ctx := context.Background()
	rec := func(id int64) Record {
		return Record{ID: id, Time: "2026-01-02T03:04:05.000000000Z", EventType: "e", Actor: "a", Details: []byte("null"), Hash: strings.Repeat("f", 64)}
	}
	for id := int64(1); id <= 20; id += 2 {
		require.NoError(t, s.Write(ctx, []Record{rec(id), rec(id + 1)}))
	}
	require.NoError(t, s.Close())
	backups, err := Backups(path)
	require.NoError(t, err)
	require.Len(t, backups, 2, "MaxBackups")
	ids := readJSONL(t, path, true)
	assert.Equal(t, int64(20), ids[len(ids)-1])
	for i := 1; i < len(ids); i++ {
		require.Equal(t, ids[i-1]+1, ids[i], "whole batches, in order, across the files")
	}
	for _, name := range append(backups, path) {
		fi, err := os.Stat(name)
		require.NoError(t, err)
		assert.LessOrEqual(t, fi.Size(), int64(1000), name)
	}

	f, err := os.OpenFile(path, os.O_APPEND|os.O_WRONLY, 0)
	require.NoError(t, err)
	_, err = f.WriteString(`{"id":21,"time":"2026`) // the process died here
	require.NoError(t, err)
	require.NoError(t, f.Close())
	s, err = NewFileSink(path, FileOptions{MaxSize: 1000, MaxBackups: 2})
	require.NoError(t, err)
	require.NoError(t, s.Write(ctx, []Record{rec(21)}))
	require.NoError(t, s.Close())
	ids = readJSONL(t, path, true)
	assert.Equal(t, int64(21), ids[len(ids)-1], "the partial line is gone, the batch written whole")
}

// TestCursorOnBothBackends keeps a cursor in SQLite and in PostgreSQL
// (through GORM's *sql.DB): it starts at 0, persists across exporters,
// and never moves back.
func TestCursorOnBothBackends(t *testing.T) {
	dbs := map[string]func(t *testing.T) *sql.DB{
		"sqlite": func(t *testing.T) *sql.DB {
			db, err := sql.Open("sqlite3", filepath.Join(t.TempDir(), "c.db"))
			require.NoError(t, err)
			t.Cleanup(func() { _ = db.Close() })
			return db
		},
		"postgres": func(t *testing.T) *sql.DB {
			dsn := os.Getenv("AUDIT_TEST_POSTGRES_DSN")
			if dsn == "" {
				if os.Getenv("CI") == "true" {
					t.Fatal("AUDIT_TEST_POSTGRES_DSN is not set")
				}
				t.Skip("set AUDIT_TEST_POSTGRES_DSN to run the PostgreSQL cases")
			}
			gdb, err := gorm.Open(postgres.Open(dsn), &gorm.Config{Logger: logger.Discard})
			require.NoError(t, err)
			db, err := gdb.DB()
			require.NoError(t, err)
			t.Cleanup(func() {
				_, _ = db.Exec("DELETE FROM " + CursorTable + " WHERE consumer = 'cursor-test'")
				_ = db.Close()
			})
			return db
		},
	}
	for _, name := range []string{"sqlite", "postgres"} {
		t.Run(name, func(t *testing.T) {
			db := dbs[name](t)
			ctx := context.Background()
			c := newCursorStore(db, "cursor-test", audit.DefaultTable)
			pos, err := c.load(ctx)
			require.NoError(t, err)
			assert.Zero(t, pos)
			require.NoError(t, c.save(ctx, 40))
			require.NoError(t, c.save(ctx, 30), "an older position is not an error")
			other := newCursorStore(db, "cursor-test", "other_table")
			require.NoError(t, other.save(ctx, 5))
			again := newCursorStore(db, "cursor-test", audit.DefaultTable)
			pos, err = again.load(ctx)
			require.NoError(t, err)
			assert.Equal(t, int64(40), pos, "kept, and never moved back")
			pos, err = other.load(ctx)
			require.NoError(t, err)
			assert.Equal(t, int64(5), pos, "one cursor per consumer and table")
		})
	}
}

// TestRunEndsWhenSourceCloses: an exporter whose service shuts down
// returns an error wrapping audit.ErrClosed instead of retrying for ever.
func TestRunEndsWhenSourceCloses(t *testing.T) {
	path := filepath.Join(t.TempDir(), "audit.db")
	s, err := audit.New(audit.WithSQLite(path))
	require.NoError(t, err)
	db, err := sql.Open("sqlite3", path+"?_busy_timeout=5000")
	require.NoError(t, err)
	defer db.Close()
	sink, err := NewFileSink(filepath.Join(t.TempDir(), "o.jsonl"), FileOptions{})
	require.NoError(t, err)
	defer sink.Close()
	x, err := New(Config{Source: s, Sink: sink, DB: db, Consumer: "c", PollInterval: time.Millisecond})
	require.NoError(t, err)
	require.NoError(t, s.Close())
	err = x.Run(context.Background())
	assert.ErrorIs(t, err, audit.ErrClosed)
}

// TestSyslogReconnects stops the TCP receiver (connections closed, the
// port refusing) while entries are recorded, then serves the same port
// again: the sink dials again and every entry arrives, in order, with
// duplicates only from the batch that was in flight.
func TestSyslogReconnects(t *testing.T) {
	var l idsLog
	addr, stop := listenTCP(t, "127.0.0.1:0", &l)
	path := filepath.Join(t.TempDir(), "audit.db")
	s, err := audit.New(audit.WithSQLite(path), audit.WithLogger(testutil.Discard()))
	require.NoError(t, err)
	defer s.Close()
	db, err := sql.Open("sqlite3", path+"?_busy_timeout=5000")
	require.NoError(t, err)
	defer db.Close()
	sink, err := NewSyslogSink("tcp", addr, SyslogOptions{})
	require.NoError(t, err)
	defer sink.Close()
	const batch = 50
	x, err := New(Config{Source: s, Sink: sink, DB: db, Consumer: "syslog", BatchSize: batch,
		PollInterval: 5 * time.Millisecond, MaxBackoff: 200 * time.Millisecond, Logger: testutil.Discard()})
	require.NoError(t, err)
	ctx, cancel := context.WithCancel(context.Background())
	ran := make(chan error, 1)
	go func() { ran <- x.Run(ctx) }()
	record := func(from, to int) {
		for i := from; i < to; i++ {
			require.NoError(t, s.Record(ctx, audit.Entry{EventType: "e", Actor: "a", RequestID: strconv.Itoa(i)}))
		}
		require.NoError(t, s.Flush(ctx))
	}
	record(0, 200)
	testutil.WaitFor(t, time.Minute, func() bool { return len(l.get()) >= 200 }, "the first entries")
	stop()
	record(200, 400)
	testutil.WaitFor(t, time.Minute, func() bool { return x.Stats().Failures >= 2 }, "failures while the receiver is away")
	_, _ = listenTCP(t, addr, &l)
	testutil.WaitFor(t, time.Minute, func() bool {
		lag, err := x.Lag(ctx)
		return err == nil && lag == 0
	}, "the sink reconnects and drains")
	// Syslog over TCP has no answer: the last messages written may still be
	// on their way to the receiver when the cursor has moved past them.
	testutil.WaitFor(t, time.Minute, func() bool { return slices.Contains(l.get(), 400) }, "the receiver reads the last entry")
	cancel()
	require.NoError(t, <-ran)
	var want []int64
	for i := int64(1); i <= 400; i++ {
		want = append(want, i)
	}
	checkDelivery(t, l.get(), want, batch)
}
