package auditexport

import (
	"bufio"
	"bytes"
	"crypto/hmac"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// The sinks' far ends on 127.0.0.1, as the tests and benchmarks use them.

func startReceiver(t testing.TB, kind string) receiver {
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
func readJSONL(t testing.TB, path string, strict bool) []int64 {
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
func startWebhookReceiver(t testing.TB, down func() bool) receiver {
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
func syslogID(t testing.TB, msg []byte) int64 {
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
func startTCPReceiver(t testing.TB) receiver {
	var l idsLog
	addr, _ := listenTCP(t, "127.0.0.1:0", &l)
	return receiver{kind: "tcp", target: addr, ids: l.get}
}

// listenTCP serves the syslog receiver on addr, adding to l, until stop
// is called or the test ends.
func listenTCP(t testing.TB, addr string, l *idsLog) (string, func()) {
	ln, err := net.Listen("tcp", addr)
	require.NoError(t, err)
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
	var once sync.Once
	stop := func() {
		once.Do(func() {
			_ = ln.Close()
			mu.Lock()
			for _, c := range conns {
				_ = c.Close()
			}
			mu.Unlock()
			wg.Wait()
		})
	}
	t.Cleanup(stop)
	return ln.Addr().String(), stop
}

// startUDPReceiver reads one message a datagram.
func startUDPReceiver(t testing.TB) receiver {
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
