package main

import (
	"context"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"strings"

	"github.com/cleveragents/audit"
	"github.com/spf13/cobra"
)

func (a *app) verifyCmd() *cobra.Command {
	var head, jsonl string
	cmd := &cobra.Command{
		Use:   "verify [flags]",
		Short: "Check the hash chain; exit 1 if an entry was altered, inserted or removed",
		Long: `verify walks the hash chain from the first remaining entry to the newest and
prints what it checked: the number of entries, the first and last IDs, and
the head (the newest entry's hash).

It exits with status 1, naming the first entry whose link or hash does not
check ("ID N"), when an entry was altered, inserted, or removed from the
start or the middle. Pruning is not tampering.

Removing the newest entries (together with the chain's head row) leaves a
chain that checks: only a head published earlier can catch it. Give it with
--head: verify then exits 1 unless that hash is still the head, or is the
hash of an entry still in the log (the log has grown since it was
published). An anchor that was pruned away cannot be found either.

A log written with an HMAC chain key (WithChainKey) verifies only with
--key-file, a file holding the key's exact bytes (a trailing newline is part
of the key).

Exit status: 0 when the chain verifies (and the anchor is found); 1 when it
does not; 2 on a usage error or when the log cannot be opened or read.

` + verifyJSONLHelp,
		Example: `  auditctl --db app.db verify
  auditctl --db app.db verify --key-file /etc/audit/chain.key --head "$(cat published-head)"
  auditctl verify --jsonl audit.jsonl --head "$(cat published-head)"`,
		Args: cobra.NoArgs,
		RunE: runE(func(cmd *cobra.Command) error {
			want := strings.ToLower(strings.TrimSpace(head))
			if want != "" {
				if b, err := hex.DecodeString(want); err != nil || len(b) != 32 {
					return usageErrorf("--head %q: want a hash of 64 hex digits, as verify prints it", head)
				}
			}
			if jsonl != "" {
				return a.verifyJSONL(cmd.InOrStdin(), cmd.OutOrStdout(), cmd.ErrOrStderr(), jsonl, want)
			}
			return a.withService(cmd, func(ctx context.Context, svc *audit.AuditService) error {
				return a.verify(ctx, svc, cmd.OutOrStdout(), cmd.ErrOrStderr(), want)
			})
		}),
	}
	cmd.Flags().StringVar(&jsonl, "jsonl", "", "check the export (export --format jsonl) in `FILE` instead of the database")
	cmd.Flags().StringVar(&head, "head", "", "a head `HEX` published earlier, which must still be the head or an entry's hash")
	return cmd
}

func (a *app) verify(ctx context.Context, svc *audit.AuditService, out, errOut io.Writer, want string) error {
	rep, err := svc.Verify(ctx)
	if errors.Is(err, audit.ErrTampered) {
		fmt.Fprintf(out, "TAMPERED: %d entries checked before the first bad one\n", rep.Entries)
		if rep.Entries == 0 {
			hint := "pass the chain key with --key-file"
			if a.keyFile != "" {
				hint = "check that --key-file holds the chain key"
			}
			fmt.Fprintf(errOut, "hint: the first entry does not check; if the log is chained with an HMAC key (WithChainKey), %s\n", hint)
		}
		return failure(err)
	}
	if err != nil {
		return &exitError{code: exitUsage, err: err} // could not check: not a verdict
	}
	printReport(out, rep)
	if want == "" {
		_, err := fmt.Fprintln(out, "OK: the chain verifies")
		return err
	}
	if rep.Head == want {
		_, err := fmt.Fprintln(out, "OK: the chain verifies and its head is --head")
		return err
	}
	id, err := findHash(ctx, svc, want, rep.LastID)
	if err != nil {
		return &exitError{code: exitUsage, err: fmt.Errorf("look for --head: %w", err)}
	}
	if id == 0 {
		fmt.Fprintln(out, "HEAD MISMATCH")
		return failure(fmt.Errorf("head mismatch: --head %s is neither the head nor the hash of an entry in the log: entries up to it were removed or rewritten, or pruned", want))
	}
	_, err = fmt.Fprintf(out, "OK: the chain verifies and --head is entry %d's hash; %d entries were added after it\n", id, rep.LastID-id)
	return err
}

func printReport(w io.Writer, rep audit.VerifyReport) {
	head := rep.Head
	if head == "" {
		head = "- (empty log)"
	}
	fmt.Fprintf(w, "entries:  %d\n", rep.Entries)
	fmt.Fprintf(w, "first ID: %d\n", rep.FirstID)
	fmt.Fprintf(w, "last ID:  %d\n", rep.LastID)
	fmt.Fprintf(w, "head:     %s\n", head)
}

// findHash returns the ID of the entry, at most lastID, whose Hash is hash,
// or 0. The API has no lookup by hash, so it pages through the log.
func findHash(ctx context.Context, svc *audit.AuditService, hash string, lastID int64) (int64, error) {
	var found int64
	errFound := errors.New("found")
	_, err := pager{svc: svc}.forEachPage(ctx, audit.Filter{}, 0, func(page []audit.Entry) error {
		for i := range page {
			e := &page[i]
			if e.ID > lastID {
				return errFound // past what Verify checked
			}
			if e.Hash == hash {
				found = e.ID
				return errFound
			}
		}
		return nil
	})
	if err != nil && !errors.Is(err, errFound) {
		return 0, err
	}
	return found, nil
}
