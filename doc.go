// Package audit is an embeddable, thread-safe audit log for Go services.
//
// A service calls [AuditService.Record] on every security-relevant action.
// Record validates the entry in the caller's goroutine and hands it to one
// background writer, which commits entries in batched transactions to
// SQLite (the embedded default) or PostgreSQL, through GORM. Every entry is
// hash-chained to the one before it, so [AuditService.Verify] detects an
// entry altered, inserted or removed after the fact.
//
// The database is opened lazily, by the first call that needs it, exactly
// once however many goroutines arrive together; a failed open is retried by
// the next call rather than cached.
//
// # Choosing a mode
//
// In async mode (the default) Record returns once the entry is queued: it
// costs about as much as marshalling the Details, and [AuditService.Flush]
// waits until everything accepted before it is committed. In sync mode
// ([WithAsync](false)) Record returns once the entry's transaction has
// committed; concurrent callers share transactions (group commit), so sync
// mode scales with the number of callers. Neither mode loses an accepted
// entry while the process lives: failed writes are retried in order with
// backoff, and [AuditService.Shutdown] drains the queue, logging any entry
// it could not commit before its deadline.
//
// # Around the core
//
// Sub-packages build on the public API: [github.com/cleveragents/audit/gormaudit]
// records a service's committed model changes, [github.com/cleveragents/audit/audithttp]
// records every HTTP request and puts its actor and request ID into the
// request's context, and the auditctl command (cmd/auditctl) lists,
// exports, prunes and verifies a log from a terminal. [WithRedactKeys]
// replaces secrets in Details with a keyed hash before they are stored.
package audit
