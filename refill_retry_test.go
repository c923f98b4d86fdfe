//go:build cgo

package audit

import (
	"context"
	"database/sql"
	"errors"
	"sync/atomic"
	"testing"

	"github.com/stretchr/testify/require"
)

// errRetryNow is a failure that the test's dialect says to retry at once
// (as PostgreSQL's serialization failures are).
var errRetryNow = errors.New("injected serialization failure")

// failingCommit is a write transaction whose COMMIT fails with errRetryNow.
type failingCommit struct {
	writeTxn
	fail bool
}

func (f *failingCommit) commit() error {
	if f.fail {
		f.writeTxn.rollback()
		return errRetryNow
	}
	return f.writeTxn.commit()
}

// TestRefilledEntriesSurviveAnImmediateRetry: when a transaction that took
// more entries from the queue (refill) fails at COMMIT with an error that
// writeTx runs it again for, the run again writes those entries too. Every
// other transaction's COMMIT fails that way, for the first hundred; every
// entry that Flush answered for is in the log. (Run again with only the
// batch's first entries, the chain stayed whole and Verify passed, but
// thousands of acknowledged entries were missing.) A fault injected where
// a real part cannot fail on demand: COMMIT's serialization failure.
func TestRefilledEntriesSurviveAnImmediateRetry(t *testing.T) {
	ctx := context.Background()
	s, _ := newService(t, WithQueueSize(400))
	require.NoError(t, s.Ping(ctx))
	sess, err := s.st.session(ctx)
	require.NoError(t, err)
	d := *sess.d
	var begins atomic.Int64
	begin := d.begin
	d.begin = func(ctx context.Context, db *sql.DB) (writeTxn, error) {
		tx, err := begin(ctx, db)
		if err != nil {
			return nil, err
		}
		n := begins.Add(1)
		return &failingCommit{writeTxn: tx, fail: n%2 == 0 && n < 200}, nil
	}
	d.retryNow = func(err error) bool { return errors.Is(err, errRetryNow) }
	sess.d = &d // before the writer's first batch: queueN's sends order it
	const n = 20000
	queueN(t, s, 0, n)
	require.NoError(t, s.Flush(ctx))
	require.Greater(t, begins.Load(), int64(2), "some transaction ran again")
	got, err := s.Count(ctx, Filter{})
	require.NoError(t, err)
	require.EqualValues(t, n, got, "every entry answered as committed is in the log")
	require.EqualValues(t, n, s.Stats().Written)
	report, err := s.Verify(ctx)
	require.NoError(t, err)
	require.EqualValues(t, n, report.Entries)
}
