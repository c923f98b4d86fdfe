package audit_test

import (
	"context"
	"fmt"
	"log"
	"time"

	"github.com/cleveragents/audit"
)

// Tail follows the log: here it yields the entries already committed,
// then one recorded while it waits, and stops after the third. A consumer
// that stops keeps the last ID it handled and resumes with AfterID.
func ExampleAuditService_Tail() {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	svc, err := audit.New(audit.WithSQLite(":memory:"))
	if err != nil {
		log.Fatal(err)
	}
	defer svc.Close()
	for _, who := range []string{"alice", "bob"} {
		if err := svc.Record(ctx, audit.Entry{EventType: "user.login", Actor: who}); err != nil {
			log.Fatal(err)
		}
	}

	seen := 0
	for e, err := range svc.Tail(ctx, audit.Filter{AfterID: 0}) {
		if err != nil {
			log.Print(err)
			continue
		}
		fmt.Println(e.ID, e.EventType, e.Actor)
		if seen++; seen == 2 {
			// Recorded while the tail follows: it arrives as it commits.
			if err := svc.Record(ctx, audit.Entry{EventType: "user.logout", Actor: "alice"}); err != nil {
				log.Fatal(err)
			}
		}
		if seen == 3 {
			break
		}
	}
	// Output:
	// 1 user.login alice
	// 2 user.login bob
	// 3 user.logout alice
}
