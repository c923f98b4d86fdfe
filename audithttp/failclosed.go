package audithttp

import (
	"context"
	"fmt"
	"net/http"
	"time"

	"github.com/cleveragents/audit"
)

// started records the entry of a fail-closed request before its handler
// runs. If Record fails, or has not returned within the bound, it answers
// 503 and reports false: the handler must not run.
func (a *Auditor) started(ctx context.Context, w http.ResponseWriter, base audit.Entry, f *fields) bool {
	e := base
	e.Outcome = OutcomeStarted
	e.Details = f.details()
	// The request's own ctx, bounded: wait only as long as the client
	// does, and never longer than the bound.
	rctx, cancel := a.bounded(ctx)
	defer cancel()
	if err := a.rec.Record(rctx, e); err != nil {
		a.refused(e, err)
		http.Error(w, "audit log unavailable", http.StatusServiceUnavailable)
		return false
	}
	return true
}

// bounded returns ctx limited to the fail-closed bound, or ctx itself
// when the middleware fails open.
func (a *Auditor) bounded(ctx context.Context) (context.Context, context.CancelFunc) {
	if !a.cfg.failClosed {
		return ctx, func() {}
	}
	return context.WithTimeout(ctx, a.cfg.failClosedTimeout)
}

// WithFailClosed, when true, records an entry with Outcome "started"
// before the next handler runs and answers 503 without running it when
// that Record fails or does not return within the bound of
// [WithFailClosedTimeout] (see the package doc). Defaults to false: a
// failed Record is logged and counted, and the request is served.
func WithFailClosed(failClosed bool) Option {
	return func(c *config) error {
		c.failClosed = failClosed
		return nil
	}
}

// WithFailClosedTimeout bounds how long a fail-closed request waits for
// each of its two Records: the started entry's, after which the request is
// answered 503 without running the handler, and the final entry's, after
// which the response goes out and the entry is counted as dropped. It has
// no effect without WithFailClosed(true). d must be positive. Defaults to
// DefaultFailClosedTimeout (5 seconds).
func WithFailClosedTimeout(d time.Duration) Option {
	return func(c *config) error {
		if d <= 0 {
			return fmt.Errorf("audithttp: WithFailClosedTimeout: %v is not positive", d)
		}
		c.failClosedTimeout = d
		return nil
	}
}
