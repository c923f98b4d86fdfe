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
//	        (which must not exist, unless --force; never the database)
//	prune   delete entries older than --before, after confirmation or --yes
//	stats   print the entry count, the first and last entries, size and head
//	tail    print the newest entries; with --follow, new ones as they commit
//
// The Merkle tree beside the chain (see the library's Checkpoint):
//
//	keygen      make a checkpoint signing key and print its verifier key
//	checkpoint  print a signed checkpoint of the tree (--signer FILE)
//	prove       print the inclusion proof of entry --id in a checkpoint's tree
//
// list, count, export and tail take the same filters: --actor, --type,
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
// --head anchor missing, when prune is not confirmed, when list or export
// met entries they could not read (each is named on stderr, the others are
// printed), or when a command fails after the database was opened; 2 on a
// usage error or when the database cannot be opened (and when verify cannot
// read the chain); 130 when Ctrl-C (SIGINT) or SIGTERM stopped it.
//
// Errors are printed as "auditctl: " and the failed operation, such as
// "auditctl: verify: chain verification failed at ID 100: ...".
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
	"strings"
	"syscall"
	"time"

	"github.com/spf13/cobra"
)

// Exit statuses.
const (
	exitOK          = 0   // success
	exitFailure     = 1   // verification failed, prune declined, unreadable entries, or a command failed
	exitUsage       = 2   // usage error, or the database could not be opened or read by verify
	exitInterrupted = 130 // stopped by SIGINT or SIGTERM: 128 + SIGINT, as shells report Ctrl-C
)

// stuckGrace is how long auditctl gives a command, once interrupted, to
// notice and return before it exits anyway. Every command checks its
// context between queries and pages, but a write to a pipe that nobody
// reads blocks in the kernel, where no context reaches.
const stuckGrace = 2 * time.Second

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	done := make(chan struct{})
	go func() {
		select {
		case <-done:
			return
		case <-ctx.Done():
		}
		stop() // a second Ctrl-C kills at once
		select {
		case <-done:
		case <-time.After(stuckGrace):
			fmt.Fprintln(os.Stderr, "auditctl: interrupted")
			os.Exit(exitInterrupted)
		}
	}()
	code := run(ctx, os.Args[1:], os.Stdin, os.Stdout, os.Stderr)
	close(done)
	stop()
	os.Exit(code)
}

// run executes auditctl with args (without the program name) and returns
// its exit status. Everything it prints goes to stdout and stderr; it reads
// confirmations from stdin. When ctx ends, the command stops at its next
// query or page and run returns exitInterrupted.
func run(ctx context.Context, args []string, stdin io.Reader, stdout, stderr io.Writer) int {
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
	if ctx.Err() != nil {
		fmt.Fprintln(stderr, "auditctl: interrupted")
		return exitInterrupted
	}
	fmt.Fprintf(stderr, "auditctl: %s\n", errorText(err))
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

// libPrefix is the prefix of the library's errors. auditctl prints its own
// prefix instead.
const libPrefix = "audit: "

// errorText is err's message without the library's prefix: "audit: " is
// dropped where the message or one of its ": "-separated parts begins with
// it, so that "audit: verify: audit: chain verification failed" (a library
// that repeats its prefix) and "audit: verify: chain verification failed"
// both read "verify: chain verification failed".
func errorText(err error) string {
	s := err.Error()
	var b strings.Builder
	for {
		for strings.HasPrefix(s, libPrefix) {
			s = s[len(libPrefix):]
		}
		i := strings.Index(s, ": ")
		if i < 0 {
			b.WriteString(s)
			return b.String()
		}
		b.WriteString(s[:i+2])
		s = s[i+2:]
	}
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
