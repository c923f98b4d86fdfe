// Command cgofree records, reads back and verifies an audit log on the
// pure-Go SQLite driver: the purego tests build it with CGO_ENABLED=0 and
// run it, to prove that such a program needs no C compiler.
//
//	cgofree -db FILE
package main

import (
	"context"
	"flag"
	"fmt"
	"os"

	"github.com/cleveragents/audit"
	"github.com/cleveragents/audit/purego"
	"github.com/glebarez/sqlite"
)

func main() {
	path := flag.String("db", "audit.db", "the SQLite file of the log")
	flag.Parse()
	if err := run(*path); err != nil {
		fmt.Fprintln(os.Stderr, "cgofree:", err)
		os.Exit(1)
	}
}

func run(path string) error {
	ctx := context.Background()
	svc, err := audit.New(audit.WithDialector(sqlite.Open(purego.DSN(path))), audit.WithAsync(false))
	if err != nil {
		return err
	}
	defer svc.Close()
	if err := svc.Record(ctx, audit.Entry{EventType: "cgofree.run", Actor: "cgofree"}); err != nil {
		return err
	}
	rep, err := svc.Verify(ctx)
	if err != nil {
		return err
	}
	fmt.Printf("entries=%d head=%s\n", rep.Entries, rep.Head)
	return svc.Shutdown(ctx)
}
