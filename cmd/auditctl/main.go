// Command auditctl answers an operator's questions about an audit log
// written by github.com/cleveragents/audit: who did what and when, and
// whether the log has been tampered with. It reads the log through the
// library's public API, so it sees exactly what a service sees.
//
// Usage:
//
//	auditctl [--db PATH | --driver postgres --dsn DSN] [--table NAME] COMMAND [flags]
//
// The commands:
//
//	list    print entries as an aligned table, or as JSON lines with --json
//	count   print how many entries the filters select
//	verify  check the hash chain (and an anchor with --head); exit 1 if it fails
//	export  stream entries as JSON lines or CSV, to stdout or --out FILE
//	prune   delete entries older than --before, after confirmation or --yes
//	stats   print the entry count, the first and last entries, size and head
//
// list, count and export take the same filters: --actor, --type,
// --resource, --outcome, --request-id, --since and --until. A time is a
// duration back from now (24h, 90m, 7d), an RFC 3339 time
// (2024-05-01T12:00:00Z) or a date (2024-05-01, midnight UTC).
//
// The log is a SQLite file (--db, default audit.db), which must exist:
// auditctl never creates one. --driver postgres with --dsn reads a
// PostgreSQL database instead. --table names the table (default
// audit_entries), which must exist too. A log chained with an HMAC key
// (WithChainKey) verifies only with --key-file, a file holding the key's
// exact bytes.
//
// Exit status: 0 on success; 1 when verify finds the chain broken or the
// --head anchor missing, when prune is not confirmed, or when a command
// fails after the database was opened; 2 on a usage error or when the
// database cannot be opened (and when verify cannot read the chain).
//
// Every command has --help.
package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"

	"github.com/spf13/cobra"
)

// Exit statuses.
const (
	exitOK      = 0 // success
	exitFailure = 1 // verification failed, prune declined, or a command failed
	exitUsage   = 2 // usage error, or the database could not be opened or read by verify
)

func main() {
	os.Exit(run(os.Args[1:], os.Stdin, os.Stdout, os.Stderr))
}

// run executes auditctl with args (without the program name) and returns
// its exit status. Everything it prints goes to stdout and stderr; it reads
// confirmations from stdin.
func run(args []string, stdin io.Reader, stdout, stderr io.Writer) int {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()

	a := &app{stdin: stdin, stdout: stdout, stderr: stderr}
	root := a.rootCmd()
	root.SetArgs(args)
	root.SetIn(stdin)
	root.SetOut(stdout)
	root.SetErr(stderr)
	cmd, err := root.ExecuteContextC(ctx)
	if err == nil {
		return exitOK
	}
	fmt.Fprintf(stderr, "auditctl: %v\n", err)
	var ee *exitError
	if errors.As(err, &ee) {
		return ee.code
	}
	// Not from a command's RunE: cobra refused the command line (unknown
	// command or flag, bad flag value, stray or missing arguments).
	if cmd == nil {
		cmd = root
	}
	fmt.Fprintf(stderr, "Run '%s --help' for usage.\n", cmd.CommandPath())
	return exitUsage
}

// exitError is an error with the exit status it ends auditctl with.
type exitError struct {
	code int
	err  error
}

func (e *exitError) Error() string { return e.err.Error() }
func (e *exitError) Unwrap() error { return e.err }

// usageErrorf is a usage error: a flag that parsed but makes no sense.
func usageErrorf(format string, args ...any) error {
	return &exitError{code: exitUsage, err: fmt.Errorf(format, args...)}
}

// openError is a database that cannot be opened.
func openError(err error) error {
	return &exitError{code: exitUsage, err: err}
}

// failure is an error with exit status 1.
func failure(err error) error {
	return &exitError{code: exitFailure, err: err}
}

// runE adapts a command's body to cobra: errors that carry no exit status
// get status 1, so that run can tell them from cobra's own usage errors.
func runE(fn func(cmd *cobra.Command) error) func(*cobra.Command, []string) error {
	return func(cmd *cobra.Command, _ []string) error {
		err := fn(cmd)
		if err == nil {
			return nil
		}
		var ee *exitError
		if errors.As(err, &ee) {
			return err
		}
		return failure(err)
	}
}
