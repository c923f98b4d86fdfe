// Package audithttp is HTTP middleware that records one audit entry per
// request.
//
//	svc, _ := audit.New(audit.WithSQLite("audit.db"))
//	auditor, err := audithttp.New(svc,
//		audithttp.WithActor(func(r *http.Request) string { return userFrom(r) }),
//		audithttp.WithSkipPaths("/healthz"),
//	)
//	if err != nil {
//		return err // an invalid option, named in the error
//	}
//	handler := auditor.Handler(mux)
//
// [New] takes any [Recorder], such as an [*audit.AuditService]. Its
// [Auditor.Handler] has the shape func(http.Handler) http.Handler that
// routers' Use methods take.
//
// # The entry
//
// Each entry has EventType "http.request" ([WithEventType]), the Actor that
// [WithActor]'s function names ("anonymous" without one), Resource the
// request's escaped path (http.Request.URL.EscapedPath, without the
// query), the Outcome of the response status (see [OutcomeOf]), the request
// ID, and Details:
//
//	method       the request method
//	host         the request's Host (omitted when empty)
//	query        the raw query, without the "?" (omitted when empty)
//	remote_addr  the client's address, as http.Request.RemoteAddr
//	status       the response status (200 when the handler wrote none)
//	duration_ms  how long the handler ran, in milliseconds
//	bytes        the response body bytes written
//	truncated    the fields that were cut, each with its length before
//	             (omitted when none was)
//
// Each field has its own limit, so that no field can push another out: the
// path keeps up to [audit.MaxResourceLen] bytes, the method [MaxMethodLen],
// the query [MaxQueryLen], the host, the remote address and the actor
// [audit.MaxFieldLen]. A value over its limit keeps as much as fits (cut at
// a rune boundary) followed by "…", and "truncated" names it with its
// length in bytes: {"path": 5000}. Invalid UTF-8 becomes U+FFFD and NUL
// bytes are dropped, so that Record accepts every field.
//
// A query string can carry secrets (tokens, e-mail addresses): a service
// with audit.WithRedactKeys(key, "query") stores its keyed hash instead
// (a value beginning with [audit.RedactedPrefix]), which still shows when
// two requests had the same query.
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
// By default (fail-open), a refused Record (a full queue under
// [audit.OverflowFail], a closed service) does not fail the request: it is
// logged ([WithLogger]) and counted ([Auditor.Dropped]). With
// [WithFailClosed], a service that must not act unaudited makes the
// middleware record an entry with Outcome "started" (Details as above but
// status, duration_ms and bytes) before it calls the next handler, and
// answer 503 Service Unavailable without calling it when that Record
// fails or has not returned within [WithFailClosedTimeout]'s bound; the entry of the finished request follows as usual, so such a
// request has two entries with the same request ID.
//
// # When the log stalls
//
// The log stalls when its writer cannot commit: another process holds the
// SQLite write lock, the database is unreachable. What a request then
// waits for depends on the service's mode and on this middleware's:
//
//   - Fail-open, async service: Record returns once the entry is queued, so
//     requests do not wait while the queue (audit.WithQueueSize) has room.
//     Once it is full, under audit.OverflowFail each entry is dropped at
//     once (logged and counted; the request is served); under
//     audit.OverflowBlock, the service's default, the final Record waits
//     for room for as long as the stall lasts, and the response with it
//     (the handler has run; its response is held until Record returns).
//   - Fail-open, sync service (audit.WithAsync(false)): Record returns once
//     the entry has committed, so every response waits for as long as the
//     stall lasts.
//   - Fail-closed ([WithFailClosed]): each of the request's two Records
//     waits at most the bound of [WithFailClosedTimeout] (5 seconds by
//     default), or less if the client hangs up first. When the started
//     entry's Record has not returned within it, the request is answered
//     503 and its handler does not run; when the final entry's Record has
//     not, the response goes out and the entry is counted and logged as
//     dropped. Either way a request waits for the log at most twice the
//     bound. An async service accepts entries at once while its queue has
//     room (they commit when the stall ends), so requests are refused only
//     once it is full; a sync service accepts an entry only by committing
//     it, so every request is refused while the stall lasts. A sync service
//     keeps an entry whose Record gave up queued and commits it when the
//     stall ends, so a refused request can leave a "started" entry with no
//     final one; an async service whose full queue refused it does not.
//
// A service that must answer promptly whatever the log does uses
// WithFailClosed (with a bound that fits its clients' timeouts) or, if an
// unaudited request is acceptable, an async service under
// audit.OverflowFail.
package audithttp
