// Package audithttp is HTTP middleware that records one audit entry per
// request.
//
//	svc, _ := audit.New(audit.WithSQLite("audit.db"))
//	mux := http.NewServeMux()
//	...
//	handler := audithttp.Middleware(svc,
//		audithttp.WithActor(func(r *http.Request) string { return userFrom(r) }),
//		audithttp.WithSkipPaths("/healthz"),
//	)(mux)
//
// Each entry has EventType "http.request" ([WithEventType]), the Actor that
// [WithActor]'s function names ("anonymous" without one), Resource "METHOD
// path" (the escaped path, without the query), the Outcome of the response
// status (see [OutcomeOf]), the request ID, and Details:
//
//	status       the response status (200 when the handler wrote none)
//	duration_ms  how long the handler ran, in milliseconds
//	bytes        the response body bytes written
//	remote_addr  the client's address, as http.Request.RemoteAddr
//
// The request ID is the request's X-Request-ID header when it is 1 to 128
// visible ASCII characters, and otherwise a new random one (16 bytes from
// crypto/rand, in hex); the middleware sets it on the response's
// X-Request-ID header. Before calling the next handler it puts the actor
// and the request ID into the request's context ([audit.ContextWithActor],
// [audit.ContextWithRequestID]), so that entries recorded downstream, such
// as those of the gormaudit plugin or any Record with an empty Actor or
// RequestID, correlate with the request.
//
// The entry is recorded after the handler returns, under the request's
// context without its cancellation (a client that hangs up does not lose
// the entry), so the middleware adds no more to a request than one Record.
// If the handler panics, the entry is recorded with Outcome "failure" and
// Details "panic": true, and the panic goes on.
//
// # When Record fails
//
// By default, a refused Record (a full queue under [audit.OverflowFail], a
// closed service) does not fail the request: it is logged ([WithLogger])
// and counted ([Auditor.Dropped]). With [WithFailClosed], a service that
// must not act unaudited makes the middleware record an entry with Outcome
// "started" (Details: remote_addr) before it calls the next handler, and
// answer 503 Service Unavailable without calling it when that Record
// fails; the entry of the finished request follows as usual, so such a
// request has two entries with the same request ID.
package audithttp

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"strings"
	"sync/atomic"
	"time"
	"unicode/utf8"

	"github.com/cleveragents/audit"
)

// Defaults and names.
const (
	DefaultEventType = "http.request" // WithEventType
	DefaultActor     = "anonymous"    // WithActor
	// RequestIDHeader is the header the request ID is read from and
	// written to.
	RequestIDHeader = "X-Request-ID"
)

// Outcomes of a request (see OutcomeOf).
const (
	OutcomeSuccess     = "success"      // 1xx, 2xx, 3xx
	OutcomeClientError = "client_error" // 4xx but 401 and 403
	OutcomeDenied      = "denied"       // 401, 403
	OutcomeFailure     = "failure"      // 5xx, or a panicking handler
	OutcomeStarted     = "started"      // WithFailClosed's entry before the handler runs
)

// Limits of the entry's fields in the root package's validation.
const (
	maxShortField   = 256  // Actor
	maxResource     = 1024 // Resource
	maxRequestIDLen = 128  // an incoming X-Request-ID longer than this is replaced
)

// OutcomeOf returns the Outcome of a response status: "success" for 1xx,
// 2xx and 3xx, "denied" for 401 and 403, "client_error" for any other 4xx,
// and "failure" for 5xx and above.
func OutcomeOf(status int) string {
	switch {
	case status == http.StatusUnauthorized || status == http.StatusForbidden:
		return OutcomeDenied
	case status >= 500:
		return OutcomeFailure
	case status >= 400:
		return OutcomeClientError
	}
	return OutcomeSuccess
}

// Auditor is the middleware with its counters. Create it with [New]; its
// methods are safe for concurrent use.
type Auditor struct {
	svc     *audit.AuditService
	cfg     config
	dropped atomic.Uint64 // Record calls that failed
}

// Middleware returns the middleware that records every request to svc:
// New(svc, opts...).Handler. Like New, it panics on an invalid option.
func Middleware(svc *audit.AuditService, opts ...Option) func(http.Handler) http.Handler {
	return New(svc, opts...).Handler
}

// New returns an Auditor recording to svc. It panics if svc is nil or an
// option is invalid, as http.ServeMux does for a bad pattern: both are
// programming errors found at start-up.
func New(svc *audit.AuditService, opts ...Option) *Auditor {
	cfg := config{
		eventType: DefaultEventType,
		actor:     func(*http.Request) string { return DefaultActor },
		skip:      map[string]bool{},
		logger:    slog.Default(),
	}
	var errs []error
	if svc == nil {
		errs = append(errs, errors.New("audithttp: New: nil AuditService"))
	}
	for _, o := range opts {
		if o == nil {
			errs = append(errs, errors.New("audithttp: New: nil Option"))
			continue
		}
		if err := o(&cfg); err != nil {
			errs = append(errs, err)
		}
	}
	if err := errors.Join(errs...); err != nil {
		panic(err)
	}
	return &Auditor{svc: svc, cfg: cfg}
}

// Dropped returns how many Record calls failed since New: entries lost,
// or, with WithFailClosed, requests refused with 503. Each is also logged.
func (a *Auditor) Dropped() uint64 { return a.dropped.Load() }

// Handler returns next wrapped so that every request not skipped is
// recorded.
func (a *Auditor) Handler(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if a.cfg.skip[r.URL.Path] {
			next.ServeHTTP(w, r)
			return
		}
		start := time.Now()
		id := requestID(r.Header.Get(RequestIDHeader))
		w.Header().Set(RequestIDHeader, id)
		actor := clip(a.cfg.actor(r), maxShortField)
		if actor == "" {
			actor = DefaultActor
		}
		ctx := audit.ContextWithRequestID(audit.ContextWithActor(r.Context(), actor), id)
		r = r.WithContext(ctx)
		base := audit.Entry{
			EventType: a.cfg.eventType,
			Actor:     actor,
			Resource:  clip(r.Method+" "+r.URL.EscapedPath(), maxResource),
			RequestID: id,
		}

		if a.cfg.failClosed {
			e := base
			e.Outcome = OutcomeStarted
			e.Details = map[string]any{"remote_addr": r.RemoteAddr}
			// The request's own ctx: under OverflowBlock, wait for room
			// only as long as the client does.
			if err := a.svc.Record(ctx, e); err != nil {
				a.refused(e, err)
				http.Error(w, "audit log unavailable", http.StatusServiceUnavailable)
				return
			}
		}

		rw := &responseWriter{ResponseWriter: w}
		finished := false
		defer func() {
			// Runs on a panic too, which then goes on: the entry of a
			// request whose handler panicked is not lost.
			e := base
			status := rw.status
			switch {
			case status == 0 && rw.hijacked:
				status = http.StatusSwitchingProtocols
			case status == 0 && !finished:
				status = http.StatusInternalServerError
			case status == 0:
				status = http.StatusOK
			}
			e.Outcome = OutcomeOf(status)
			e.Details = map[string]any{
				"status":      status,
				"duration_ms": float64(time.Since(start).Microseconds()) / 1000,
				"bytes":       rw.bytes,
				"remote_addr": r.RemoteAddr,
			}
			if rw.hijacked {
				e.Details["hijacked"] = true
			}
			if !finished {
				e.Outcome = OutcomeFailure
				e.Details["panic"] = true
			}
			if err := a.svc.Record(context.WithoutCancel(ctx), e); err != nil {
				a.refused(e, err)
			}
		}()
		next.ServeHTTP(rw, r)
		finished = true
	})
}

// refused counts and logs an entry that Record refused.
func (a *Auditor) refused(e audit.Entry, err error) {
	a.dropped.Add(1)
	a.cfg.logger.Warn("audithttp: request not audited",
		"request_id", e.RequestID, "resource", e.Resource, "actor", e.Actor, "outcome", e.Outcome, "err", err)
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

// clip makes s acceptable to the root package's validation: valid UTF-8,
// no NUL byte, at most n bytes (cut at a rune boundary).
func clip(s string, n int) string {
	s = strings.ToValidUTF8(s, "\uFFFD")
	s = strings.ReplaceAll(s, "\x00", "")
	if len(s) <= n {
		return s
	}
	for n > 0 && !utf8.RuneStart(s[n]) {
		n--
	}
	return s[:n]
}

// An Option configures an Auditor in New.
type Option func(*config) error

type config struct {
	eventType  string
	actor      func(*http.Request) string
	skip       map[string]bool // exact paths
	logger     *slog.Logger
	failClosed bool
}

// WithEventType sets the entries' EventType. Defaults to "http.request".
func WithEventType(eventType string) Option {
	return func(c *config) error {
		if eventType == "" || len(eventType) > maxShortField || !utf8.ValidString(eventType) || strings.IndexByte(eventType, 0) >= 0 {
			return fmt.Errorf("audithttp: WithEventType: %q is not a valid EventType", eventType)
		}
		c.eventType = eventType
		return nil
	}
}

// WithActor sets the function that names a request's actor, such as the
// authenticated user; it runs before the next handler, so authentication
// middleware belongs outside this one. An empty name means "anonymous".
// Defaults to "anonymous" for every request.
func WithActor(actor func(*http.Request) string) Option {
	return func(c *config) error {
		if actor == nil {
			return errors.New("audithttp: WithActor: nil function")
		}
		c.actor = actor
		return nil
	}
}

// WithSkipPaths names request paths (http.Request.URL.Path, matched
// exactly) that are neither recorded nor given a request ID, such as
// health checks. Defaults to none.
func WithSkipPaths(paths ...string) Option {
	return func(c *config) error {
		for _, p := range paths {
			c.skip[p] = true
		}
		return nil
	}
}

// WithLogger sets the logger of refused entries. Defaults to
// slog.Default().
func WithLogger(l *slog.Logger) Option {
	return func(c *config) error {
		if l == nil {
			return errors.New("audithttp: WithLogger: nil logger")
		}
		c.logger = l
		return nil
	}
}

// WithFailClosed, when true, records an entry with Outcome "started"
// before the next handler runs and answers 503 without running it when
// that Record fails (see the package doc). Defaults to false: a failed
// Record is logged and counted, and the request is served.
func WithFailClosed(failClosed bool) Option {
	return func(c *config) error {
		c.failClosed = failClosed
		return nil
	}
}
