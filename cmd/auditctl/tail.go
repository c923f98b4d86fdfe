package main

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"time"

	"github.com/cleveragents/audit"
	"github.com/spf13/cobra"
	"gorm.io/driver/sqlite"
)

// defaultTailLines is tail's -n default, as tail(1)'s.
const defaultTailLines = 10

func (a *app) tailCmd() *cobra.Command {
	var (
		ff      filterFlags
		lines   int
		afterID int64
		follow  bool
		asJSON  bool
	)
	cmd := &cobra.Command{
		Use:   "tail [flags]",
		Short: "Print the newest entries that the filters select; with --follow, new ones as they commit",
		Long: `tail prints, oldest first, the last 10 entries that the filters select (-n
sets how many), or with --after ID every entry after that ID. With --follow
it then keeps printing the entries that the filters select as they are
committed, by any service or process, in ID order, each once, until Ctrl-C.
It prints as list does: an aligned table (a burst of entries is aligned
together), or with --json one JSON object per line with every field.

tail --follow reads the table every 50 ms while it waits, so it sees
commits of every writer; it takes no lock that a writer waits for. To
resume after an interruption without a gap or a repeat, pass the last ID
printed as --after.

Like the other read commands tail opens a SQLite log read-only, but with
--follow never as immutable: an immutable reader assumes the file does not
change and would miss, or misread, what a writer that starts later
commits. On a log in WAL mode, SQLite then reads through the -wal and -shm
files beside it, and creates them when no writer is at work (they stay, as
a writer would leave them); in a directory it may not write, tail --follow
of such a log fails to open (exit 2), while tail without --follow reads it.

An entry that cannot be read is named by ID on stderr and skipped; without
--follow tail then exits 1. A failed read while following is printed on
stderr and retried.`,
		Example: `  auditctl --db app.db tail
  auditctl --db app.db tail --follow --outcome denied
  auditctl --db app.db tail --after 41200 --json | jq -c .details`,
		Args: cobra.NoArgs,
		RunE: runE(func(cmd *cobra.Command) error {
			flags := cmd.Flags()
			if lines < 0 {
				return usageErrorf("-n %d: want 0 or more", lines)
			}
			if flags.Changed("after") && flags.Changed("lines") {
				return usageErrorf("-n and --after: give one (--after prints every entry after ID)")
			}
			if afterID < 0 {
				return usageErrorf("--after %d: want an ID, 0 or more", afterID)
			}
			f, err := ff.filter(time.Now())
			if err != nil {
				return err
			}
			a.follow = follow
			return a.withService(cmd, func(ctx context.Context, svc *audit.AuditService) error {
				if !flags.Changed("after") {
					if afterID, err = startOfLast(ctx, svc, f, lines); err != nil {
						return err
					}
				}
				f.AfterID = afterID
				if !follow {
					return list(ctx, svc, cmd.OutOrStdout(), cmd.ErrOrStderr(), f, 0, asJSON)
				}
				return followLog(ctx, svc, cmd.OutOrStdout(), cmd.ErrOrStderr(), f, asJSON)
			})
		}),
	}
	ff.register(cmd.Flags())
	cmd.Flags().IntVarP(&lines, "lines", "n", defaultTailLines, "print the last `N` entries first (0: only new ones, with --follow)")
	cmd.Flags().Int64Var(&afterID, "after", 0, "print the entries after this `ID` instead of the last N")
	cmd.Flags().BoolVarP(&follow, "follow", "f", false, "keep printing entries as they are committed, until Ctrl-C")
	cmd.Flags().BoolVar(&asJSON, "json", false, "print JSON lines, one object per entry with every field")
	return cmd
}

// sqliteOption names the SQLite log to open: WithSQLite, except for tail
// --follow, which opens the file read-only but never immutable (WithSQLite
// with WithReadOnly opens a file with no -wal or -journal as immutable,
// which is right only while no writer starts). Without WithSQLite the
// library does not watch the file for replacement, which a service that
// never writes does not do either.
func (a *app) sqliteOption() audit.Option {
	if !a.follow {
		return audit.WithSQLite(a.db)
	}
	return audit.WithDialector(sqlite.Open("file:" + sqliteURIPath(a.db) + "?mode=ro&_busy_timeout=5000"))
}

// startOfLast returns the ID after which the last n entries that f selects
// begin: 0 when there are at most n; the newest entry's ID when n is 0.
// Entries that cannot be read are stepped over here: printing them is
// list's and followLog's to report.
func startOfLast(ctx context.Context, svc *audit.AuditService, f audit.Filter, n int) (int64, error) {
	f.Desc = true
	var oldest int64
	_, err := pager{svc: svc, skipped: func(int64, error) {}}.forEachPage(ctx, f, max(n, 1), func(page []audit.Entry) error {
		oldest = page[len(page)-1].ID
		return nil
	})
	switch {
	case err != nil:
		return 0, err
	case oldest == 0:
		return 0, nil
	case n == 0:
		return oldest, nil
	}
	return oldest - 1, nil
}

// tailPrinter prints entries in list's formats, buffered until flush.
type tailPrinter struct {
	bw    *bufio.Writer
	json  func([]audit.Entry) error // nil for the table
	table *tableWriter
}

func newTailPrinter(out io.Writer, asJSON bool) *tailPrinter {
	p := &tailPrinter{bw: bufio.NewWriter(out)}
	if asJSON {
		p.json = exportJSONL(p.bw)
	} else {
		p.table = newTableWriter(p.bw)
	}
	return p
}

func (p *tailPrinter) write(e audit.Entry) error {
	if p.json != nil {
		return p.json([]audit.Entry{e})
	}
	p.table.write(&e)
	return nil
}

func (p *tailPrinter) flush() error {
	if p.table != nil {
		if err := p.table.flush(); err != nil {
			return fmt.Errorf("write: %w", err)
		}
	}
	if err := p.bw.Flush(); err != nil {
		return fmt.Errorf("write: %w", err)
	}
	return nil
}

// followLog prints the entries that f selects after f.AfterID, and then
// each new one as it commits, until ctx ends; it returns ctx's error then,
// so that auditctl exits as interrupted. Entries are flushed, and a table
// aligned, whenever no more are waiting.
func followLog(ctx context.Context, svc *audit.AuditService, out, errOut io.Writer, f audit.Filter, asJSON bool) error {
	p := newTailPrinter(out, asJSON)
	bad := &badEntries{w: errOut}
	for {
		next, err := followFrom(ctx, svc, p, bad, errOut, f)
		if ferr := p.flush(); err == nil {
			err = ferr
		}
		if err != nil {
			return err
		}
		f.AfterID = next
	}
}

// tailItem is one value of a Tail sequence.
type tailItem struct {
	e   audit.Entry
	err error
}

// followFrom prints what svc.Tail(f) yields. It returns ctx's error when
// ctx ends, or a printing error, or, when an entry cannot be read, nil and
// that entry's ID, named on stderr, to follow on after it: Tail would retry
// it for ever. Any other read error is printed and Tail retries it.
//
// Tail runs on a goroutine of its own, which followFrom ends and waits for
// before it returns, so that followFrom sees whether more entries are
// already waiting (then it does not flush yet: a burst is aligned together).
func followFrom(ctx context.Context, svc *audit.AuditService, p *tailPrinter, bad *badEntries, errOut io.Writer, f audit.Filter) (next int64, err error) {
	tctx, cancel := context.WithCancel(ctx)
	items := make(chan tailItem, pageSize)
	go func() {
		defer close(items)
		for e, err := range svc.Tail(tctx, f) {
			select {
			case items <- tailItem{e, err}:
			case <-tctx.Done():
				return
			}
		}
	}()
	defer func() {
		cancel()
		for range items { // until the goroutine ends
		}
	}()
	last := f.AfterID
	for it := range items {
		if it.err == nil {
			if err := p.write(it.e); err != nil {
				return 0, err
			}
			last = it.e.ID
			if len(items) == 0 {
				if err := p.flush(); err != nil {
					return 0, err
				}
			}
			continue
		}
		if ctx.Err() != nil {
			break
		}
		if errors.Is(it.err, audit.ErrClosed) || errors.Is(it.err, audit.ErrInvalidFilter) {
			return 0, it.err
		}
		g := f
		g.AfterID, g.Limit = last, pageSize
		good, badID, badErr := pager{svc: svc}.narrow(ctx, g, it.err)
		if badID == 0 {
			if ctx.Err() != nil {
				break
			}
			fmt.Fprintf(errOut, "auditctl: tail: %s (retrying)\n", errorText(it.err))
			continue
		}
		for _, e := range good {
			if err := p.write(e); err != nil {
				return 0, err
			}
		}
		if err := p.flush(); err != nil {
			return 0, err
		}
		bad.skip(badID, badErr)
		return badID, nil
	}
	if ctx.Err() != nil {
		return 0, ctx.Err()
	}
	// Not to be restarted from f.AfterID: that would print entries again.
	return 0, errors.New("tail: the sequence of entries ended before ctx")
}
