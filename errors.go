package audit

import "errors"

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

	// ErrTampered is returned by Verify when the hash chain does not check;
	// the error names the first ID whose link or hash is wrong.
	ErrTampered = errors.New("audit: chain verification failed")
)
