// Package walk holds the steps and the printing that the examples share:
// the paged listing of failed logins, the counts by event type, the prune
// report, the simulated clock and the formatting of times.
package walk

import (
	"context"
	"fmt"
	"io"
	"math/rand/v2"
	"strings"
	"sync/atomic"
	"text/tabwriter"
	"time"

	"github.com/cleveragents/audit"
)

// The event types the example records.
const (
	EvLogin      = "user.login"
	EvLogout     = "user.logout"
	EvPermission = "permission.change"
	EvDocDelete  = "document.delete"
)

// EventTypes lists them in the order the report prints their counts.
var EventTypes = []string{EvLogin, EvLogout, EvPermission, EvDocDelete}

// The actors, roles and failure reasons the simulated events draw from.
var (
	Actors = []string{"alice", "bob", "carol", "dave", "erin", "mallory"}
	// Suspect is the actor whose failed logins the example pages through:
	// someone is guessing mallory's password.
	Suspect = "mallory"
	Roles   = []string{"viewer", "editor", "admin", "billing"}
	Reasons = []string{"bad_password", "bad_password", "bad_password", "unknown_otp", "locked_out"}
)

// StepTimeout bounds every step that waits for the database.
const StepTimeout = 30 * time.Second

// FailedLogins pages, newest first, through the failed logins of actor
// (event type login), two pages of pageSize, with keyset pagination: each
// page asks for IDs below the last one seen. The Details keys named in
// extra get a column each.
func FailedLogins(svc *audit.AuditService, out io.Writer, actor, login string, pageSize int, extra ...string) error {
	ctx, cancel := context.WithTimeout(context.Background(), StepTimeout)
	defer cancel()
	f := audit.Filter{Actor: actor, EventType: login, Outcome: "failure", Desc: true, Limit: pageSize}
	total, err := svc.Count(ctx, f)
	if err != nil {
		return fmt.Errorf("count failed logins: %w", err)
	}
	fmt.Fprintf(out, "\nFailed logins of %s: %d in the log; newest first, pages of %d\n", actor, total, pageSize)
	head := "    ID\tTIME (UTC)\tIP\tREASON"
	for _, k := range extra {
		head += "\t" + strings.ToUpper(k)
	}
	for page := 1; page <= 2; page++ {
		entries, err := svc.List(ctx, f)
		if err != nil {
			return fmt.Errorf("list failed logins, page %d: %w", page, err)
		}
		if len(entries) == 0 {
			if page == 1 {
				fmt.Fprintln(out, "  (none)")
			}
			break
		}
		how := "first page"
		if f.BeforeID != 0 {
			how = fmt.Sprintf("BeforeID %d", f.BeforeID)
		}
		fmt.Fprintf(out, "  page %d (%s):\n", page, how)
		tw := Table(out)
		fmt.Fprintln(tw, head+"\tREQUEST")
		for _, e := range entries {
			fmt.Fprintf(tw, "    %d\t%s\t%v\t%v", e.ID, Stamp(e.Time), e.Details["ip"], e.Details["reason"])
			for _, k := range extra {
				fmt.Fprintf(tw, "\t%v", e.Details[k])
			}
			fmt.Fprintf(tw, "\t%s\n", e.RequestID)
		}
		if err := tw.Flush(); err != nil {
			return fmt.Errorf("print failed logins: %w", err)
		}
		f.BeforeID = entries[len(entries)-1].ID
	}
	return nil
}

// QueryAndPrune runs the examples' middle steps: FailedLogins of the
// Suspect, CountByType, then Prune of what is older than retention.
func QueryAndPrune(svc *audit.AuditService, out io.Writer, pageSize int, now time.Time, retention time.Duration, extra ...string) error {
	if err := FailedLogins(svc, out, Suspect, EvLogin, pageSize, extra...); err != nil {
		return err
	}
	if err := CountByType(svc, out, EventTypes); err != nil {
		return err
	}
	return Prune(svc, out, now, retention)
}

// CountByType prints how many entries of each event type, and outcome,
// the log holds.
func CountByType(svc *audit.AuditService, out io.Writer, eventTypes []string) error {
	ctx, cancel := context.WithTimeout(context.Background(), StepTimeout)
	defer cancel()
	outcomes := []string{"success", "failure", "denied"}
	fmt.Fprintln(out, "\nEntries by event type:")
	tw := Table(out)
	fmt.Fprintf(tw, "  EVENT TYPE\tTOTAL\t%s\n", strings.ToUpper(strings.Join(outcomes, "\t")))
	var all int64
	for _, et := range eventTypes {
		n, err := svc.Count(ctx, audit.Filter{EventType: et})
		if err != nil {
			return fmt.Errorf("count %s: %w", et, err)
		}
		all += n
		row := []string{et, fmt.Sprint(n)}
		for _, o := range outcomes {
			m, err := svc.Count(ctx, audit.Filter{EventType: et, Outcome: o})
			if err != nil {
				return fmt.Errorf("count %s %s: %w", et, o, err)
			}
			row = append(row, fmt.Sprint(m))
		}
		fmt.Fprintf(tw, "  %s\n", strings.Join(row, "\t"))
	}
	fmt.Fprintf(tw, "  all\t%d\n", all)
	if err := tw.Flush(); err != nil {
		return fmt.Errorf("print counts: %w", err)
	}
	return nil
}

// Prune deletes the entries older than now-retention. Prune removes a
// prefix of the chain in ID order, stopping at the first entry that is not
// older, so an old entry committed after a newer one stays: it reports
// them.
func Prune(svc *audit.AuditService, out io.Writer, now time.Time, retention time.Duration) error {
	ctx, cancel := context.WithTimeout(context.Background(), StepTimeout)
	defer cancel()
	cutoff := now.Add(-retention)
	fmt.Fprintf(out, "\nPrune: entries older than %s (%s ago)\n", Stamp(cutoff), Span(retention))
	n, err := svc.Prune(ctx, cutoff)
	if err != nil {
		return fmt.Errorf("prune: %w", err)
	}
	left, err := svc.Count(ctx, audit.Filter{Until: cutoff})
	if err != nil {
		return fmt.Errorf("count entries older than the cutoff: %w", err)
	}
	fmt.Fprintf(out, "  deleted %d entries", n)
	switch {
	case left == 1:
		fmt.Fprint(out, "; 1 older entry stays, committed after a newer one (Prune deletes a prefix of the chain)")
	case left > 1:
		fmt.Fprintf(out, "; %d older entries stay, committed after newer ones (Prune deletes a prefix of the chain)", left)
	}
	fmt.Fprintln(out)
	return nil
}

// Verify walks the hash chain from the first remaining entry.
func Verify(svc *audit.AuditService) (audit.VerifyReport, error) {
	ctx, cancel := context.WithTimeout(context.Background(), StepTimeout)
	defer cancel()
	rep, err := svc.Verify(ctx)
	if err != nil {
		return rep, fmt.Errorf("verify: %w", err)
	}
	return rep, nil
}

// PrintVerify prints Verify's report, with a note after the entry count
// and after the IDs ("" for none).
func PrintVerify(out io.Writer, rep audit.VerifyReport, entriesNote, idsNote string) error {
	fmt.Fprintln(out, "\nVerify: the hash chain checks")
	tw := Table(out)
	fmt.Fprintf(tw, "  entries\t%d\t%s\n", rep.Entries, entriesNote)
	fmt.Fprintf(tw, "  IDs\t%d – %d\t%s\n", rep.FirstID, rep.LastID, idsNote)
	fmt.Fprintf(tw, "  head\t%s\t(publish it elsewhere to anchor the log)\n", rep.Head)
	if err := tw.Flush(); err != nil {
		return fmt.Errorf("print verify report: %w", err)
	}
	return nil
}

// SimClock hands out the times of the simulated events: evenly spread
// over [start, end), each with some jitter inside its slot, in the order
// the goroutines ask for them, as time.Now would.
type SimClock struct {
	start time.Time
	step  time.Duration
	next  atomic.Int64
}

// NewSimClock spreads events over [start, end).
func NewSimClock(start, end time.Time, events int) *SimClock {
	step := end.Sub(start) / time.Duration(events)
	return &SimClock{start: start, step: max(step, 1)}
}

// Now returns the time of the next event.
func (c *SimClock) Now() time.Time {
	slot := c.next.Add(1) - 1
	return c.start.Add(time.Duration(slot)*c.step + rand.N(c.step))
}

// Table returns the tab writer every table of the examples prints with.
func Table(out io.Writer) *tabwriter.Writer {
	return tabwriter.NewWriter(out, 0, 0, 2, ' ', 0)
}

// Stamp formats t in UTC to the second.
func Stamp(t time.Time) string { return t.UTC().Format("2006-01-02 15:04:05") }

// Round rounds a measured duration for printing.
func Round(d time.Duration) time.Duration {
	if d < time.Millisecond {
		return d.Round(time.Microsecond)
	}
	return d.Round(100 * time.Microsecond)
}

// Span prints a duration in days and hours, or as time.Duration when short.
func Span(d time.Duration) string {
	switch {
	case d < time.Minute:
		return d.Round(time.Millisecond).String()
	case d < time.Hour:
		return d.Round(time.Second).String()
	}
	days, hours := d/(24*time.Hour), (d%(24*time.Hour)+time.Hour/2)/time.Hour
	if hours == 24 {
		days, hours = days+1, 0
	}
	switch {
	case days == 0:
		return fmt.Sprintf("%dh", hours)
	case hours == 0:
		return fmt.Sprintf("%dd", days)
	}
	return fmt.Sprintf("%dd %dh", days, hours)
}

// Event returns a random event at t: logins (the suspect's failing in
// bursts), logouts, permission changes and document deletions.
func Event(t time.Time, requestID string) audit.Entry {
	actor := Actors[rand.N(len(Actors))]
	ip := fmt.Sprintf("10.%d.%d.%d", rand.N(4), rand.N(256), 1+rand.N(254))
	e := audit.Entry{Time: t, Actor: actor, RequestID: requestID}
	switch r := rand.N(100); {
	case r < 30 || (actor == Suspect && r < 60):
		// Failed logins: mallory's come in bursts from odd addresses.
		if actor == Suspect {
			ip = fmt.Sprintf("203.0.113.%d", 1+rand.N(254))
		}
		e.EventType, e.Resource, e.Outcome = EvLogin, "session", "failure"
		e.Details = map[string]any{"ip": ip, "method": "password", "reason": Reasons[rand.N(len(Reasons))]}
	case r < 60:
		e.EventType, e.Resource, e.Outcome = EvLogin, "session", "success"
		e.Details = map[string]any{"ip": ip, "method": []string{"password", "sso", "webauthn"}[rand.N(3)], "mfa": rand.N(4) != 0}
	case r < 72:
		e.EventType, e.Resource, e.Outcome = EvLogout, "session", "success"
	case r < 87:
		target := Actors[rand.N(len(Actors))]
		op := []string{"grant", "revoke"}[rand.N(2)]
		e.EventType, e.Resource = EvPermission, "user/"+target
		e.Outcome = "success"
		if actor != "alice" && rand.N(3) == 0 {
			e.Outcome = "denied" // only alice administers Roles
		}
		e.Details = map[string]any{"op": op, "role": Roles[rand.N(len(Roles))], "ip": ip}
	default:
		doc := fmt.Sprintf("doc/%d", 1000+rand.N(9000))
		e.EventType, e.Resource, e.Outcome = EvDocDelete, doc, "success"
		e.Details = map[string]any{"size_bytes": 512 + rand.N(4<<20), "folder": []string{"finance", "hr", "legal", "eng"}[rand.N(4)], "trash": rand.N(2) == 0}
	}
	return e
}
