package main

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"time"

	"github.com/cleveragents/audit"
	"github.com/schollz/progressbar/v3"
	"github.com/spf13/cobra"
	"golang.org/x/term"
)

// Formats of export.
const (
	formatJSONL = "jsonl"
	formatCSV   = "csv"
)

func (a *app) exportCmd() *cobra.Command {
	var (
		ff     filterFlags
		format string
		out    string
		force  bool
	)
	cmd := &cobra.Command{
		Use:   "export [flags]",
		Short: "Stream the entries that the filters select as JSON lines or CSV",
		Long: `export writes every entry that the filters select, oldest first, as JSON
lines (--format jsonl, list --json's objects) or as CSV (--format csv) with
the header

  "id","time","event_type","actor","resource","outcome","request_id","details","prev_hash","hash"

where time is RFC 3339 in UTC with nine fractional digits and details is the
entry's Details as JSON (empty when it has none). In both formats details
are the JSON bytes that the library stored and hashed.

JSON lines are exact: encoding/json escapes control characters. CSV is
escaped to be safe in a spreadsheet and on a terminal, and every field is in
double quotes:
  - a field that holds a control character (ESC, BEL, CR, LF, tab, DEL, C1),
    another non-printable character or invalid UTF-8, or that begins with a
    double quote, is written Go-quoted, quotes included: "evil\x1b[2J"
    (strconv.Unquote, or any Go-string reader, gives the field back);
  - then a field that begins with =, +, -, @, tab, CR or a single quote gets
    one more single quote in front, so that no spreadsheet runs it as a
    formula (OWASP's advice against CSV injection): '=HYPERLINK(...).
    Remove one leading single quote to get the field back.

It reads the log in pages of 1000 entries by ID, so its memory stays
constant on logs of millions of entries. With --out it writes a temporary
file beside FILE and moves it into place once complete, so FILE is never
left half-written. It refuses a FILE that exists unless --force is given,
and always refuses the database itself and its -wal, -shm and -journal
files, however they are spelled (a symlink, a hard link, another path).
When stderr is a terminal, and the data does not go to that same terminal,
it shows a progress bar there.

An entry that cannot be read (its stored time or details are not what the
library writes) is named by ID on stderr and skipped: export writes the
others, and FILE, and exits 1.`,
		Example: `  auditctl --db app.db export --format csv --out audit.csv
  auditctl --db app.db export --since 7d --actor alice | gzip > alice.jsonl.gz`,
		Args: cobra.NoArgs,
		RunE: runE(func(cmd *cobra.Command) error {
			if format != formatJSONL && format != formatCSV {
				return usageErrorf("--format %q: want jsonl or csv", format)
			}
			f, err := ff.filter(time.Now())
			if err != nil {
				return err
			}
			if out != "" {
				db := ""
				if a.driver != driverPostgres {
					db = a.db
				}
				if err := checkOut(out, db, force); err != nil {
					return err
				}
			}
			return a.withService(cmd, func(ctx context.Context, svc *audit.AuditService) error {
				return a.export(ctx, svc, cmd, f, format, out, force)
			})
		}),
	}
	ff.register(cmd.Flags())
	cmd.Flags().StringVar(&format, "format", formatJSONL, "output format: jsonl or csv")
	cmd.Flags().StringVarP(&out, "out", "o", "", "write to `FILE` instead of stdout")
	cmd.Flags().BoolVar(&force, "force", false, "replace --out FILE if it exists (never the database)")
	return cmd
}

func (a *app) export(ctx context.Context, svc *audit.AuditService, cmd *cobra.Command, f audit.Filter, format, out string, force bool) (err error) {
	dst := cmd.OutOrStdout()
	var tmp *os.File
	if out != "" {
		tmp, err = os.CreateTemp(filepath.Dir(out), "."+filepath.Base(out)+".tmp*")
		if err != nil {
			return fmt.Errorf("--out: %w", err)
		}
		defer func() {
			if tmp != nil {
				tmp.Close()
				os.Remove(tmp.Name())
			}
		}()
		dst = tmp
	}

	var bar *progressbar.ProgressBar
	if showProgress(cmd.ErrOrStderr(), dst) {
		total, err := svc.Count(ctx, f)
		if err != nil {
			return err
		}
		bar = progressbar.NewOptions64(total,
			progressbar.OptionSetWriter(cmd.ErrOrStderr()),
			progressbar.OptionSetDescription("exporting"),
			progressbar.OptionShowCount(),
			progressbar.OptionShowIts(),
			progressbar.OptionSetItsString("entries"),
			progressbar.OptionThrottle(100*time.Millisecond),
			progressbar.OptionClearOnFinish(),
		)
	}

	bw := bufio.NewWriterSize(dst, 64<<10)
	write := exportJSONL(bw)
	if format == formatCSV {
		if write, err = exportCSV(bw); err != nil {
			return err
		}
	}
	bad := &badEntries{w: cmd.ErrOrStderr()}
	var done int64
	n, err := pager{svc: svc, skipped: bad.skip}.forEachPage(ctx, f, 0, func(page []audit.Entry) error {
		if err := write(page); err != nil {
			return err
		}
		done += int64(len(page))
		if bar != nil {
			if done > bar.GetMax64() {
				bar.ChangeMax64(done) // entries committed since Count
			}
			_ = bar.Set64(done)
		}
		return nil
	})
	if bar != nil {
		_ = bar.Finish()
	}
	if err != nil {
		return err
	}
	if err := bw.Flush(); err != nil {
		return fmt.Errorf("write: %w", err)
	}
	if tmp != nil {
		if err := tmp.Sync(); err != nil {
			return fmt.Errorf("--out: %w", err)
		}
		if err := tmp.Close(); err != nil {
			return fmt.Errorf("--out: %w", err)
		}
		if err := place(tmp.Name(), out, force); err != nil {
			return err
		}
		tmp = nil
		fmt.Fprintf(cmd.ErrOrStderr(), "exported %d entries to %s\n", n, out)
	}
	return bad.err()
}

// exportJSONL writes pages as JSON lines.
func exportJSONL(w io.Writer) func([]audit.Entry) error {
	enc := newJSONEncoder(w)
	return func(page []audit.Entry) error {
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
	}
}

// exportCSV writes the header, and returns a function that writes pages as
// CSV records.
func exportCSV(w *bufio.Writer) (func([]audit.Entry) error, error) {
	cw := csvWriter{w: w}
	if err := cw.write(csvHeader); err != nil {
		return nil, fmt.Errorf("write: %w", err)
	}
	return func(page []audit.Entry) error {
		for i := range page {
			rec, err := csvRecord(&page[i])
			if err != nil {
				return err
			}
			if err := cw.write(rec); err != nil {
				return fmt.Errorf("write: %w", err)
			}
		}
		return nil
	}, nil
}

// showProgress says whether export draws a progress bar on stderr: only
// when stderr is a terminal that the data itself does not go to.
func showProgress(stderr, data io.Writer) bool {
	ef, ok := stderr.(*os.File)
	if !ok || !term.IsTerminal(int(ef.Fd())) {
		return false
	}
	if df, ok := data.(*os.File); ok && term.IsTerminal(int(df.Fd())) {
		return false
	}
	return true
}
