package main

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"time"

	"github.com/cleveragents/audit"
	"github.com/spf13/cobra"
)

func (a *app) statsCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "stats",
		Short: "Print the number of entries, the first and last, size on disk and head",
		Long: `stats prints the number of entries, the first and the last entry's ID and
time, the size on disk of a SQLite log (the database file and its -wal
file, as found before auditctl opened them) and the head: the newest
entry's hash, which verify checks and which you can publish to anchor the
log. stats does not verify the chain.`,
		Example: `  auditctl --db app.db stats`,
		Args:    cobra.NoArgs,
		RunE: runE(func(cmd *cobra.Command) error {
			// Measured before opening, which may grow the -wal file. Errors
			// wait until open has had its say about a missing file.
			size, sizeErr := "n/a (postgres)", error(nil)
			if a.driver != driverPostgres {
				size, sizeErr = sqliteSize(a.db)
			}
			return a.withService(cmd, func(ctx context.Context, svc *audit.AuditService) error {
				if sizeErr != nil {
					return sizeErr
				}
				n, err := svc.Count(ctx, audit.Filter{})
				if err != nil {
					return err
				}
				first, err := svc.List(ctx, audit.Filter{Limit: 1})
				if err != nil {
					return err
				}
				last, err := svc.List(ctx, audit.Filter{Limit: 1, Desc: true})
				if err != nil {
					return err
				}
				w := cmd.OutOrStdout()
				fmt.Fprintf(w, "entries: %d\n", n)
				fmt.Fprintf(w, "first:   %s\n", describe(first))
				fmt.Fprintf(w, "last:    %s\n", describe(last))
				fmt.Fprintf(w, "size:    %s\n", size)
				head := "- (empty log)"
				if len(last) == 1 {
					head = last[0].Hash
				}
				_, err = fmt.Fprintf(w, "head:    %s\n", head)
				return err
			})
		}),
	}
	return cmd
}

// describe is an entry's ID and time, or "-" for none.
func describe(es []audit.Entry) string {
	if len(es) == 0 {
		return "-"
	}
	return fmt.Sprintf("ID %d at %s", es[0].ID, es[0].Time.UTC().Format(time.RFC3339Nano))
}

// sqliteSize is the size of the database file and its -wal file.
func sqliteSize(path string) (string, error) {
	db, err := fileSize(path)
	if err != nil {
		return "", fmt.Errorf("size: %w", err)
	}
	wal, err := fileSize(path + "-wal")
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		return "", fmt.Errorf("size: %w", err)
	}
	return fmt.Sprintf("%s (database %d + wal %d bytes)", humanBytes(db+wal), db, wal), nil
}

func fileSize(path string) (int64, error) {
	fi, err := os.Stat(path)
	if err != nil {
		return 0, err
	}
	return fi.Size(), nil
}

// humanBytes is n in binary units, e.g. "1.5 MiB".
func humanBytes(n int64) string {
	const unit = 1024
	if n < unit {
		return fmt.Sprintf("%d B", n)
	}
	div, exp := int64(unit), 0
	for m := n / unit; m >= unit; m /= unit {
		div *= unit
		exp++
	}
	return fmt.Sprintf("%.1f %ciB", float64(n)/float64(div), "KMGTPE"[exp])
}
