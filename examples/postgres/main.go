// Command postgres is the basic example's tour on PostgreSQL, with several
// replicas of a service writing one audit table at once.
//
// Each replica is a goroutine with its own AuditService, and so its own
// connection pool and its own writer: they stand in for separate processes
// (or pods) of one service. They record a burst of security events
// concurrently; then an operator's service queries the log, pages through
// one actor's failed logins, counts by event type, prunes, verifies that
// the replicas built one unforked hash chain, and prints every service's
// Stats before shutting them all down.
//
//	go run ./examples/postgres -dsn 'postgres://postgres@127.0.0.1:5433/postgres?sslmode=disable'
//	AUDIT_POSTGRES_DSN='postgres://...' go run ./examples/postgres -replicas 5 -table audit_demo
//
// Run it again on the same table and the log, and its chain, continue: each
// run simulates the activity since the newest entry of the previous run (at
// most the past 7 days). Without a DSN it prints its usage and exits with
// status 2; any other failure ends it with a message and exit status 1.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"net/url"
	"os"
	"regexp"
	"strings"
	"sync"
	"time"

	"gorm.io/driver/postgres"

	"github.com/cleveragents/audit"
	"github.com/cleveragents/audit/examples/internal/walk"
)

// dsnEnv is the environment variable read when -dsn is not given.
const dsnEnv = "AUDIT_POSTGRES_DSN"

// The shape of the simulated burst.
const (
	maxHistory = 7 * 24 * time.Hour // the longest span a run simulates
	retention  = 5 * 24 * time.Hour // Prune removes entries older than this
	pageSize   = 5                  // entries per page of the paged listing
	scanPage   = 1000               // entries per page when tallying the replicas
	maxPause   = 2 * time.Millisecond
)

// config is what the command line asks for.
type config struct {
	dsn      string
	table    string
	replicas int
	events   int // per replica
}

func main() {
	var cfg config
	flag.StringVar(&cfg.dsn, "dsn", "", "PostgreSQL DSN, e.g. 'postgres://postgres@127.0.0.1:5433/postgres?sslmode=disable' (default $"+dsnEnv+")")
	flag.StringVar(&cfg.table, "table", audit.DefaultTable, "name of the audit table; created if missing")
	flag.IntVar(&cfg.replicas, "replicas", 3, "replicas writing the table at once, each with its own service and connection pool (1-64)")
	flag.IntVar(&cfg.events, "events", 100, "events each replica records (1-9999)")
	flag.Usage = func() {
		fmt.Fprintf(flag.CommandLine.Output(), "usage: go run ./examples/postgres [-dsn DSN] [-table NAME] [-replicas N] [-events N]\n\n")
		fmt.Fprintf(flag.CommandLine.Output(), "The DSN comes from -dsn or, when that is empty, from $%s.\n\n", dsnEnv)
		flag.PrintDefaults()
	}
	flag.Parse()
	if cfg.dsn == "" {
		cfg.dsn = os.Getenv(dsnEnv)
	}
	switch {
	case flag.NArg() > 0:
		usageError("unexpected arguments: %s", strings.Join(flag.Args(), " "))
	case cfg.dsn == "":
		usageError("no PostgreSQL DSN: pass -dsn or set %s", dsnEnv)
	case cfg.replicas < 1 || cfg.replicas > 64:
		usageError("-replicas %d: want 1 to 64", cfg.replicas)
	case cfg.events < 1 || cfg.events > 9999:
		usageError("-events %d: want 1 to 9999", cfg.events)
	}
	// The library logs retries and failures through slog; send them to
	// stderr, apart from the report on stdout.
	logger := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
	if err := run(cfg, os.Stdout, logger); err != nil {
		fmt.Fprintf(os.Stderr, "audit example: %v\n", err)
		os.Exit(1)
	}
}

func usageError(format string, args ...any) {
	fmt.Fprintf(os.Stderr, "audit example: "+format+"\n\n", args...)
	flag.Usage()
	os.Exit(2)
}

// replica is one stand-in for a process of the service.
type replica struct {
	name string // "api-1", ...; stored in every entry's Details["replica"]
	svc  *audit.AuditService
	took time.Duration // recording and Flush
}

// run is the whole tour. It returns the first error, after shutting every
// service down so that nothing accepted is left unwritten.
func run(cfg config, out io.Writer, logger *slog.Logger) (err error) {
	// Every service gets its own dialector, so its own *gorm.DB and
	// connection pool, as separate processes would.
	newService := func() (*audit.AuditService, error) {
		return audit.New(
			audit.WithDialector(postgres.Open(cfg.dsn)),
			audit.WithTable(cfg.table),
			audit.WithLogger(logger),
		)
	}
	var services []*audit.AuditService // all of them, shut down at the end
	shutDown := false
	defer func() {
		if shutDown {
			return
		}
		if serr := shutdownAll(services); serr != nil {
			err = errors.Join(err, serr)
		}
	}()

	// The operator's service: it reads, prunes and verifies; it writes no
	// entries of its own.
	ops, err := newService()
	if err != nil {
		return fmt.Errorf("create service: %w", err)
	}
	services = append(services, ops)
	reps := make([]*replica, cfg.replicas)
	for i := range reps {
		svc, err := newService()
		if err != nil {
			return fmt.Errorf("create service of replica %d: %w", i+1, err)
		}
		services = append(services, svc)
		reps[i] = &replica{name: fmt.Sprintf("api-%d", i+1), svc: svc}
	}

	fmt.Fprintf(out, "audit example: PostgreSQL %s, table %s, %d replicas\n", redact(cfg.dsn), cfg.table, cfg.replicas)

	// 1. What is already there. This is the first call that needs the
	//    database, so it opens it (once) and fails fast on a bad DSN.
	prev, latest, err := existing(ops, out)
	if err != nil {
		return err
	}
	start := time.Now().UTC().Add(-maxHistory)
	if t := latest.Add(time.Nanosecond); t.After(start) {
		start = t
	}
	now := time.Now().UTC()
	if !start.Before(now) {
		start = now.Add(-time.Second)
	}

	// 2. The replicas connect together (each creates the schema if it is
	//    missing; an advisory lock makes them take turns), then record a
	//    burst of events at the same time.
	if err := connect(reps, out); err != nil {
		return err
	}
	runID := fmt.Sprintf("%04x", rand.N(1<<16)) // tags this run's request IDs
	if err := record(reps, out, runID, cfg.events, start, now); err != nil {
		return err
	}

	// 3. One table, several writers: what each replica wrote, in order.
	if err := tally(ops, reps, out, runID, prev); err != nil {
		return err
	}

	// 4. Queries: one actor's failed logins page by page, and counts;
	// 5. retention: drop the entries older than the cutoff.
	if err := walk.QueryAndPrune(ops, out, pageSize, now, retention, "replica"); err != nil {
		return err
	}

	// 6. Tamper evidence: one chain, unforked, and it still checks after
	//    pruning.
	if err := verify(ops, out); err != nil {
		return err
	}

	// 7. Counters, then a clean shutdown of every service.
	if err := printStats(out, ops, reps); err != nil {
		return err
	}
	shutDown = true
	if err := shutdownAll(services); err != nil {
		return err
	}
	fmt.Fprintf(out, "\nShutdown: %d services drained, connection pools closed.\n", len(services))
	return nil
}

// existing reports the log as found. It returns its newest entry (by ID;
// a zero Entry when the log is empty), which this run's first entry will
// link to, and the latest Time among the newest entries, which this run's
// simulated activity starts after. The two differ with several replicas:
// their clocks hand out times in one order and their transactions commit
// in another.
func existing(svc *audit.AuditService, out io.Writer) (audit.Entry, time.Time, error) {
	ctx, cancel := context.WithTimeout(context.Background(), walk.StepTimeout)
	defer cancel()
	n, err := svc.Count(ctx, audit.Filter{})
	if err != nil {
		return audit.Entry{}, time.Time{}, fmt.Errorf("count existing entries: %w", err)
	}
	if n == 0 {
		fmt.Fprintf(out, "  new log: no entries yet\n")
		return audit.Entry{}, time.Time{}, nil
	}
	newest, err := svc.List(ctx, audit.Filter{Desc: true, Limit: scanPage})
	if err != nil {
		return audit.Entry{}, time.Time{}, fmt.Errorf("read the newest entries: %w", err)
	}
	if len(newest) == 0 {
		return audit.Entry{}, time.Time{}, nil // pruned away in the meantime
	}
	var latest time.Time
	for _, e := range newest {
		if e.Time.After(latest) {
			latest = e.Time
		}
	}
	fmt.Fprintf(out, "  existing log: %d entries, newest #%d, latest event at %s: the chain continues\n",
		n, newest[0].ID, walk.Stamp(latest))
	return newest[0], latest, nil
}

// verify walks the hash chain from the first remaining entry, and checks
// that it is the only one: every entry in the table is on it, and its IDs
// have no gaps. Two replicas that read the same chain head and both
// appended to it would have forked the chain; the writer's SELECT ... FOR
// UPDATE of the head row makes them take turns instead.
func verify(svc *audit.AuditService, out io.Writer) error {
	rep, err := walk.Verify(svc)
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(context.Background(), walk.StepTimeout)
	defer cancel()
	n, err := svc.Count(ctx, audit.Filter{})
	if err != nil {
		return fmt.Errorf("count entries: %w", err)
	}
	// Verify ran in its own snapshot; another writer may have committed
	// since, so the table may hold more than the chain Verify walked.
	contiguous := rep.Entries == 0 || rep.LastID-rep.FirstID+1 == rep.Entries
	if err := walk.PrintVerify(out, rep, fmt.Sprintf("(the table holds %d)", n), "(no gaps: "+yesNo(contiguous)+")"); err != nil {
		return err
	}
	if !contiguous {
		return errors.New("verify: the chain's IDs have gaps")
	}
	if n == rep.Entries {
		fmt.Fprintln(out, "  one chain, unforked: every entry of every replica is on it, each linked to the one before")
	}
	return nil
}

// printStats prints the counters of every service, each counting only
// what it did itself.
func printStats(out io.Writer, ops *audit.AuditService, reps []*replica) error {
	fmt.Fprintln(out, "\nStats of each service (its own counters):")
	tw := walk.Table(out)
	fmt.Fprintln(tw, "  SERVICE\tQUEUED\tWRITTEN\tBATCHES\tFAILURES\tREJECTED")
	row := func(name string, st audit.Stats) {
		fmt.Fprintf(tw, "  %s\t%d\t%d\t%d\t%d\t%d\n", name, st.Queued, st.Written, st.Batches, st.Failures, st.Rejected)
	}
	for _, r := range reps {
		row(r.name, r.svc.Stats())
	}
	row("operator", ops.Stats())
	if err := tw.Flush(); err != nil {
		return fmt.Errorf("print stats: %w", err)
	}
	fmt.Fprintln(out, "  (QUEUED: accepted, not yet committed; BATCHES: write transactions; FAILURES: failed opens or writes, each retried)")
	return nil
}

// shutdownAll drains and closes every service at once, each giving up
// after walk.StepTimeout: the entries it could not commit by then are logged,
// and its error counts them.
func shutdownAll(services []*audit.AuditService) error {
	ctx, cancel := context.WithTimeout(context.Background(), walk.StepTimeout)
	defer cancel()
	errs := make([]error, len(services))
	var wg sync.WaitGroup
	for i, svc := range services {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := svc.Shutdown(ctx); err != nil {
				errs[i] = fmt.Errorf("shutdown: %w", err)
			}
		}()
	}
	wg.Wait()
	return errors.Join(errs...)
}

// passwordRE finds the password in a key=value DSN.
var passwordRE = regexp.MustCompile(`(?i)(password\s*=\s*)('(?:[^'\\]|\\.)*'|\S+)`)

// redact returns the DSN without its password, fit to print.
func redact(dsn string) string {
	if u, err := url.Parse(dsn); err == nil && (u.Scheme == "postgres" || u.Scheme == "postgresql") {
		return u.Redacted()
	}
	return passwordRE.ReplaceAllString(dsn, "${1}xxxxx")
}

func yesNo(ok bool) string {
	if ok {
		return "yes"
	}
	return "NO"
}

func short(hash string) string {
	if len(hash) > 16 {
		return hash[:16]
	}
	return hash
}
