package audit

import (
	"context"
	"fmt"
	"io"
	"os"
	"os/exec"
	"strconv"
	"sync"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"gorm.io/driver/postgres"
)

// The helper-process pattern: the test binary re-executes itself with
// AUDIT_HELPER_ROLE set, and TestMain runs that role instead of the tests.
const helperRoleEnv = "AUDIT_HELPER_ROLE"

// helperRoles are the child processes' programs; each returns the exit code.
var helperRoles = map[string]func() int{
	"record": childRecord,
}

// runHelperRole runs the role named in the environment, if any.
func runHelperRole() (code int, ok bool) {
	role := os.Getenv(helperRoleEnv)
	if role == "" {
		return 0, false
	}
	f, found := helperRoles[role]
	if !found {
		fmt.Fprintf(os.Stderr, "unknown helper role %q\n", role)
		return 2, true
	}
	return f(), true
}

// startHelper starts this test binary as a child in the given role. The
// child may wait for its stdin to close before it starts: closing the
// returned writer releases it.
func startHelper(t *testing.T, role string, env ...string) (*exec.Cmd, io.WriteCloser) {
	t.Helper()
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(append(os.Environ(), helperRoleEnv+"="+role), env...)
	cmd.Stderr = os.Stderr
	stdin, err := cmd.StdinPipe()
	require.NoError(t, err)
	require.NoError(t, cmd.Start())
	t.Cleanup(func() { _ = stdin.Close() })
	return cmd, stdin
}

// runRecordChildren starts n "record" children on st's log, each recording
// each entries as actor childN, releases them together and waits for all.
func runRecordChildren(t *testing.T, st *backend, n, each int) {
	t.Helper()
	var wg sync.WaitGroup
	var barriers []io.WriteCloser
	for c := 0; c < n; c++ {
		cmd, barrier := startHelper(t, "record",
			"AUDIT_CHILD_DSN="+st.dsn, "AUDIT_CHILD_PATH="+st.path, "AUDIT_CHILD_TABLE="+st.table,
			"AUDIT_CHILD_NAME=child"+strconv.Itoa(c), "AUDIT_CHILD_N="+strconv.Itoa(each))
		barriers = append(barriers, barrier)
		wg.Add(1)
		go func() {
			defer wg.Done()
			assert.NoError(t, cmd.Wait(), "child %d", c)
		}()
	}
	for _, b := range barriers {
		require.NoError(t, b.Close())
	}
	wg.Wait()
}

// childRecord opens the log, waits for its stdin to close (the parent's
// barrier), records AUDIT_CHILD_N entries as actor AUDIT_CHILD_NAME in
// order from one goroutine, then shuts down.
func childRecord() int {
	opts := []Option{WithTable(os.Getenv("AUDIT_CHILD_TABLE")), WithBatchSize(64)}
	if dsn := os.Getenv("AUDIT_CHILD_DSN"); dsn != "" {
		opts = append(opts, WithDialector(postgres.Open(dsn)))
	} else {
		opts = append(opts, WithSQLite(os.Getenv("AUDIT_CHILD_PATH")))
	}
	s, err := New(opts...)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	name := os.Getenv("AUDIT_CHILD_NAME")
	n, _ := strconv.Atoi(os.Getenv("AUDIT_CHILD_N"))
	ctx := context.Background()
	if _, err := s.Count(ctx, Filter{}); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	_, _ = io.Copy(io.Discard, os.Stdin)
	for i := 0; i < n; i++ {
		err := s.Record(ctx, Entry{EventType: "child.write", Actor: name, RequestID: fmt.Sprintf("%s-%06d", name, i)})
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			return 1
		}
	}
	if err := s.Close(); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	return 0
}

// TestSeveralProcessesOneChain runs three processes that write one table at
// once: the chain must not fork, IDs must follow it, and every process's
// entries must be there in its own order.
func TestSeveralProcessesOneChain(t *testing.T) {
	if testing.Short() {
		t.Skip("starts processes")
	}
	forEachBackend(t, func(t *testing.T, st *backend) {
		const children, each = 3, 3000
		ctx := context.Background()
		// Create the schema first, as a deployment's first replica would;
		// concurrent creation has its own test.
		_, err := st.service(t).Count(ctx, Filter{})
		require.NoError(t, err)

		runRecordChildren(t, st, children, each)

		s := st.service(t)
		n, err := s.Count(ctx, Filter{})
		require.NoError(t, err)
		require.Equal(t, int64(children*each), n)
		rep, err := s.Verify(ctx)
		require.NoError(t, err, "one chain, no forks")
		assert.Equal(t, VerifyReport{Entries: children * each, FirstID: 1, LastID: children * each, Head: rep.Head}, rep)
		if st.kind == "postgres" {
			// The children did write at once: their batches interleave.
			// (SQLite's busy handler is not fair: a process that commits
			// batch after batch keeps the write lock from one that polls,
			// so there the children mostly take turns whole.)
			all, err := s.List(ctx, Filter{Limit: MaxListLimit})
			require.NoError(t, err)
			switches := 0
			for i := 1; i < len(all); i++ {
				if all[i].Actor != all[i-1].Actor {
					switches++
				}
			}
			assert.GreaterOrEqual(t, switches, children, "the children's writes interleave")
		}
		for c := 0; c < children; c++ {
			name := "child" + strconv.Itoa(c)
			var got []string
			for f := (Filter{Actor: name, Limit: MaxListLimit}); ; {
				page, err := s.List(ctx, f)
				require.NoError(t, err)
				if len(page) == 0 {
					break
				}
				for _, e := range page {
					got = append(got, e.RequestID)
				}
				f.AfterID = page[len(page)-1].ID
			}
			require.Len(t, got, each)
			for i, id := range got {
				require.Equal(t, fmt.Sprintf("%s-%06d", name, i), id, "%s's entries in its own order", name)
			}
		}
	})
}

// TestConcurrentSchemaCreation starts services on a new table together:
// creating the schema at once must not fail any of them.
func TestConcurrentSchemaCreation(t *testing.T) {
	forEachBackend(t, func(t *testing.T, st *backend) {
		const services = 8
		ctx := context.Background()
		start := make(chan struct{})
		var wg sync.WaitGroup
		for i := 0; i < services; i++ {
			s := st.service(t)
			wg.Add(1)
			go func() {
				defer wg.Done()
				<-start
				assert.NoError(t, s.Record(ctx, Entry{EventType: "e", Actor: "a"}))
				assert.NoError(t, s.Flush(ctx))
				_, err := s.Count(ctx, Filter{})
				assert.NoError(t, err)
			}()
		}
		close(start)
		wg.Wait()
		n, err := st.service(t).Count(ctx, Filter{})
		require.NoError(t, err)
		assert.Equal(t, int64(services), n)
	})
}
