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
	"time"

	"github.com/cleveragents/audit"
	"github.com/cleveragents/audit/examples/internal/walk"
)

// The shape of the simulated burst.
const (
	workers         = 4                  // goroutines recording at once
	eventsPerWorker = 50                 // entries each goroutine records
	maxHistory      = 7 * 24 * time.Hour // the longest span a run simulates
	retention       = 5 * 24 * time.Hour // Prune removes entries older than this
	pageSize        = 5                  // entries per page of the paged listing
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

	// 3. Queries: one actor's failed logins page by page, and counts;
	// 4. retention: drop the entries older than the cutoff.
	if err := walk.QueryAndPrune(svc, out, pageSize, now, retention); err != nil {
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
	ctx, cancel := context.WithTimeout(context.Background(), walk.StepTimeout)
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
			n, newest[0].ID, walk.Stamp(newest[0].Time))
		if t := newest[0].Time.Add(time.Nanosecond); t.After(start) {
			start = t
		}
	}
	return start, nil
}

// record has the workers record their events together, then Flushes so
// that every accepted entry is committed before the queries.
func record(svc *audit.AuditService, out io.Writer, start, end time.Time) error {
	total := workers * eventsPerWorker
	clock := walk.NewSimClock(start, end, total)
	fmt.Fprintf(out, "\nRecording %d events from %d goroutines, simulating %s → %s (%s)\n",
		total, workers, walk.Stamp(start), walk.Stamp(end), walk.Span(end.Sub(start)))

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
				e := walk.Event(clock.Now(), fmt.Sprintf("req-%d-%03d-%04x", w, i, rand.N(1<<16)))
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

	ctx, cancel := context.WithTimeout(context.Background(), walk.StepTimeout)
	defer cancel()
	if err := svc.Flush(ctx); err != nil {
		return fmt.Errorf("flush: %w", err)
	}
	st := svc.Stats()
	txs := "transactions"
	if st.Batches == 1 {
		txs = "transaction"
	}
	fmt.Fprintf(out, "  queued in %s (async Record returns once queued); committed by Flush after %s in %d %s\n",
		walk.Round(queued), walk.Round(time.Since(began)), st.Batches, txs)
	return nil
}

// verify walks the hash chain from the first remaining entry.
func verify(svc *audit.AuditService, out io.Writer) error {
	rep, err := walk.Verify(svc)
	if err != nil {
		return err
	}
	return walk.PrintVerify(out, rep, "", "")
}

func printStats(out io.Writer, st audit.Stats) {
	fmt.Fprintln(out, "\nStats of this run's service:")
	tw := walk.Table(out)
	fmt.Fprintf(tw, "  Queued\t%d\t(accepted, not yet committed)\n", st.Queued)
	fmt.Fprintf(tw, "  Written\t%d\t(entries committed)\n", st.Written)
	fmt.Fprintf(tw, "  Batches\t%d\t(write transactions)\n", st.Batches)
	fmt.Fprintf(tw, "  Failures\t%d\t(failed opens or writes, each retried)\n", st.Failures)
	fmt.Fprintf(tw, "  Rejected\t%d\t(Record calls refused)\n", st.Rejected)
	_ = tw.Flush() // a report that cannot be printed is no reason to skip Shutdown
}

// shutdown drains and closes the service, giving up after walk.StepTimeout: the
// entries it could not commit by then are logged, and the error counts them.
func shutdown(svc *audit.AuditService) error {
	ctx, cancel := context.WithTimeout(context.Background(), walk.StepTimeout)
	defer cancel()
	if err := svc.Shutdown(ctx); err != nil {
		return fmt.Errorf("shutdown: %w", err)
	}
	return nil
}
