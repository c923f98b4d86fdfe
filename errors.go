package audit

import (
	"errors"
	"fmt"
	"strings"
)

// Sentinel errors. Callers test for them with [errors.Is]; the errors the
// methods return wrap them with the operation and the detail that failed.
var (
	// ErrClosed is returned by every method but Stats once Shutdown or Close
	// has begun.
	ErrClosed = errors.New("audit: service closed")

	// ErrQueueFull is returned by Record when the queue has no room: at once
	// under OverflowFail, or wrapped together with ctx's error under
	// OverflowBlock when ctx ends before room appears.
	ErrQueueFull = errors.New("audit: queue full")

	// ErrNotFound is returned by Get for an ID that holds no entry.
	ErrNotFound = errors.New("audit: entry not found")

	// ErrInvalidEntry is returned by Record for an entry that breaks a rule
	// of validation; the error names the Entry field at fault.
	ErrInvalidEntry = errors.New("audit: invalid entry")

	// ErrInvalidFilter is returned by List and Count for a Filter that
	// cannot be served; the error names the Filter field at fault.
	ErrInvalidFilter = errors.New("audit: invalid filter")

	// ErrReadOnly is returned by the methods that write when the service
	// was opened with WithReadOnly.
	ErrReadOnly = errors.New("audit: opened read-only (WithReadOnly)")

	// ErrTampered is returned by Verify when the hash chain does not check;
	// the error names the first ID whose link or hash is wrong.
	ErrTampered = errors.New("audit: chain verification failed")
)

// OpError is the error that the service's methods return: the operation
// that failed (Op: "record", "flush", "get 7", "verify", ...) and why. Its
// text carries the "audit:" prefix once: "audit: verify: chain verification
// failed at ID 100: ...". errors.Is and errors.As see through it to the
// sentinel errors and to the database's own error.
type OpError struct {
	Op  string
	Err error
}

// Error returns "audit: Op: Err", with Err's own leading "audit: " left out.
func (e *OpError) Error() string {
	return "audit: " + e.Op + ": " + strings.TrimPrefix(e.Err.Error(), "audit: ")
}

// Unwrap returns Err.
func (e *OpError) Unwrap() error { return e.Err }

// opErr wraps err, if not nil, with the operation op.
func opErr(op string, err error) error {
	if err == nil {
		return nil
	}
	return &OpError{Op: op, Err: err}
}

// kindError is a sentinel with the detail of one failure, written without
// the sentinel's "audit:" prefix, so that it reads right in the middle of
// another error's text: "open database: service closed".
type kindError struct {
	kind   error
	detail string
}

// errorf returns kind with a detail: errors.Is(err, kind) holds.
func errorf(kind error, format string, args ...any) error {
	return &kindError{kind: kind, detail: fmt.Sprintf(format, args...)}
}

func (e *kindError) Error() string {
	if e.detail == "" {
		return bare(e.kind)
	}
	return bare(e.kind) + ": " + e.detail
}

func (e *kindError) Unwrap() error { return e.kind }

// bare returns err's text without its "audit: " prefix.
func bare(err error) string { return strings.TrimPrefix(err.Error(), "audit: ") }

// errNilContext is what every method given a nil context returns.
var errNilContext = errors.New("nil Context (pass context.Background() or a request's context)")
