package main

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/cleveragents/audit"
	"github.com/spf13/cobra"
)

func (a *app) pruneCmd() *cobra.Command {
	var (
		before string
		yes    bool
	)
	cmd := &cobra.Command{
		Use:   "prune --before DURATION|RFC3339 [flags]",
		Short: "Delete the entries older than --before",
		Long: `prune deletes the oldest entries, in ID order, up to the first entry whose
time is not before --before, and prints how many it deleted. The chain
stays verifiable: the hash of the last deleted entry is kept as a
checkpoint.

--before takes a duration back from now (90d, 720h), an RFC 3339 time or a
date. prune asks for confirmation on stdin ("Prune entries before X?
[y/N]") unless --yes is given; any answer but y or yes, or no answer, ends
it with status 1 and nothing deleted.`,
		Example: `  auditctl --db app.db prune --before 90d
  auditctl --db app.db prune --before 2024-01-01 --yes`,
		Args: cobra.NoArgs,
		RunE: runE(func(cmd *cobra.Command) error {
			cutoff, err := parseWhen(before, time.Now())
			if err != nil {
				return usageErrorf("--before: %w", err)
			}
			return a.withService(cmd, func(ctx context.Context, svc *audit.AuditService) error {
				stamp := cutoff.UTC().Format(time.RFC3339Nano)
				if !yes {
					ok, err := confirm(cmd.InOrStdin(), cmd.ErrOrStderr(), fmt.Sprintf("Prune entries before %s? [y/N] ", stamp))
					if err != nil {
						return err
					}
					if !ok {
						return failure(errors.New("prune not confirmed: nothing deleted"))
					}
				}
				n, err := svc.Prune(ctx, cutoff)
				if err != nil {
					return fmt.Errorf("pruned %d entries, then: %w", n, err)
				}
				_, err = fmt.Fprintf(cmd.OutOrStdout(), "pruned %d entries before %s\n", n, stamp)
				return err
			})
		}),
	}
	cmd.Flags().StringVar(&before, "before", "", "delete entries before this `time`: a duration back from now (90d) or RFC 3339 (required)")
	cmd.Flags().BoolVarP(&yes, "yes", "y", false, "do not ask for confirmation")
	_ = cmd.MarkFlagRequired("before")
	return cmd
}

// confirm prints prompt and reads one line from in: true for y or yes, in
// any case. End of input is no.
func confirm(in io.Reader, out io.Writer, prompt string) (bool, error) {
	fmt.Fprint(out, prompt)
	line, err := bufio.NewReader(in).ReadString('\n')
	if err != nil && !errors.Is(err, io.EOF) {
		return false, fmt.Errorf("read confirmation: %w", err)
	}
	if errors.Is(err, io.EOF) && line == "" {
		fmt.Fprintln(out) // end the prompt's line
	}
	switch strings.ToLower(strings.TrimSpace(line)) {
	case "y", "yes":
		return true, nil
	}
	return false, nil
}
