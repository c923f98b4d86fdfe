package auditexport

import (
	"context"
	"database/sql"
	"path/filepath"
	"testing"
	"time"

	"github.com/cleveragents/audit"
	"github.com/cleveragents/audit/internal/testutil"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// Under audit.WithSelfAudit a run that delivered entries records one
// audit.export entry in the log's chain, naming the consumer and the IDs;
// without it, nothing.
func TestRunRecordsTheExport(t *testing.T) {
	for _, self := range []bool{true, false} {
		t.Run(map[bool]string{true: "self-audit", false: "off"}[self], func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "audit.db")
			opts := []audit.Option{audit.WithSQLite(path), audit.WithLogger(testutil.Discard())}
			if self {
				opts = append(opts, audit.WithSelfAudit())
			}
			s, err := audit.New(opts...)
			require.NoError(t, err)
			defer s.Close()
			ctx := context.Background()
			for i := range 5 {
				require.NoError(t, s.Record(ctx, audit.Entry{EventType: "e", Actor: "a", RequestID: string(rune('a' + i))}))
			}
			require.NoError(t, s.Flush(ctx))
			db, err := sql.Open("sqlite3", path+"?_busy_timeout=5000")
			require.NoError(t, err)
			defer db.Close()
			sink, err := NewFileSink(filepath.Join(t.TempDir(), "out.jsonl"), FileOptions{})
			require.NoError(t, err)
			defer sink.Close()
			x, err := New(Config{Source: s, Sink: sink, DB: db, Consumer: "siem", PollInterval: 10 * time.Millisecond, Logger: testutil.Discard()})
			require.NoError(t, err)
			rctx, cancel := context.WithCancel(ctx)
			ran := make(chan error, 1)
			go func() { ran <- x.Run(rctx) }()
			testutil.WaitFor(t, time.Minute, func() bool { lag, err := x.Lag(ctx); return err == nil && lag == 0 }, "the exporter to catch up")
			cancel()
			require.NoError(t, <-ran)
			require.NoError(t, s.Flush(ctx))

			got, err := s.List(ctx, audit.Filter{EventType: audit.EventExport})
			require.NoError(t, err)
			if !self {
				assert.Empty(t, got)
				return
			}
			require.Len(t, got, 1)
			assert.Equal(t, audit.SelfActor, got[0].Actor)
			assert.Equal(t, "siem", got[0].Details["consumer"])
			assert.Equal(t, float64(1), got[0].Details["first_id"], "the start entry is ID 1")
			assert.Equal(t, float64(6), got[0].Details["last_id"])
			assert.Equal(t, float64(6), got[0].Details["entries"])
		})
	}
}
