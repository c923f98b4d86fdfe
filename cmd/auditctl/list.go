package main

import (
	"context"
	"fmt"
	"time"

	"github.com/cleveragents/audit"
	"github.com/spf13/cobra"
)

// pageSize is how many entries list and export read per query: memory
// stays constant however many entries they stream.
const pageSize = 1000

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
(24h, 90m, 7d), an RFC 3339 time or a date.`,
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
				out := cmd.OutOrStdout()
				if asJSON {
					enc := newJSONEncoder(out)
					_, err := forEachPage(ctx, svc, f, limit, func(page []audit.Entry) error {
						for i := range page {
							if err := enc.Encode(toJSON(&page[i])); err != nil {
								return err
							}
						}
						return nil
					})
					return err
				}
				tw := newTableWriter(out)
				n, err := forEachPage(ctx, svc, f, limit, func(page []audit.Entry) error {
					for i := range page {
						tw.write(&page[i])
					}
					return tw.flush()
				})
				if err == nil && n == 0 {
					fmt.Fprintln(cmd.ErrOrStderr(), "no entries match")
				}
				return err
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

// forEachPage reads the entries that f selects, in pages of at most
// pageSize, in f.Desc's order, and hands each page to fn; it stops after
// limit entries (0: none). It pages by ID (keyset pagination), so each
// query is an index range however deep into the log it reads, and returns
// how many entries it read.
func forEachPage(ctx context.Context, svc *audit.AuditService, f audit.Filter, limit int, fn func([]audit.Entry) error) (int64, error) {
	var n int64
	for {
		f.Limit = pageSize
		if limit > 0 {
			f.Limit = min(pageSize, limit-int(n))
		}
		page, err := svc.List(ctx, f)
		if err != nil {
			return n, err
		}
		if len(page) == 0 {
			return n, nil
		}
		if err := fn(page); err != nil {
			return n, err
		}
		n += int64(len(page))
		if len(page) < f.Limit || (limit > 0 && n >= int64(limit)) {
			return n, nil
		}
		last := page[len(page)-1].ID
		if f.Desc {
			f.BeforeID = last
		} else {
			f.AfterID = last
		}
	}
}
