package audithttp

import (
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/cleveragents/audit"
)

// An Option configures an Auditor in New. An invalid one makes New return
// an error that names it.
type Option func(*config) error

type config struct {
	eventType         string
	actor             func(*http.Request) string
	skip              map[string]bool // exact paths
	logger            *slog.Logger
	failClosed        bool
	failClosedTimeout time.Duration
}

// WithEventType sets the entries' EventType: 1 to [audit.MaxFieldLen]
// bytes of UTF-8 without NUL. Defaults to "http.request".
func WithEventType(eventType string) Option {
	return func(c *config) error {
		if eventType == "" || len(eventType) > audit.MaxFieldLen || !utf8.ValidString(eventType) || strings.IndexByte(eventType, 0) >= 0 {
			return fmt.Errorf("audithttp: WithEventType: %q is not a valid EventType (1 to %d bytes of UTF-8 without NUL)",
				eventType, audit.MaxFieldLen)
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
