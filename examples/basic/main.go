// Command basic is a tour of the audit library on its embedded SQLite
// default. It records a burst of security events from several goroutines,
// queries them, prunes the old ones, verifies the hash chain and shuts the
// service down, printing what each step did.
//
//	go run ./examples/basic                  # uses ./audit.db
//	go run ./examples/basic -db /tmp/a.db    # or any other file
//
// Run it again on the same file and the log, and its chain, continue: each
// run simulates the activity since the newest entry of the previous run (at
// most the past 7 days), so entries stay in time order and pruning by age
// keeps removing the oldest ones. Any failure ends the program with a
// message and exit status 1.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"text/tabwriter"
	"time"

	"github.com/cleveragents/audit"
)

// The shape of the simulated burst.
const (
	workers         = 4                  // goroutines recording at once
	eventsPerWorker = 50                 // entries each goroutine records
	maxHistory      = 7 * 24 * time.Hour // the longest span a run simulates
	retention       = 5 * 24 * time.Hour // Prune removes entries older than this
	pageSize        = 5                  // entries per page of the paged listing
	stepTimeout     = 30 * time.Second   // bounds every step that waits for the database
)

// The event types the example records.
const (
	evLogin      = "user.login"
	evLogout     = "user.logout"
	evPermission = "permission.change"
	evDocDelete  = "document.delete"
)

// eventTypes lists them in the order the report prints their counts.
var eventTypes = []string{evLogin, evLogout, evPermission, evDocDelete}

var (
	actors = []string{"alice", "bob", "carol", "dave", "erin", "mallory"}
	// suspect is the actor whose failed logins the example pages through:
	// someone is guessing mallory's password.
	suspect = "mallory"
	roles   = []string{"viewer", "editor", "admin", "billing"}
	reasons = []string{"bad_password", "bad_password", "bad_password", "unknown_otp", "locked_out"}
)

func main() {
	dbPath := flag.String("db", "audit.db", "SQLite file of the audit log; created if missing (its directory is not)")
	flag.Parse()
	if flag.NArg() > 0 {
		fmt.Fprintf(os.Stderr, "audit example: unexpected arguments: %s\n", strings.Join(flag.Args(), " "))
		flag.Usage()
		os.Exit(2)
	}
	// The library logs retries and failures through slog; send them to
	// stderr, apart from the report on stdout.
	logger := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
	if err := run(*dbPath, os.Stdout, logger); err != nil {
		fmt.Fprintf(os.Stderr, "audit example: %v\n", err)
		os.Exit(1)
	}
}

// run is the whole tour. It returns the first error, after shutting the
// service down so that nothing accepted is left unwritten.
func run(dbPath string, out io.Writer, logger *slog.Logger) (err error) {
	svc, err := audit.New(audit.WithSQLite(dbPath), audit.WithLogger(logger))
	if err != nil {
		return fmt.Errorf("create service: %w", err)
	}
	shutDown := false
	defer func() {
		if shutDown {
			return
		}
		if serr := shutdown(svc); serr != nil {
			err = errors.Join(err, serr)
		}
	}()

	fmt.Fprintf(out, "audit example: log %s\n", dbPath)

	// 1. What is already there. This is the first call that needs the
	//    database, so it opens it (once) and fails fast on a bad path.
	start, err := existing(svc, out)
	if err != nil {
		return err
	}
	now := time.Now().UTC()
	if !start.Before(now) {
		start = now.Add(-time.Second)
	}

	// 2. A burst of events from several goroutines.
	if err := record(svc, out, start, now); err != nil {
		return err
	}

	// 3. Queries: one actor's failed logins page by page, and counts.
	if err := failedLogins(svc, out); err != nil {
		return err
	}
	if err := countByType(svc, out); err != nil {
		return err
	}

	// 4. Retention: drop the entries older than the cutoff.
	if err := prune(svc, out, now.Add(-retention)); err != nil {
		return err
	}

	// 5. Tamper evidence: the chain still checks after pruning.
	if err := verify(svc, out); err != nil {
		return err
	}

	// 6. Counters, then a clean shutdown.
	printStats(out, svc.Stats())
	shutDown = true
	if err := shutdown(svc); err != nil {
		return err
	}
	fmt.Fprintln(out, "\nShutdown: queue drained, database closed.")
	return nil
}

// existing reports the log as found and returns the time the simulation
// starts from: just after the newest entry, or maxHistory ago.
func existing(svc *audit.AuditService, out io.Writer) (time.Time, error) {
	ctx, cancel := context.WithTimeout(context.Background(), stepTimeout)
	defer cancel()
	n, err := svc.Count(ctx, audit.Filter{})
	if err != nil {
		return time.Time{}, fmt.Errorf("count existing entries: %w", err)
	}
	start := time.Now().UTC().Add(-maxHistory)
	if n == 0 {
		fmt.Fprintf(out, "  new log: no entries yet\n")
		return start, nil
	}
	newest, err := svc.List(ctx, audit.Filter{Desc: true, Limit: 1})
	if err != nil {
		return time.Time{}, fmt.Errorf("read the newest entry: %w", err)
	}
	if len(newest) == 1 {
		fmt.Fprintf(out, "  existing log: %d entries, newest #%d at %s: the chain continues\n",
			n, newest[0].ID, stamp(newest[0].Time))
		if t := newest[0].Time.Add(time.Nanosecond); t.After(start) {
			start = t
		}
	}
	return start, nil
}

// simClock hands out the times of the simulated events: evenly spread
// over [start, end), each with some jitter inside its slot, in the order
// the goroutines ask for them, as time.Now would.
type simClock struct {
	start time.Time
	step  time.Duration
	next  atomic.Int64
}

func newSimClock(start, end time.Time, events int) *simClock {
	step := end.Sub(start) / time.Duration(events)
	return &simClock{start: start, step: max(step, 1)}
}

func (c *simClock) now() time.Time {
	slot := c.next.Add(1) - 1
	return c.start.Add(time.Duration(slot)*c.step + rand.N(c.step))
}

// record has the workers record their events together, then Flushes so
// that every accepted entry is committed before the queries.
func record(svc *audit.AuditService, out io.Writer, start, end time.Time) error {
	total := workers * eventsPerWorker
	clock := newSimClock(start, end, total)
	fmt.Fprintf(out, "\nRecording %d events from %d goroutines, simulating %s → %s (%s)\n",
		total, workers, stamp(start), stamp(end), span(end.Sub(start)))

	var (
		wg      sync.WaitGroup
		mu      sync.Mutex // guards errs
		errs    []error
		release = make(chan struct{})
	)
	began := time.Now()
	for w := range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			<-release // start together, to make the writer's life hard
			for i := range eventsPerWorker {
				e := event(clock.now(), fmt.Sprintf("req-%d-%03d-%04x", w, i, rand.N(1<<16)))
				if err := svc.Record(context.Background(), e); err != nil {
					mu.Lock()
					errs = append(errs, fmt.Errorf("goroutine %d, event %d: %w", w, i, err))
					mu.Unlock()
					return
				}
			}
		}()
	}
	close(release)
	wg.Wait()
	queued := time.Since(began)
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("record: %w", err)
	}

	ctx, cancel := context.WithTimeout(context.Background(), stepTimeout)
	defer cancel()
	if err := svc.Flush(ctx); err != nil {
		return fmt.Errorf("flush: %w", err)
	}
	st := svc.Stats()
	fmt.Fprintf(out, "  queued in %s (async Record returns once queued); committed by Flush after %s in %d transactions\n",
		round(queued), round(time.Since(began)), st.Batches)
	return nil
}

// event makes one plausible security event at t.
func event(t time.Time, requestID string) audit.Entry {
	actor := actors[rand.N(len(actors))]
	ip := fmt.Sprintf("10.%d.%d.%d", rand.N(4), rand.N(256), 1+rand.N(254))
	e := audit.Entry{Time: t, Actor: actor, RequestID: requestID}
	switch r := rand.N(100); {
	case r < 30 || (actor == suspect && r < 60):
		// Failed logins: mallory's come in bursts from odd addresses.
		if actor == suspect {
			ip = fmt.Sprintf("203.0.113.%d", 1+rand.N(254))
		}
		e.EventType, e.Resource, e.Outcome = evLogin, "session", "failure"
		e.Details = map[string]any{"ip": ip, "method": "password", "reason": reasons[rand.N(len(reasons))]}
	case r < 60:
		e.EventType, e.Resource, e.Outcome = evLogin, "session", "success"
		e.Details = map[string]any{"ip": ip, "method": []string{"password", "sso", "webauthn"}[rand.N(3)], "mfa": rand.N(4) != 0}
	case r < 72:
		e.EventType, e.Resource, e.Outcome = evLogout, "session", "success"
	case r < 87:
		target := actors[rand.N(len(actors))]
		op := []string{"grant", "revoke"}[rand.N(2)]
		e.EventType, e.Resource = evPermission, "user/"+target
		e.Outcome = "success"
		if actor != "alice" && rand.N(3) == 0 {
			e.Outcome = "denied" // only alice administers roles
		}
		e.Details = map[string]any{"op": op, "role": roles[rand.N(len(roles))], "ip": ip}
	default:
		doc := fmt.Sprintf("doc/%d", 1000+rand.N(9000))
		e.EventType, e.Resource, e.Outcome = evDocDelete, doc, "success"
		e.Details = map[string]any{"size_bytes": 512 + rand.N(4<<20), "folder": []string{"finance", "hr", "legal", "eng"}[rand.N(4)], "trash": rand.N(2) == 0}
	}
	return e
}

// failedLogins pages, newest first, through the suspect's failed logins
// with keyset pagination: each page asks for IDs below the last one seen.
func failedLogins(svc *audit.AuditService, out io.Writer) error {
	ctx, cancel := context.WithTimeout(context.Background(), stepTimeout)
	defer cancel()
	f := audit.Filter{Actor: suspect, EventType: evLogin, Outcome: "failure", Desc: true, Limit: pageSize}
	total, err := svc.Count(ctx, f)
	if err != nil {
		return fmt.Errorf("count failed logins: %w", err)
	}
	fmt.Fprintf(out, "\nFailed logins of %s: %d in the log; newest first, pages of %d\n", suspect, total, pageSize)
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
		tw := table(out)
		fmt.Fprintln(tw, "    ID\tTIME (UTC)\tIP\tREASON\tREQUEST")
		for _, e := range entries {
			fmt.Fprintf(tw, "    %d\t%s\t%v\t%v\t%s\n", e.ID, stamp(e.Time), e.Details["ip"], e.Details["reason"], e.RequestID)
		}
		if err := tw.Flush(); err != nil {
			return fmt.Errorf("print failed logins: %w", err)
		}
		f.BeforeID = entries[len(entries)-1].ID
	}
	return nil
}

// countByType prints how many entries of each event type, and outcome,
// the log holds.
func countByType(svc *audit.AuditService, out io.Writer) error {
	ctx, cancel := context.WithTimeout(context.Background(), stepTimeout)
	defer cancel()
	outcomes := []string{"success", "failure", "denied"}
	fmt.Fprintln(out, "\nEntries by event type:")
	tw := table(out)
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

// prune deletes the entries older than cutoff. Prune removes a prefix of
// the chain in ID order, stopping at the first entry that is not older, so
// an old entry committed after a newer one stays: the example reports them.
func prune(svc *audit.AuditService, out io.Writer, cutoff time.Time) error {
	ctx, cancel := context.WithTimeout(context.Background(), stepTimeout)
	defer cancel()
	fmt.Fprintf(out, "\nPrune: entries older than %s (%s ago)\n", stamp(cutoff), span(retention))
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

// verify walks the hash chain from the first remaining entry.
func verify(svc *audit.AuditService, out io.Writer) error {
	ctx, cancel := context.WithTimeout(context.Background(), stepTimeout)
	defer cancel()
	rep, err := svc.Verify(ctx)
	if err != nil {
		return fmt.Errorf("verify: %w", err)
	}
	fmt.Fprintln(out, "\nVerify: the hash chain checks")
	tw := table(out)
	fmt.Fprintf(tw, "  entries\t%d\n", rep.Entries)
	fmt.Fprintf(tw, "  IDs\t%d – %d\n", rep.FirstID, rep.LastID)
	fmt.Fprintf(tw, "  head\t%s\t(publish it elsewhere to anchor the log)\n", rep.Head)
	if err := tw.Flush(); err != nil {
		return fmt.Errorf("print verify report: %w", err)
	}
	return nil
}

func printStats(out io.Writer, st audit.Stats) {
	fmt.Fprintln(out, "\nStats of this run's service:")
	tw := table(out)
	fmt.Fprintf(tw, "  Queued\t%d\t(accepted, not yet committed)\n", st.Queued)
	fmt.Fprintf(tw, "  Written\t%d\t(entries committed)\n", st.Written)
	fmt.Fprintf(tw, "  Batches\t%d\t(write transactions)\n", st.Batches)
	fmt.Fprintf(tw, "  Failures\t%d\t(failed opens or writes, each retried)\n", st.Failures)
	fmt.Fprintf(tw, "  Rejected\t%d\t(Record calls refused)\n", st.Rejected)
	_ = tw.Flush() // a report that cannot be printed is no reason to skip Shutdown
}

// shutdown drains and closes the service, giving up after stepTimeout: the
// entries it could not commit by then are logged, and the error counts them.
func shutdown(svc *audit.AuditService) error {
	ctx, cancel := context.WithTimeout(context.Background(), stepTimeout)
	defer cancel()
	if err := svc.Shutdown(ctx); err != nil {
		return fmt.Errorf("shutdown: %w", err)
	}
	return nil
}

func table(out io.Writer) *tabwriter.Writer {
	return tabwriter.NewWriter(out, 0, 0, 2, ' ', 0)
}

func stamp(t time.Time) string { return t.UTC().Format("2006-01-02 15:04:05") }

func round(d time.Duration) time.Duration {
	if d < time.Millisecond {
		return d.Round(time.Microsecond)
	}
	return d.Round(100 * time.Microsecond)
}

// span prints a duration in days and hours, or as time.Duration when short.
func span(d time.Duration) string {
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
