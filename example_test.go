package audit_test

import (
	"context"
	"errors"
	"fmt"
	"log"
	"time"

	"github.com/cleveragents/audit"
)

// A service records in the background, Flush makes the entries visible,
// and Verify checks the hash chain.
func Example() {
	ctx := context.Background()
	svc, err := audit.New(audit.WithSQLite(":memory:"))
	if err != nil {
		log.Fatal(err)
	}
	defer svc.Close()

	at := time.Date(2026, 11, 27, 9, 0, 0, 0, time.UTC)
	for i, who := range []string{"alice", "bob", "alice"} {
		err := svc.Record(ctx, audit.Entry{
			Time:      at.Add(time.Duration(i) * time.Minute),
			EventType: "user.login",
			Actor:     who,
			Outcome:   "success",
			Details:   map[string]any{"ip": "192.0.2.10"},
		})
		if err != nil {
			log.Fatal(err)
		}
	}
	if err := svc.Flush(ctx); err != nil {
		log.Fatal(err)
	}

	logins, err := svc.List(ctx, audit.Filter{Actor: "alice"})
	if err != nil {
		log.Fatal(err)
	}
	for _, e := range logins {
		fmt.Println(e.ID, e.Time.Format(time.Kitchen), e.Actor, e.EventType, e.Details["ip"])
	}
	rep, err := svc.Verify(ctx)
	if err != nil {
		log.Fatal(err)
	}
	fmt.Printf("verified %d entries, %d to %d\n", rep.Entries, rep.FirstID, rep.LastID)
	// Output:
	// 1 9:00AM alice user.login 192.0.2.10
	// 3 9:02AM alice user.login 192.0.2.10
	// verified 3 entries, 1 to 3
}

// In sync mode Record returns once the entry is committed: it is visible
// at once, without Flush.
func ExampleWithAsync() {
	ctx := context.Background()
	svc, err := audit.New(audit.WithSQLite(":memory:"), audit.WithAsync(false))
	if err != nil {
		log.Fatal(err)
	}
	defer svc.Close()

	err = svc.Record(ctx, audit.Entry{EventType: "permission.grant", Actor: "alice", Resource: "repo/audit"})
	if err != nil {
		log.Fatal(err)
	}
	e, err := svc.Get(ctx, 1)
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println(e.EventType, e.Resource, len(e.Hash))
	// Output: permission.grant repo/audit 64
}

// Record refuses an invalid entry in the caller's goroutine, naming the
// field at fault.
func ExampleAuditService_Record() {
	svc, err := audit.New(audit.WithSQLite(":memory:"))
	if err != nil {
		log.Fatal(err)
	}
	defer svc.Close()

	err = svc.Record(context.Background(), audit.Entry{EventType: "user.login"})
	fmt.Println(errors.Is(err, audit.ErrInvalidEntry))
	fmt.Println(err)
	// Output:
	// true
	// audit: record: invalid entry: Actor is required
}

// List pages through entries with keyset pagination: pass the last ID of
// one page as AfterID of the next (BeforeID when Desc).
func ExampleAuditService_List() {
	ctx := context.Background()
	svc, err := audit.New(audit.WithSQLite(":memory:"))
	if err != nil {
		log.Fatal(err)
	}
	defer svc.Close()
	for i := 0; i < 7; i++ {
		if err := svc.Record(ctx, audit.Entry{EventType: "doc.read", Actor: "carol"}); err != nil {
			log.Fatal(err)
		}
	}
	if err := svc.Flush(ctx); err != nil {
		log.Fatal(err)
	}

	f := audit.Filter{Actor: "carol", Limit: 3, Desc: true}
	for {
		page, err := svc.List(ctx, f)
		if err != nil {
			log.Fatal(err)
		}
		if len(page) == 0 {
			break
		}
		ids := make([]int64, len(page))
		for i, e := range page {
			ids[i] = e.ID
		}
		fmt.Println(ids)
		f.BeforeID = page[len(page)-1].ID
	}
	// Output:
	// [7 6 5]
	// [4 3 2]
	// [1]
}

// Prune deletes the oldest entries; the chain still verifies from the first
// entry that remains.
func ExampleAuditService_Prune() {
	ctx := context.Background()
	svc, err := audit.New(audit.WithSQLite(":memory:"))
	if err != nil {
		log.Fatal(err)
	}
	defer svc.Close()
	day := time.Date(2026, 11, 1, 0, 0, 0, 0, time.UTC)
	for i := 0; i < 5; i++ {
		e := audit.Entry{Time: day.AddDate(0, 0, i), EventType: "backup.run", Actor: "cron"}
		if err := svc.Record(ctx, e); err != nil {
			log.Fatal(err)
		}
	}
	if err := svc.Flush(ctx); err != nil {
		log.Fatal(err)
	}

	n, err := svc.Prune(ctx, day.AddDate(0, 0, 3))
	if err != nil {
		log.Fatal(err)
	}
	rep, err := svc.Verify(ctx)
	if err != nil {
		log.Fatal(err)
	}
	fmt.Printf("pruned %d; %d entries verify, from ID %d\n", n, rep.Entries, rep.FirstID)
	// Output: pruned 3; 2 entries verify, from ID 4
}

// Verify returns ErrTampered naming the first entry that does not check.
func ExampleAuditService_Verify() {
	ctx := context.Background()
	svc, err := audit.New(audit.WithSQLite(":memory:"), audit.WithChainKey([]byte("kept in a secret store")))
	if err != nil {
		log.Fatal(err)
	}
	defer svc.Close()
	for _, who := range []string{"alice", "bob"} {
		if err := svc.Record(ctx, audit.Entry{EventType: "user.login", Actor: who}); err != nil {
			log.Fatal(err)
		}
	}
	if err := svc.Flush(ctx); err != nil {
		log.Fatal(err)
	}
	rep, err := svc.Verify(ctx)
	if err != nil {
		log.Fatal(err)
	}
	// Publish rep.Head elsewhere: it anchors everything up to LastID.
	fmt.Println(rep.Entries, rep.LastID, len(rep.Head))
	// Output: 2 2 64
}

// Shutdown drains the queue; afterwards the service refuses new entries.
func ExampleAuditService_Shutdown() {
	ctx := context.Background()
	svc, err := audit.New(audit.WithSQLite(":memory:"))
	if err != nil {
		log.Fatal(err)
	}
	for i := 0; i < 100; i++ {
		if err := svc.Record(ctx, audit.Entry{EventType: "job.step", Actor: "worker"}); err != nil {
			log.Fatal(err)
		}
	}
	sctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	if err := svc.Shutdown(sctx); err != nil {
		log.Fatal(err)
	}
	fmt.Println(svc.Stats().Written)
	fmt.Println(errors.Is(svc.Record(ctx, audit.Entry{EventType: "job.step", Actor: "worker"}), audit.ErrClosed))
	// Output:
	// 100
	// true
}
