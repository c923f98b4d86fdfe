package gormaudit_test

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/cleveragents/audit"
	"github.com/cleveragents/audit/gormaudit"
	"github.com/cleveragents/audit/internal/testutil"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"gorm.io/driver/sqlite"
	"gorm.io/gorm"
	"gorm.io/gorm/logger"
)

// The helper-process pattern, as in the root package's process_test.go:
// the test binary re-executes itself with helperRoleEnv set, and TestMain
// runs that role instead of the tests.
const helperRoleEnv = "GORMAUDIT_HELPER_ROLE"

// runHelperRole runs a child's program and returns its exit code.
func runHelperRole(role string) int {
	switch role {
	case "business":
		return childBusiness()
	}
	fmt.Fprintf(os.Stderr, "unknown helper role %q\n", role)
	return 2
}

// Transfer is the crash test's business row. Tag names it across
// processes: SQLite reuses the IDs of rolled-back rows, tags are unique.
type Transfer struct {
	ID     uint
	Tag    string `gorm:"uniqueIndex"`
	Amount int
}

const crashWorkers = 8

// childBusiness is a process of the application: the audit log on the
// application's own SQLite file (opened by GORM with the default DSN, as
// the service opens it with WithSQLite), the plugin registered, and
// crashWorkers goroutines doing business transactions (a create and an
// update each), every fourth rolled back, until the parent kills it. It
// prints "commit <tag>" once a transaction has committed.
func childBusiness() int {
	path, round := os.Getenv("CRASH_PATH"), os.Getenv("CRASH_ROUND")
	fail := func(err error) int {
		fmt.Fprintln(os.Stderr, "child:", err)
		return 1
	}
	db, err := gorm.Open(sqlite.Open(path), &gorm.Config{Logger: logger.Discard})
	if err != nil {
		return fail(err)
	}
	if err := db.AutoMigrate(&Transfer{}); err != nil {
		return fail(err)
	}
	svc, err := audit.New(audit.WithSQLite(path), audit.WithLogger(testutil.Discard()))
	if err != nil {
		return fail(err)
	}
	p, err := gormaudit.New(svc)
	if err != nil {
		return fail(err)
	}
	if err := db.Use(p); err != nil {
		return fail(err)
	}
	var out sync.Mutex
	var wg sync.WaitGroup
	errRollback := errors.New("rolled back on purpose")
	for w := range crashWorkers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for seq := 0; ; seq++ {
				tag := fmt.Sprintf("r%s-w%d-%d", round, w, seq)
				err := db.Transaction(func(tx *gorm.DB) error {
					t := Transfer{Tag: tag, Amount: seq}
					if err := tx.Create(&t).Error; err != nil {
						return err
					}
					if err := tx.Model(&t).Update("amount", seq+1000).Error; err != nil {
						return err
					}
					if seq%4 == 3 {
						return errRollback
					}
					return nil
				})
				if err == nil {
					out.Lock()
					fmt.Printf("commit %s\n", tag)
					out.Unlock()
				} else if !errors.Is(err, errRollback) {
					out.Lock()
					fmt.Fprintln(os.Stderr, "child: transaction:", err)
					out.Unlock()
				}
			}
		}()
	}
	wg.Wait() // never: the parent kills the process
	return 0
}

// TestCrashLosesNothing kills processes doing business transactions
// through the plugin, with the log on the application's own database, at
// random points, several rounds on one file: every committed business row
// has its entries, no rolled-back one has any, and the chain verifies.
func TestCrashLosesNothing(t *testing.T) {
	if testing.Short() {
		t.Skip("starts processes")
	}
	path := testutil.TempDB(t)
	const rounds = 5
	seed := uint64(time.Now().UnixNano())
	t.Logf("seed %d", seed)
	rng := rand.New(rand.NewPCG(seed, 11))
	acknowledged := map[string]bool{} // committed, as the children said
	for round := 1; round <= rounds; round++ {
		killAfter := 10 + rng.IntN(80) // commits seen before the kill
		cmd := exec.Command(os.Args[0], "-test.run=^$")
		cmd.Env = append(os.Environ(), helperRoleEnv+"=business", "CRASH_PATH="+path, "CRASH_ROUND="+strconv.Itoa(round))
		cmd.Stderr = os.Stderr
		stdout, err := cmd.StdoutPipe()
		require.NoError(t, err)
		require.NoError(t, cmd.Start())
		sc := bufio.NewScanner(stdout)
		seen := 0
		for seen < killAfter && sc.Scan() {
			if tag, ok := strings.CutPrefix(sc.Text(), "commit "); ok {
				acknowledged[tag] = true
				seen++
			}
		}
		require.Equal(t, killAfter, seen, "round %d: the child ended before its kill", round)
		require.NoError(t, cmd.Process.Kill()) // SIGKILL
		// Lines already written when the kill came are acknowledged too.
		for sc.Scan() {
			if tag, ok := strings.CutPrefix(sc.Text(), "commit "); ok {
				acknowledged[tag] = true
			}
		}
		_ = cmd.Wait()
		t.Logf("round %d: killed after %d acknowledged commits", round, seen)
	}

	// The application's next run drains what the crashes left in the
	// outbox: it commits one more business transaction, then flushes.
	appDB, err := gorm.Open(sqlite.Open(path), &gorm.Config{Logger: logger.Discard})
	require.NoError(t, err)
	sqlDB, err := appDB.DB()
	require.NoError(t, err)
	defer func() { require.NoError(t, sqlDB.Close()) }()
	svc, err := audit.New(audit.WithSQLite(path), audit.WithLogger(testutil.Discard()))
	require.NoError(t, err)
	defer func() { require.NoError(t, svc.Close()) }()
	use(t, appDB, svc)
	ctx := context.Background()
	require.NoError(t, appDB.Transaction(func(tx *gorm.DB) error {
		final := Transfer{Tag: "final", Amount: 1}
		if err := tx.Create(&final).Error; err != nil {
			return err
		}
		return tx.Model(&final).Update("amount", 2).Error
	}))
	require.NoError(t, svc.Flush(ctx))
	db := testutil.RawDB(t, path)
	testutil.WaitFor(t, 2*time.Minute, func() bool {
		var n int
		require.NoError(t, db.QueryRow("SELECT COUNT(*) FROM "+audit.DefaultTable+audit.OutboxSuffix).Scan(&n))
		return n == 0
	}, "the outbox to drain")
	require.NoError(t, svc.Flush(ctx))

	committed := map[string]bool{}
	rows, err := db.Query("SELECT tag FROM transfers")
	require.NoError(t, err)
	for rows.Next() {
		var tag string
		require.NoError(t, rows.Scan(&tag))
		committed[tag] = true
	}
	require.NoError(t, rows.Err())
	require.NoError(t, rows.Close())
	for tag := range acknowledged {
		require.True(t, committed[tag], "acknowledged commit %s is in the table", tag)
	}

	creates, updates := map[string]int{}, map[string]int{}
	for after := int64(0); ; {
		es, err := svc.List(ctx, audit.Filter{AfterID: after, Limit: audit.MaxListLimit})
		require.NoError(t, err)
		if len(es) == 0 {
			break
		}
		for _, e := range es {
			values, _ := e.Details["after"].(map[string]any)
			tag, _ := values["tag"].(string)
			switch e.EventType {
			case "transfers.create":
				creates[tag]++
			case "transfers.update":
				updates[tag]++
			}
		}
		after = es[len(es)-1].ID
	}
	var lost, phantom, duplicated int
	for tag := range committed {
		if creates[tag] == 0 || updates[tag] == 0 {
			lost++
		}
		if creates[tag] > 1 || updates[tag] > 1 {
			duplicated++
		}
	}
	for tag := range creates {
		if !committed[tag] {
			phantom++
		}
	}
	for tag := range updates {
		if !committed[tag] {
			phantom++
		}
	}
	t.Logf("%d rounds: %d committed business transactions (%d acknowledged), %d lost, %d phantom, %d duplicated",
		rounds, len(committed), len(acknowledged), lost, phantom, duplicated)
	assert.Zero(t, lost, "committed transactions without their entries")
	assert.Zero(t, phantom, "entries of rolled-back transactions")
	assert.Zero(t, duplicated, "transactions with an entry twice")
	rep, err := svc.Verify(ctx)
	require.NoError(t, err)
	assert.Equal(t, int64(2*len(committed)), rep.Entries)
}
