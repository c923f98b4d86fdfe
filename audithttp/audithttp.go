package audithttp

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"sync/atomic"
	"time"

	"github.com/cleveragents/audit"
)

// Defaults and names.
const (
	DefaultEventType = "http.request" // WithEventType
	DefaultActor     = "anonymous"    // WithActor
	// DefaultFailClosedTimeout is how long a fail-closed request waits for
	// each of its Records (WithFailClosedTimeout).
	DefaultFailClosedTimeout = 5 * time.Second
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

// Recorder is what the middleware needs of an audit log: Record, as
// [audit.AuditService.Record] does it.
type Recorder interface {
	Record(ctx context.Context, e audit.Entry) error
}

// Compile-time checks.
var (
	_ Recorder                        = (*audit.AuditService)(nil)
	_ func(http.Handler) http.Handler = (*Auditor)(nil).Handler
)

// Auditor is the middleware with its counters. Create it with [New]; its
// methods are safe for concurrent use.
type Auditor struct {
	rec     Recorder
	cfg     config
	dropped atomic.Uint64 // Record calls that failed
}

// New returns an Auditor recording to rec. It returns an error, naming each
// option at fault, if rec is nil or an option is invalid.
func New(rec Recorder, opts ...Option) (*Auditor, error) {
	cfg := config{
		eventType:         DefaultEventType,
		actor:             func(*http.Request) string { return DefaultActor },
		skip:              map[string]bool{},
		logger:            slog.Default(),
		failClosedTimeout: DefaultFailClosedTimeout,
	}
	var errs []error
	if svc, ok := rec.(*audit.AuditService); rec == nil || ok && svc == nil {
		errs = append(errs, errors.New("audithttp: New: nil Recorder"))
	}
	for i, o := range opts {
		if o == nil {
			errs = append(errs, fmt.Errorf("audithttp: New: option %d is nil", i))
			continue
		}
		if err := o(&cfg); err != nil {
			errs = append(errs, err)
		}
	}
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	return &Auditor{rec: rec, cfg: cfg}, nil
}

// Dropped returns how many Record calls failed since New: entries lost,
// or, with WithFailClosed, requests refused with 503. Each is also logged.
// A sync service keeps the entry of a Record that gave up at the bound of
// WithFailClosedTimeout queued, so it may still be committed.
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
		f := newFields(r, a.cfg.actor(r))
		ctx := audit.ContextWithRequestID(audit.ContextWithActor(r.Context(), f.actor), id)
		r = r.WithContext(ctx)
		base := audit.Entry{
			EventType: a.cfg.eventType,
			Actor:     f.actor,
			Resource:  f.path,
			RequestID: id,
		}

		if a.cfg.failClosed && !a.started(ctx, w, base, f) {
			return
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
			e.Details = f.details()
			e.Details["status"] = status
			e.Details["duration_ms"] = float64(time.Since(start).Microseconds()) / 1000
			e.Details["bytes"] = rw.bytes
			if rw.hijacked {
				e.Details["hijacked"] = true
			}
			if !finished {
				e.Outcome = OutcomeFailure
				e.Details["panic"] = true
			}
			// Not the request's cancellation: a client that hung up does
			// not lose the entry. Fail-closed bounds the wait.
			rctx, cancel := a.bounded(context.WithoutCancel(ctx))
			defer cancel()
			if err := a.rec.Record(rctx, e); err != nil {
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
