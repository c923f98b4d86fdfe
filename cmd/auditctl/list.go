package main

import (
	"context"
	"fmt"
	"io"
	"time"

	"github.com/cleveragents/audit"
	"github.com/spf13/cobra"
)

// defaultListLimit is list's --limit default.
const defaultListLimit = 100

func (a *app) listCmd() *cobra.Command {
	var (
		ff     filterFlags
		limit  int
		desc   bool
		asJSON bool
	)
	cmd := &cobra.Command{
		Use:   "list [flags]",
		Short: "Print the entries that the filters select",
		Long: `list prints the entries that the filters select, oldest first (newest first
with --desc): as an aligned table of ID, time (RFC 3339, UTC), event type,
actor, resource and outcome, or with --json as JSON lines, one object per
entry with every field (id, time, event_type, actor, resource, outcome,
request_id, details, prev_hash, hash).

Filters combine with AND. --since and --until take a duration back from now
(24h, 90m, 7d), an RFC 3339 time or a date.

The table prints a field that holds a control character (ESC, BEL, CR, tab,
...), another non-printable character or invalid UTF-8 Go-quoted
("evil\x1b[2J"), so that it cannot act on the terminal, and an empty field
as -. An entry that cannot be read (its stored time or details are not what
the library writes) is named by ID on stderr and skipped; list prints the
others and exits 1.`,
		Example: `  auditctl --db app.db list --actor alice --since 24h
  auditctl --db app.db list --outcome denied --desc --limit 20
  auditctl --db app.db list --request-id 7f3c --json | jq .details`,
		Args: cobra.NoArgs,
		RunE: runE(func(cmd *cobra.Command) error {
			if limit < 0 {
				return usageErrorf("--limit %d: want 0 (no limit) or more", limit)
			}
			f, err := ff.filter(time.Now())
			if err != nil {
				return err
			}
			f.Desc = desc
			return a.withService(cmd, func(ctx context.Context, svc *audit.AuditService) error {
				return list(ctx, svc, cmd.OutOrStdout(), cmd.ErrOrStderr(), f, limit, asJSON)
			})
		}),
	}
	ff.register(cmd.Flags())
	cmd.Flags().IntVar(&limit, "limit", defaultListLimit, "print at most `N` entries; 0 prints all")
	cmd.Flags().BoolVar(&desc, "desc", false, "newest first")
	cmd.Flags().BoolVar(&asJSON, "json", false, "print JSON lines, one object per entry with every field")
	return cmd
}

func (a *app) countCmd() *cobra.Command {
	var ff filterFlags
	cmd := &cobra.Command{
		Use:   "count [flags]",
		Short: "Print how many entries the filters select",
		Long: `count prints how many entries the filters select. It takes list's filters;
--since and --until take a duration back from now (24h, 7d), an RFC 3339
time or a date.`,
		Example: `  auditctl --db app.db count --outcome failure --since 1h`,
		Args:    cobra.NoArgs,
		RunE: runE(func(cmd *cobra.Command) error {
			f, err := ff.filter(time.Now())
			if err != nil {
				return err
			}
			return a.withService(cmd, func(ctx context.Context, svc *audit.AuditService) error {
				n, err := svc.Count(ctx, f)
				if err != nil {
					return err
				}
				_, err = fmt.Fprintln(cmd.OutOrStdout(), n)
				return err
			})
		}),
	}
	ff.register(cmd.Flags())
	return cmd
}

// list prints the entries that f selects, at most limit of them (0: all),
// as a table or as JSON lines. An entry that cannot be read is named on
// errOut and skipped; the error at the end says how many were.
func list(ctx context.Context, svc *audit.AuditService, out, errOut io.Writer, f audit.Filter, limit int, asJSON bool) error {
	bad := &badEntries{w: errOut}
	p := pager{svc: svc, skipped: bad.skip}
	var n int64
	var err error
	if asJSON {
		enc := newJSONEncoder(out)
		n, err = p.forEachPage(ctx, f, limit, func(page []audit.Entry) error {
			for i := range page {
				je, err := toJSON(&page[i])
				if err != nil {
					return err
				}
				if err := enc.Encode(je); err != nil {
					return fmt.Errorf("write: %w", err)
				}
			}
			return nil
		})
	} else {
		tw := newTableWriter(out)
		n, err = p.forEachPage(ctx, f, limit, func(page []audit.Entry) error {
			for i := range page {
				tw.write(&page[i])
			}
			return tw.flushSome()
		})
		if ferr := tw.flush(); err == nil && ferr != nil {
			err = fmt.Errorf("write: %w", ferr)
		}
	}
	if err != nil {
		return err
	}
	if n == 0 && bad.n == 0 {
		fmt.Fprintln(errOut, "no entries match")
	}
	return bad.err()
}
