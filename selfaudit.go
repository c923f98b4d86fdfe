package audit

import (
	"context"
	"os"
	"time"
)

// The service's own life in the chain (WithSelfAudit): its start and stop,
// and each prune and verification, are entries like any other, so that a
// gap in the log's own life shows. A start with no stop before it means
// that the service before it did not shut down: it crashed or was killed.
// (PCI DSS 10.2.1.3 and 10.2.1.6 ask for these.)

// The event types of the self-audit entries.
const (
	EventStart  = "audit.start"
	EventStop   = "audit.stop"
	EventPrune  = "audit.prune"
	EventVerify = "audit.verify"
	EventExport = "audit.export"
)

// SelfActor is the Actor of the self-audit entries.
const SelfActor = "audit"

// WithSelfAudit makes the service record its own start (in New), stop (in
// the first Shutdown, before the drain), prunes that deleted entries (by
// Prune and by WithRetention) and verifications, as entries of the event
// types EventStart, EventStop, EventPrune and EventVerify (and
// EventExport, through auditexport), with Actor
// SelfActor. Off by default, because it adds entries that List and Count
// return. A self-audit entry that cannot be queued (a full queue) is
// logged, never waited for.
func WithSelfAudit() Option {
	return func(c *config) { c.selfAudit = true }
}

// RecordExport records, under WithSelfAudit, that an exporter delivered
// the entries firstID through lastID (n of them) to consumer; without
// WithSelfAudit it does nothing. auditexport's Exporter calls it once per
// run that delivered anything, so the entry it adds is itself exported by
// the next run, once.
func (s *AuditService) RecordExport(consumer string, firstID, lastID int64, n uint64) {
	s.selfRecord(EventExport, map[string]any{"consumer": consumer, "first_id": firstID, "last_id": lastID, "entries": n})
}

// selfRecord queues a self-audit entry, without waiting for room.
func (s *AuditService) selfRecord(event string, details map[string]any) {
	if !s.cfg.selfAudit {
		return
	}
	e := Entry{Time: s.cfg.clock(), EventType: event, Actor: SelfActor, Outcome: "success", Details: details}
	if event == EventVerify && details["error"] != nil {
		e.Outcome = "failure"
	}
	r, err := s.newRecord(&e)
	if err == nil {
		err = s.in.send(context.Background(), item{rec: r}, true, s.abort.Done(), &s.stats.queued)
	}
	if err != nil {
		s.log.Warn("audit: self-audit entry not recorded", "event", event, "err", err)
	}
}

// selfStartDetails describes this process, for EventStart.
func selfStartDetails() map[string]any {
	host, _ := os.Hostname()
	return map[string]any{"pid": os.Getpid(), "host": host, "started": time.Now().UTC().Format(time.RFC3339Nano)}
}
