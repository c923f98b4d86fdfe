package audit

import (
	"context"
	"os"
	"sync"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestMemoryDatabase(t *testing.T) {
	ctx := context.Background()
	a := newServiceAt(t, WithSQLite(":memory:"))
	b := newServiceAt(t, WithSQLite(":memory:"))
	start := make(chan struct{})
	var wg sync.WaitGroup
	for g := 0; g < 8; g++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			<-start
			for i := 0; i < 50; i++ {
				if g%2 == 0 {
					assert.NoError(t, a.Record(ctx, sampleEntry(i)))
				} else {
					_, err := a.List(ctx, Filter{Limit: 10})
					assert.NoError(t, err, "every connection sees the table")
				}
			}
		}()
	}
	close(start)
	wg.Wait()
	require.NoError(t, a.Flush(ctx))
	n, err := a.Count(ctx, Filter{})
	require.NoError(t, err)
	assert.Equal(t, int64(200), n)
	n, err = b.Count(ctx, Filter{})
	require.NoError(t, err)
	assert.Zero(t, n, "each service has its own private database")
	_, err = a.Verify(ctx)
	require.NoError(t, err)
	_, err = os.Stat(":memory:")
	assert.True(t, os.IsNotExist(err), "no file named :memory:")
}

func TestSQLiteSettings(t *testing.T) {
	ctx := context.Background()
	s, _ := newService(t)
	_, err := s.Count(ctx, Filter{})
	require.NoError(t, err)
	db := s.st.sess.Load().sqlDB
	// Read back through several connections of the pool: each must have
	// the settings, not just the first.
	for i := 0; i < 3; i++ {
		conn, err := db.Conn(ctx)
		require.NoError(t, err)
		defer conn.Close()
		var mode string
		var sync, busy int
		require.NoError(t, conn.QueryRowContext(ctx, "PRAGMA journal_mode").Scan(&mode))
		require.NoError(t, conn.QueryRowContext(ctx, "PRAGMA synchronous").Scan(&sync))
		require.NoError(t, conn.QueryRowContext(ctx, "PRAGMA busy_timeout").Scan(&busy))
		assert.Equal(t, "wal", mode)
		assert.Equal(t, 2, sync, "synchronous=FULL")
		assert.Equal(t, 5000, busy)
	}
}
