package audithttp

import (
	"crypto/rand"
	"encoding/hex"
	"maps"
	"net/http"
	"strings"
	"unicode/utf8"

	"github.com/cleveragents/audit"
)

// Limits of the request's fields that the root package does not fix, in
// bytes. The path is bounded by [audit.MaxResourceLen] (it is the entry's
// Resource), and the host, the remote address and the actor by
// [audit.MaxFieldLen].
const (
	MaxMethodLen = 64   // Details "method": longer than any registered method
	MaxQueryLen  = 4096 // Details "query"
)

// Truncated ends a value that was cut to its limit. An escaped path is
// ASCII, and so is any method Go's server accepts, so in those it cannot be
// part of the value; Details "truncated" is the mark for every field.
const Truncated = "…"

// maxRequestIDLen bounds an incoming X-Request-ID; a longer one is replaced.
const maxRequestIDLen = 128

// fields are what an entry records of a request, each clipped to its own
// limit so that none can push another out.
type fields struct {
	actor, path, method, host, query, remoteAddr string
	truncated                                    map[string]any // field name: its length before it was cut
}

// newFields clips the request's fields and the actor's name (empty means
// DefaultActor).
func newFields(r *http.Request, actor string) *fields {
	f := &fields{}
	f.actor = f.clip("actor", actor, audit.MaxFieldLen)
	if f.actor == "" {
		f.actor = DefaultActor
	}
	f.path = f.clip("path", r.URL.EscapedPath(), audit.MaxResourceLen)
	f.method = f.clip("method", r.Method, MaxMethodLen)
	f.host = f.clip("host", r.Host, audit.MaxFieldLen)
	f.query = f.clip("query", r.URL.RawQuery, MaxQueryLen)
	f.remoteAddr = f.clip("remote_addr", r.RemoteAddr, audit.MaxFieldLen)
	return f
}

// details returns a new Details map with the request's fields.
func (f *fields) details() map[string]any {
	d := map[string]any{"method": f.method, "remote_addr": f.remoteAddr}
	if f.host != "" {
		d["host"] = f.host
	}
	if f.query != "" {
		d["query"] = f.query
	}
	if f.truncated != nil {
		d["truncated"] = maps.Clone(f.truncated) // each entry its own: a Recorder may keep the map
	}
	return d
}

// clip makes s acceptable to the root package's validation (valid UTF-8,
// no NUL byte) and at most n bytes long: a longer s keeps what fits before
// Truncated, cut at a rune boundary, and is noted as truncated under name.
func (f *fields) clip(name, s string, n int) string {
	orig := len(s)
	s = strings.ToValidUTF8(s, "\uFFFD")
	s = strings.ReplaceAll(s, "\x00", "")
	if len(s) <= n {
		return s
	}
	if f.truncated == nil {
		f.truncated = map[string]any{}
	}
	f.truncated[name] = orig
	n -= len(Truncated)
	for n > 0 && !utf8.RuneStart(s[n]) {
		n--
	}
	return s[:n] + Truncated
}

// requestID returns the incoming ID if it is acceptable, or a new one.
func requestID(in string) string {
	if validRequestID(in) {
		return in
	}
	var b [16]byte
	_, _ = rand.Read(b[:]) // crypto/rand.Read never fails (Go 1.24)
	return hex.EncodeToString(b[:])
}

// validRequestID accepts 1 to 128 visible ASCII characters: an ID that
// the log and any downstream header can carry unchanged.
func validRequestID(s string) bool {
	if s == "" || len(s) > maxRequestIDLen {
		return false
	}
	for i := 0; i < len(s); i++ {
		if s[i] < 0x21 || s[i] > 0x7e {
			return false
		}
	}
	return true
}
