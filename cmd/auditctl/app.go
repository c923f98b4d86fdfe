package main

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"math"
	"os"
	"strings"

	"github.com/cleveragents/audit"
	_ "github.com/mattn/go-sqlite3" // the "sqlite3" driver of the read-only table check
	"github.com/spf13/cobra"
	"gorm.io/driver/postgres"
	"gorm.io/gorm"
	gormlogger "gorm.io/gorm/logger"
)

// Drivers that --driver accepts.
const (
	driverSQLite   = "sqlite"
	driverPostgres = "postgres"
)

// app holds the global flags and the streams of one run.
type app struct {
	stdin          io.Reader
	stdout, stderr io.Writer

	db      string // --db
	dsn     string // --dsn
	driver  string // --driver
	table   string // --table
	keyFile string // --key-file
	verbose bool   // --verbose
	follow  bool   // tail --follow: see sqliteOption
}

func (a *app) rootCmd() *cobra.Command {
	root := &cobra.Command{
		Use:   "auditctl",
		Short: "Query, verify, export and prune an audit log",
		Long: `auditctl answers an operator's questions about an audit log written by
github.com/cleveragents/audit: who did what and when (list, count, export,
and tail, which follows new entries as they commit), whether the log has
been tampered with (verify), and how big it is (stats). It prints signed
checkpoints of the log's Merkle tree (checkpoint, with a key from keygen)
and proofs that an entry is in one (prove), and prunes old entries (prune).

The log is a SQLite file (--db), which must exist, or a PostgreSQL database
(--driver postgres --dsn DSN). Times in filters are a duration back from now
(24h, 90m, 7d), an RFC 3339 time (2024-05-01T12:00:00Z) or a date
(2024-05-01, midnight UTC).

Exit status: 0 on success; 1 when verify fails, prune is not confirmed, list
or export skipped entries they could not read, or a command fails; 2 on a
usage error or when the database cannot be opened; 130 when interrupted
(Ctrl-C).`,
		Args:          cobra.NoArgs,
		SilenceErrors: true, // run prints them, once
		SilenceUsage:  true, // a database error is not a usage error
		RunE: func(cmd *cobra.Command, _ []string) error {
			cmd.SetOut(cmd.ErrOrStderr())
			_ = cmd.Help()
			return usageErrorf("missing command")
		},
	}
	pf := root.PersistentFlags()
	pf.StringVar(&a.db, "db", audit.DefaultSQLitePath, "SQLite database `file` (must exist)")
	pf.StringVar(&a.driver, "driver", driverSQLite, "database driver: sqlite or postgres")
	pf.StringVar(&a.dsn, "dsn", "", "PostgreSQL connection string (with --driver postgres)")
	pf.StringVar(&a.table, "table", audit.DefaultTable, "table of the audit entries")
	pf.StringVar(&a.keyFile, "key-file", "", "`file` holding the HMAC chain key (WithChainKey), its exact bytes")
	pf.BoolVarP(&a.verbose, "verbose", "v", false, "log the library's warnings and errors to stderr")

	root.AddCommand(a.listCmd(), a.countCmd(), a.verifyCmd(), a.exportCmd(), a.pruneCmd(), a.statsCmd())
	// The Merkle tree's commands and verify's --checkpoint (tree.go).
	for _, c := range root.Commands() {
		if c.Name() == "verify" {
			a.extendVerify(c)
		}
	}
	root.AddCommand(a.keygenCmd(), a.checkpointCmd(), a.proveCmd())
	root.AddCommand(a.tailCmd())
	return root
}

// withService opens the log, runs fn on it and closes it. Opening errors
// (a missing file or table, a bad key file, a database that does not
// answer) have exit status 2.
func (a *app) withService(cmd *cobra.Command, fn func(ctx context.Context, svc *audit.AuditService) error) error {
	ctx := cmd.Context()
	svc, err := a.open(ctx, cmd)
	if err != nil {
		return err
	}
	err = fn(ctx, svc)
	if cerr := svc.Close(); cerr != nil && err == nil {
		err = failure(fmt.Errorf("close: %w", cerr))
	}
	return err
}

// writers are the commands that write to the log (checkpoint stores the
// checkpoint it signs); every other command
// opens it read-only.
var writers = map[string]bool{"prune": true, "checkpoint": true}

// open checks the global flags and opens the log. The library would create
// a missing SQLite file or table on first use; auditctl refuses instead, so
// that a mistyped --db or --table is an error rather than an empty log that
// verifies.
func (a *app) open(ctx context.Context, cmd *cobra.Command) (*audit.AuditService, error) {
	flags := cmd.Flags()
	var opts []audit.Option
	switch a.driver {
	case driverSQLite, "sqlite3":
		if flags.Changed("dsn") {
			return nil, usageErrorf("--dsn needs --driver postgres; a SQLite database is named with --db")
		}
		if a.db == "" {
			return nil, usageErrorf("--db: empty path")
		}
		fi, err := os.Stat(a.db)
		switch {
		case errors.Is(err, fs.ErrNotExist):
			return nil, openError(fmt.Errorf("database %s does not exist", a.db))
		case err != nil:
			return nil, openError(fmt.Errorf("database: %w", err))
		case !fi.Mode().IsRegular():
			// Opening a named pipe would wait for a writer, for ever.
			return nil, openError(fmt.Errorf("database %s is %s, not a SQLite file", a.db, fileKind(fi.Mode())))
		}
		if err := checkSQLiteTable(ctx, a.db, a.table); err != nil {
			return nil, openError(err)
		}
		opts = append(opts, a.sqliteOption())
	case driverPostgres:
		if flags.Changed("db") {
			return nil, usageErrorf("--db names a SQLite file; with --driver postgres use --dsn")
		}
		if a.dsn == "" {
			return nil, usageErrorf("--driver postgres needs --dsn")
		}
		if err := checkPostgresTable(ctx, a.dsn, a.table); err != nil {
			return nil, openError(err)
		}
		opts = append(opts, audit.WithDialector(postgres.Open(a.dsn)))
	default:
		return nil, usageErrorf("--driver %q: want sqlite or postgres", a.driver)
	}
	opts = append(opts, audit.WithTable(a.table), audit.WithLogger(a.logger()))
	if !writers[cmd.Name()] {
		// Readers never write: the file, and the absence of -wal and
		// -shm files, stay as they were; a missing table is an error.
		opts = append(opts, audit.WithReadOnly())
	}
	if a.keyFile != "" {
		key, err := os.ReadFile(a.keyFile)
		if err != nil {
			return nil, openError(fmt.Errorf("--key-file: %w", err))
		}
		if len(key) == 0 {
			return nil, usageErrorf("--key-file %s is empty", a.keyFile)
		}
		opts = append(opts, audit.WithChainKey(key))
	}
	svc, err := audit.New(opts...)
	if err != nil {
		return nil, usageErrorf("%w", err)
	}
	// The library opens the database lazily; a cheap query now makes a
	// database that cannot be opened an opening error (status 2) rather
	// than a failure of the command.
	// It selects no row (IDs are below MaxInt64), so that an unreadable
	// entry is list's and export's to report, not a failure to open.
	if _, err := svc.Count(ctx, audit.Filter{AfterID: math.MaxInt64}); err != nil {
		_ = svc.Close()
		return nil, openError(fmt.Errorf("open the log: %w", err))
	}
	return svc, nil
}

// fileKind names the type of a file that is not a regular file.
func fileKind(m fs.FileMode) string {
	switch {
	case m.IsDir():
		return "a directory"
	case m&fs.ModeNamedPipe != 0:
		return "a named pipe (FIFO)"
	case m&fs.ModeSocket != 0:
		return "a socket"
	case m&fs.ModeCharDevice != 0:
		return "a character device"
	case m&fs.ModeDevice != 0:
		return "a block device"
	}
	return "a special file"
}

func (a *app) logger() *slog.Logger {
	if !a.verbose {
		return slog.New(slog.DiscardHandler)
	}
	return slog.New(slog.NewTextHandler(a.stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
}

// checkSQLiteTable opens path read-only and checks that it is a SQLite
// database holding table.
func checkSQLiteTable(ctx context.Context, path, table string) error {
	// Immutable when no writer is at work (no -wal, no -journal), so that
	// even a read-only connection creates no -wal or -shm file.
	dsn := "file:" + sqliteURIPath(path) + "?mode=ro"
	_, werr := os.Stat(path + "-wal")
	_, jerr := os.Stat(path + "-journal")
	if errors.Is(werr, fs.ErrNotExist) && errors.Is(jerr, fs.ErrNotExist) {
		dsn += "&immutable=1"
	}
	db, err := sql.Open("sqlite3", dsn)
	if err != nil {
		return fmt.Errorf("open %s: %w", path, err)
	}
	defer db.Close()
	var n int
	err = db.QueryRowContext(ctx, `SELECT count(*) FROM sqlite_master WHERE type = 'table' AND name = ? COLLATE NOCASE`, table).Scan(&n)
	if err != nil {
		return fmt.Errorf("open %s: %w", path, err)
	}
	if n == 0 {
		return fmt.Errorf("database %s has no table %q (check --table)", path, table)
	}
	return nil
}

// sqliteURIPath escapes the characters that end or escape the path of a
// SQLite URI filename.
func sqliteURIPath(path string) string {
	return strings.NewReplacer("%", "%25", "?", "%3f", "#", "%23").Replace(path)
}

// checkPostgresTable connects to dsn and checks that table exists there.
func checkPostgresTable(ctx context.Context, dsn, table string) error {
	db, err := gorm.Open(postgres.Open(dsn), &gorm.Config{Logger: gormlogger.Discard})
	if err != nil {
		return fmt.Errorf("open postgres: %w", err)
	}
	if sqlDB, err := db.DB(); err == nil {
		defer sqlDB.Close()
	}
	var n int64
	err = db.WithContext(ctx).Raw(`SELECT count(*) FROM information_schema.tables WHERE table_schema = current_schema() AND table_name = ?`, table).Scan(&n).Error
	if err != nil {
		return fmt.Errorf("postgres: %w", err)
	}
	if n == 0 {
		return fmt.Errorf("postgres database has no table %q in its current schema (check --table)", table)
	}
	return nil
}
