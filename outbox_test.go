package audit

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/cleveragents/audit/internal/testutil"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"gorm.io/driver/sqlite"
	"gorm.io/gorm"
	gormlogger "gorm.io/gorm/logger"
)

func init() {
	helperRoles["recordtx-crash"] = childRecordTxCrash
}

// bizRow is the business table of the RecordTx tests.
type bizRow struct {
	ID    string `gorm:"primaryKey"`
	Value int
}

// appDB opens the application's own *gorm.DB on the log's database, as a
// user of RecordTx would, with GORM's defaults.
func appDB(tb testing.TB, st *backend) *gorm.DB {
	tb.Helper()
	db, err := gorm.Open(st.dialector(), &gorm.Config{Logger: gormlogger.Discard})
	require.NoError(tb, err)
	tb.Cleanup(func() { closeGorm(db) })
	table := "biz_" + st.table
	require.NoError(tb, db.Table(table).AutoMigrate(&bizRow{}))
	return db.Table(table)
}

// The entry of a committed transaction is chained; that of a rolled-back
// one is not; Flush covers the committed ones.
func TestRecordTxCommitsWithTheTransaction(t *testing.T) {
	forEachBackend(t, func(t *testing.T, st *backend) {
		s := st.service(t)
		db := appDB(t, st)
		ctx := context.Background()
		require.NoError(t, s.Ping(ctx))

		require.NoError(t, db.Transaction(func(tx *gorm.DB) error {
			require.NoError(t, tx.Create(&bizRow{ID: "a", Value: 1}).Error)
			return s.RecordTx(ctx, tx, Entry{EventType: "biz.create", Actor: "alice", RequestID: "a"})
		}))
		errRollback := errors.New("roll back")
		err := db.Transaction(func(tx *gorm.DB) error {
			require.NoError(t, tx.Create(&bizRow{ID: "b", Value: 2}).Error)
			require.NoError(t, s.RecordTx(ctx, tx, Entry{EventType: "biz.create", Actor: "bob", RequestID: "b"}))
			return errRollback
		})
		require.ErrorIs(t, err, errRollback)

		require.NoError(t, s.Flush(ctx))
		got, err := s.List(ctx, Filter{})
		require.NoError(t, err)
		require.Len(t, got, 1, "only the committed transaction's entry")
		assert.Equal(t, "a", got[0].RequestID)
		assert.Equal(t, "alice", got[0].Actor)
		assert.Equal(t, int64(1), got[0].ID)
		assert.NotEmpty(t, got[0].Hash)

		// It chains with Record's entries, in one chain.
		require.NoError(t, s.Record(ctx, sampleEntry(1)))
		require.NoError(t, s.Flush(ctx))
		rep, err := s.Verify(ctx)
		require.NoError(t, err)
		assert.Equal(t, int64(2), rep.Entries)
		var left int64
		require.NoError(t, st.raw.QueryRow("SELECT COUNT(*) FROM "+quote(ident(st.table, OutboxSuffix))).Scan(&left))
		assert.Zero(t, left, "the outbox is emptied in the chain's transaction")
	})
}

// RecordTx refuses what it cannot honour, saying why, and stores nothing.
func TestRecordTxRefuses(t *testing.T) {
	st := freshSQLite(t)
	s := st.service(t)
	db := appDB(t, st)
	ctx := context.Background()

	other, err := gorm.Open(sqlite.Open(testutil.TempDB(t)), &gorm.Config{Logger: gormlogger.Discard})
	require.NoError(t, err)
	t.Cleanup(func() { closeGorm(other) })
	err = other.Transaction(func(tx *gorm.DB) error {
		return s.RecordTx(ctx, tx, sampleEntry(1))
	})
	require.Error(t, err)
	assert.Contains(t, err.Error(), "tx is on another database than the log")

	// Another log's database, with its own outbox: still not this log.
	otherLog := freshSQLite(t)
	s2 := otherLog.service(t)
	require.NoError(t, s2.Ping(ctx))
	otherDB := appDB(t, otherLog)
	err = otherDB.Transaction(func(tx *gorm.DB) error { return s.RecordTx(ctx, tx, sampleEntry(1)) })
	require.Error(t, err)
	assert.Contains(t, err.Error(), "does not name this log")

	err = s.RecordTx(ctx, db, sampleEntry(1))
	require.Error(t, err)
	assert.Contains(t, err.Error(), "not inside a transaction")

	err = db.Transaction(func(tx *gorm.DB) error { return s.RecordTx(ctx, tx, Entry{EventType: "x"}) })
	require.ErrorIs(t, err, ErrInvalidEntry)
	assert.Equal(t, "audit: record tx: invalid entry: Actor is required", err.Error())

	require.NoError(t, s.Flush(ctx))
	require.NoError(t, s2.Flush(ctx))
	for _, svc := range []*AuditService{s, s2} {
		n, err := svc.Count(ctx, Filter{})
		require.NoError(t, err)
		assert.Zero(t, n, "a refused RecordTx stores nothing")
	}
	assert.Equal(t, uint64(4), s.Stats().Rejected)
}

// Concurrent business transactions, released together, a quarter rolled
// back: every committed one has exactly one entry, no rolled-back one has
// any, and the chain verifies.
func TestRecordTxConcurrent(t *testing.T) {
	forEachBackend(t, func(t *testing.T, st *backend) {
		s := st.service(t)
		db := appDB(t, st)
		ctx := context.Background()
		require.NoError(t, s.Ping(ctx))
		const goroutines, perG = 8, 40
		start := make(chan struct{})
		var wg sync.WaitGroup
		errs := make(chan error, goroutines)
		for g := range goroutines {
			wg.Add(1)
			go func() {
				defer wg.Done()
				<-start
				for k := range perG {
					id := fmt.Sprintf("g%d-%03d", g, k)
					err := db.Transaction(func(tx *gorm.DB) error {
						if err := tx.Create(&bizRow{ID: id, Value: k}).Error; err != nil {
							return err
						}
						if err := s.RecordTx(ctx, tx, Entry{EventType: "biz.create", Actor: fmt.Sprint("g", g), RequestID: id}); err != nil {
							return err
						}
						if k%4 == 0 {
							return errRolledBack
						}
						return nil
					})
					if err != nil && !errors.Is(err, errRolledBack) {
						errs <- fmt.Errorf("%s: %w", id, err)
						return
					}
				}
			}()
		}
		close(start)
		wg.Wait()
		close(errs)
		for err := range errs {
			require.NoError(t, err)
		}
		require.NoError(t, s.Flush(ctx))
		assertEntriesMatchRows(t, s, db)
	})
}

var errRolledBack = errors.New("rolled back on purpose")

// assertEntriesMatchRows checks that the business rows and the audit
// entries name the same IDs, each entry once, and that the chain verifies.
func assertEntriesMatchRows(t *testing.T, s *AuditService, db *gorm.DB) (rows int) {
	t.Helper()
	ctx := context.Background()
	var ids []string
	require.NoError(t, db.Pluck("id", &ids).Error)
	want := map[string]bool{}
	for _, id := range ids {
		want[id] = true
	}
	got := map[string]int{}
	for after := int64(0); ; {
		page, err := s.List(ctx, Filter{EventType: "biz.create", AfterID: after, Limit: MaxListLimit})
		require.NoError(t, err)
		for _, e := range page {
			got[e.RequestID]++
			after = e.ID
		}
		if len(page) < MaxListLimit {
			break
		}
	}
	lost, phantom := 0, 0
	for id := range want {
		if got[id] == 0 {
			lost++
		}
	}
	for id, n := range got {
		assert.Equal(t, 1, n, "entry %s chained once", id)
		if !want[id] {
			phantom++
		}
	}
	assert.Zero(t, lost, "committed transactions with no entry")
	assert.Zero(t, phantom, "entries of transactions that did not commit")
	_, err := s.Verify(ctx)
	require.NoError(t, err)
	return len(want)
}

const (
	txCrashPathEnv  = "AUDIT_TXCRASH_PATH"
	txCrashRoundEnv = "AUDIT_TXCRASH_ROUND"
)

// childRecordTxCrash runs business transactions with RecordTx from 8
// goroutines on the file at AUDIT_TXCRASH_PATH, a quarter rolled back,
// printing the ID of each committed one, until it is killed.
func childRecordTxCrash() int {
	path, round := os.Getenv(txCrashPathEnv), os.Getenv(txCrashRoundEnv)
	s, err := New(WithSQLite(path), WithBatchSize(16))
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	db, err := gorm.Open(sqlite.Open(path), &gorm.Config{Logger: gormlogger.Discard})
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	db = db.Table("biz")
	if err := db.AutoMigrate(&bizRow{}); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	ctx := context.Background()
	// Open the log before the first business transaction: on SQLite a
	// schema that is missing cannot be created while a transaction holds
	// the write lock.
	if err := s.Ping(ctx); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	var mu sync.Mutex // serialises lines on stdout
	out := bufio.NewWriter(os.Stdout)
	var wg sync.WaitGroup
	for g := range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for k := 0; ; k++ {
				id := fmt.Sprintf("r%s-g%d-%06d", round, g, k)
				err := db.Transaction(func(tx *gorm.DB) error {
					if err := tx.Create(&bizRow{ID: id, Value: k}).Error; err != nil {
						return err
					}
					if err := s.RecordTx(ctx, tx, Entry{EventType: "biz.create", Actor: "crash", RequestID: id}); err != nil {
						return err
					}
					if k%4 == 0 {
						return errRolledBack
					}
					return nil
				})
				switch {
				case errors.Is(err, errRolledBack):
				case err != nil:
					fmt.Fprintln(os.Stderr, id, err)
				default:
					mu.Lock()
					fmt.Fprintln(out, id)
					out.Flush()
					mu.Unlock()
				}
			}
		}()
	}
	wg.Wait()
	return 0
}

// A SIGKILL at a random point of business transactions that use RecordTx
// loses no committed entry and leaves none of a transaction that did not
// commit, over several rounds on one file.
func TestRecordTxCrash(t *testing.T) {
	if testing.Short() {
		t.Skip("starts processes")
	}
	path := testutil.TempDB(t)
	acked := map[string]bool{}
	const rounds = 4
	for round := range rounds {
		cmd := exec.Command(os.Args[0], "-test.run=^$")
		cmd.Env = append(os.Environ(), helperRoleEnv+"=recordtx-crash", txCrashPathEnv+"="+path, txCrashRoundEnv+"="+strconv.Itoa(round))
		cmd.Stderr = os.Stderr
		stdout, err := cmd.StdoutPipe()
		require.NoError(t, err)
		require.NoError(t, cmd.Start())
		watchdog := time.AfterFunc(20*time.Second, func() { _ = cmd.Process.Kill() })
		killAfter := 50 + rand.IntN(200)
		lines, killed := bufio.NewReader(stdout), false
		for {
			line, err := lines.ReadString('\n')
			if err != nil {
				require.ErrorIs(t, err, io.EOF)
				break
			}
			acked[strings.TrimSpace(line)] = true
			if len(acked) >= killAfter*(round+1) && !killed {
				killed = true
				require.NoError(t, cmd.Process.Signal(syscall.SIGKILL))
			}
		}
		err = cmd.Wait()
		watchdog.Stop()
		require.True(t, killed, "the child ended before it was killed: %v", err)
	}

	// A new service drains what the crashes left in the outbox.
	s := newServiceAt(t, WithSQLite(path))
	ctx := context.Background()
	require.NoError(t, s.Ping(ctx))
	require.NoError(t, s.Flush(ctx))
	db, err := gorm.Open(sqlite.Open(path), &gorm.Config{Logger: gormlogger.Discard})
	require.NoError(t, err)
	t.Cleanup(func() { closeGorm(db) })
	db = db.Table("biz")
	var stored []string
	require.NoError(t, db.Pluck("id", &stored).Error)
	have := map[string]bool{}
	for _, id := range stored {
		have[id] = true
		var k int
		_, err := fmt.Sscanf(id[strings.LastIndex(id, "-")+1:], "%d", &k)
		require.NoError(t, err)
		require.NotZero(t, k%4, "a rolled-back transaction's row %s is stored", id)
	}
	for id := range acked {
		require.True(t, have[id], "committed and acknowledged, then lost: %s", id)
	}
	rows := assertEntriesMatchRows(t, s, db)
	t.Logf("%d rounds: %d committed business transactions (%d acknowledged before the kills), each with exactly one entry; 0 lost, 0 phantom", rounds, rows, len(acked))
}
