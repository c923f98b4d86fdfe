package auditexport_test

import (
	"bufio"
	"context"
	"database/sql"
	"encoding/json"
	"fmt"
	"log"
	"os"
	"path/filepath"
	"time"

	"github.com/cleveragents/audit"
	"github.com/cleveragents/audit/auditexport"
	_ "github.com/mattn/go-sqlite3"
)

// An exporter copies the log to JSON lines, keeping its cursor in the
// log's own database; it runs until its ctx ends.
func Example() {
	dir, err := os.MkdirTemp("", "auditexport-example-")
	if err != nil {
		log.Fatal(err)
	}
	defer os.RemoveAll(dir)
	dbPath := filepath.Join(dir, "audit.db")
	ctx := context.Background()

	svc, err := audit.New(audit.WithSQLite(dbPath))
	if err != nil {
		log.Fatal(err)
	}
	defer svc.Close()
	at := time.Date(2026, 12, 1, 9, 0, 0, 0, time.UTC)
	for _, who := range []string{"alice", "bob"} {
		if err := svc.Record(ctx, audit.Entry{Time: at, EventType: "user.login", Actor: who}); err != nil {
			log.Fatal(err)
		}
	}
	if err := svc.Flush(ctx); err != nil {
		log.Fatal(err)
	}

	db, err := sql.Open("sqlite3", dbPath+"?_busy_timeout=5000")
	if err != nil {
		log.Fatal(err)
	}
	defer db.Close()
	out := filepath.Join(dir, "audit.jsonl")
	sink, err := auditexport.NewFileSink(out, auditexport.FileOptions{MaxSize: 64 << 20})
	if err != nil {
		log.Fatal(err)
	}
	defer sink.Close()
	x, err := auditexport.New(auditexport.Config{Source: svc, Sink: sink, DB: db, Consumer: "archive"})
	if err != nil {
		log.Fatal(err)
	}

	runCtx, stop := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- x.Run(runCtx) }()
	for {
		lag, err := x.Lag(ctx)
		if err != nil {
			log.Fatal(err)
		}
		if lag == 0 {
			break
		}
		time.Sleep(10 * time.Millisecond)
	}
	stop()
	if err := <-done; err != nil {
		log.Fatal(err)
	}

	f, err := os.Open(out)
	if err != nil {
		log.Fatal(err)
	}
	defer f.Close()
	lines := bufio.NewScanner(f)
	for lines.Scan() {
		var r auditexport.Record
		if err := json.Unmarshal(lines.Bytes(), &r); err != nil {
			log.Fatal(err)
		}
		fmt.Printf("id=%d time=%s actor=%s prev_hash=%.8q hash=%.8q\n", r.ID, r.Time, r.Actor, r.PrevHash, r.Hash)
	}
	fmt.Println("cursor:", x.Stats().Cursor)
	// Output:
	// id=1 time=2026-12-01T09:00:00.000000000Z actor=alice prev_hash="" hash="4fec300b"
	// id=2 time=2026-12-01T09:00:00.000000000Z actor=bob prev_hash="4fec300b" hash="c01a30fb"
	// cursor: 2
}
