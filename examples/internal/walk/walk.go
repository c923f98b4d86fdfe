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
