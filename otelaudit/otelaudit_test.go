package otelaudit_test

import (
	"context"
	"database/sql"
	"fmt"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/cleveragents/audit"
	"github.com/cleveragents/audit/auditexport"
	"github.com/cleveragents/audit/internal/testutil"
	"github.com/cleveragents/audit/otelaudit"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/metric"
	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	"go.opentelemetry.io/otel/sdk/metric/metricdata"
	"go.uber.org/goleak"
)

// TestMain fails the run if a goroutine outlives the tests.
func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

// newService returns a service on a new SQLite file, and the file's path.
func newService(t *testing.T) (*audit.AuditService, string) {
	t.Helper()
	path := testutil.TempDB(t)
	svc, err := audit.New(audit.WithSQLite(path), audit.WithLogger(testutil.Discard()))
	require.NoError(t, err)
	t.Cleanup(func() { _ = svc.Shutdown(context.Background()) })
	require.NoError(t, svc.Ping(context.Background()))
	return svc, path
}

// newReader registers svc's instruments on a meter of a new SDK provider
// and returns the provider's manual reader.
func newReader(t *testing.T, svc *audit.AuditService, opts ...otelaudit.Option) *sdkmetric.ManualReader {
	t.Helper()
	reader := sdkmetric.NewManualReader()
	mp := sdkmetric.NewMeterProvider(sdkmetric.WithReader(reader))
	t.Cleanup(func() { _ = mp.Shutdown(context.Background()) })
	reg, err := otelaudit.Register(mp.Meter("otelaudit_test"), svc, opts...)
	require.NoError(t, err)
	t.Cleanup(func() { _ = reg.Unregister() })
	return reader
}

func recordN(t *testing.T, svc *audit.AuditService, n int) {
	t.Helper()
	ctx := context.Background()
	for i := range n {
		require.NoError(t, svc.Record(ctx, audit.Entry{EventType: "test.event", Actor: "alice", Resource: fmt.Sprintf("doc/%d", i)}))
	}
	require.NoError(t, svc.Flush(ctx))
}

// point is one data point as collected.
type point struct {
	value     float64
	monotonic bool // a counter (a monotonic sum), not a gauge
	unit      string
}

// collection is one collection's points, by "name" or "name{key=value,...}".
type collection map[string]point

// collect reads once through reader and returns every point, and the
// error Collect returned (a callback's).
func collect(t *testing.T, reader *sdkmetric.ManualReader) (collection, error) {
	t.Helper()
	var rm metricdata.ResourceMetrics
	err := reader.Collect(context.Background(), &rm)
	got := collection{}
	add := func(m metricdata.Metrics, set attribute.Set, v float64, mono bool) {
		key := m.Name
		if set.Len() > 0 {
			var kv []string
			for _, a := range set.ToSlice() {
				kv = append(kv, string(a.Key)+"="+a.Value.String())
			}
			key += "{" + strings.Join(kv, ",") + "}"
		}
		_, dup := got[key]
		require.False(t, dup, "two points for %s", key)
		got[key] = point{value: v, monotonic: mono, unit: m.Unit}
	}
	for _, sm := range rm.ScopeMetrics {
		for _, m := range sm.Metrics {
			switch d := m.Data.(type) {
			case metricdata.Gauge[int64]:
				for _, p := range d.DataPoints {
					add(m, p.Attributes, float64(p.Value), false)
				}
			case metricdata.Gauge[float64]:
				for _, p := range d.DataPoints {
					add(m, p.Attributes, p.Value, false)
				}
			case metricdata.Sum[int64]:
				require.Equal(t, metricdata.CumulativeTemporality, d.Temporality, m.Name)
				for _, p := range d.DataPoints {
					add(m, p.Attributes, float64(p.Value), d.IsMonotonic)
				}
			default:
				t.Fatalf("%s: unexpected data %T", m.Name, m.Data)
			}
		}
	}
	return got, err
}

// mustCollect is collect for a collection that must not fail.
func mustCollect(t *testing.T, reader *sdkmetric.ManualReader) collection {
	t.Helper()
	got, err := collect(t, reader)
	require.NoError(t, err)
	return got
}

// value returns the point's value, failing the test if there is none.
func (c collection) value(t *testing.T, key string) float64 {
	t.Helper()
	p, ok := c[key]
	require.True(t, ok, "no point %s among %v", key, c)
	return p.value
}

// assertMatchesStats asserts that the counters and the queue gauge equal
// st, and that every instrument has its kind and unit.
func assertMatchesStats(t *testing.T, got collection, st audit.Stats) {
	t.Helper()
	assert.EqualValues(t, st.Queued, got.value(t, otelaudit.MetricQueued), "queued")
	assert.EqualValues(t, st.Written, got.value(t, otelaudit.MetricWritten), "written")
	assert.EqualValues(t, st.Batches, got.value(t, otelaudit.MetricBatches), "batches")
	assert.EqualValues(t, st.Failures, got.value(t, otelaudit.MetricFailures), "failures")
	assert.EqualValues(t, st.Rejected, got.value(t, otelaudit.MetricRejected), "rejected")
	assert.Equal(t, st.CommitLatency.Seconds(), got.value(t, otelaudit.MetricCommitDuration), "commit latency")
	for _, name := range []string{otelaudit.MetricWritten, otelaudit.MetricBatches, otelaudit.MetricFailures, otelaudit.MetricRejected} {
		assert.True(t, got[name].monotonic, "%s is a counter", name)
	}
	for _, name := range []string{otelaudit.MetricCommitDuration, otelaudit.MetricOldestUncommitted} {
		assert.Equal(t, "s", got[name].unit, name)
		assert.False(t, got[name].monotonic, "%s is a gauge", name)
	}
	assert.Equal(t, "{entry}", got[otelaudit.MetricWritten].unit)
}

// The collected values are the service's Stats: before anything is
// written, after N entries on a real SQLite file, and after refused
// Records.
func TestMetricsMatchStats(t *testing.T) {
	svc, _ := newService(t)
	reader := newReader(t, svc)

	got := mustCollect(t, reader)
	assertMatchesStats(t, got, svc.Stats())
	assert.Zero(t, got.value(t, otelaudit.MetricWritten))
	assert.Zero(t, got.value(t, otelaudit.MetricOldestUncommitted), "nothing waits")
	assert.NotContains(t, got, otelaudit.MetricLastCommitAge, "no point before the first commit")

	const n = 57
	recordN(t, svc, n)
	err := svc.Record(context.Background(), audit.Entry{EventType: "no actor"})
	require.Error(t, err)
	before := time.Now()
	got = mustCollect(t, reader)
	after := time.Now()
	st := svc.Stats()
	assertMatchesStats(t, got, st)
	assert.EqualValues(t, n, got.value(t, otelaudit.MetricWritten))
	assert.EqualValues(t, 1, got.value(t, otelaudit.MetricRejected))
	assert.Positive(t, got.value(t, otelaudit.MetricBatches))
	assert.Positive(t, got.value(t, otelaudit.MetricCommitDuration))
	assert.Zero(t, got.value(t, otelaudit.MetricOldestUncommitted), "nothing waits after Flush")

	// The age is taken during the collection, so it lies between the
	// last commit's age at the collection's start and at its end.
	commitAge := got.value(t, otelaudit.MetricLastCommitAge)
	assert.GreaterOrEqual(t, commitAge, before.Sub(st.LastCommit).Seconds())
	assert.LessOrEqual(t, commitAge, after.Sub(st.LastCommit).Seconds())
}

// While another connection holds SQLite's write lock, the waiting entry's
// age and the failure count rise, and Healthy's reason is visible in the
// figures; once the lock is gone and Flush returns, nothing waits again.
func TestMetricsWhileTheWriteLockIsHeld(t *testing.T) {
	svc, path := newService(t)
	reader := newReader(t, svc)
	recordN(t, svc, 3)
	start := mustCollect(t, reader)
	assert.Zero(t, start.value(t, otelaudit.MetricFailures))

	release := testutil.HoldWriteLock(t, path)
	accepting := time.Now()
	require.NoError(t, svc.Record(context.Background(), audit.Entry{EventType: "test.event", Actor: "bob"}))
	accepted := time.Now()

	var got collection
	var collecting time.Time
	testutil.WaitFor(t, time.Minute, func() bool {
		collecting = time.Now()
		got = mustCollect(t, reader)
		return got.value(t, otelaudit.MetricFailures) > 0
	}, "a failure in the metrics while the write lock is held")
	collected := time.Now()
	assert.EqualValues(t, 1, got.value(t, otelaudit.MetricQueued), "the entry waits")
	assert.EqualValues(t, 3, got.value(t, otelaudit.MetricWritten), "nothing more was written")
	oldest := got.value(t, otelaudit.MetricOldestUncommitted)
	assert.Positive(t, oldest)
	assert.GreaterOrEqual(t, oldest, collecting.Sub(accepted).Seconds(), "at least since the Record returned")
	assert.LessOrEqual(t, oldest, collected.Sub(accepting).Seconds(), "at most since the Record began")

	// The age keeps rising while the entry waits.
	testutil.WaitFor(t, time.Minute, func() bool {
		return mustCollect(t, reader).value(t, otelaudit.MetricOldestUncommitted) > oldest
	}, "the oldest entry's age to rise")

	release()
	require.NoError(t, svc.Flush(context.Background()))
	got = mustCollect(t, reader)
	st := svc.Stats()
	assertMatchesStats(t, got, st)
	assert.Zero(t, got.value(t, otelaudit.MetricOldestUncommitted), "nothing waits after release and Flush")
	assert.Zero(t, got.value(t, otelaudit.MetricQueued))
	assert.EqualValues(t, 4, got.value(t, otelaudit.MetricWritten))
	assert.Positive(t, got.value(t, otelaudit.MetricFailures), "a counter keeps its failures")
	assert.NoError(t, svc.Healthy(context.Background()))
}

// With WithExporter the exporter's lag, deliveries and failures appear
// under its consumer's name, beside the attributes of WithAttributes.
func TestMetricsOfAnExporter(t *testing.T) {
	svc, path := newService(t)
	db := testutil.RawDB(t, path)
	sink, err := auditexport.NewFileSink(filepath.Join(t.TempDir(), "export.jsonl"), auditexport.FileOptions{})
	require.NoError(t, err)
	t.Cleanup(func() { _ = sink.Close() })
	x, err := auditexport.New(auditexport.Config{Source: svc, Sink: sink, DB: db, Consumer: "siem",
		PollInterval: 10 * time.Millisecond, Logger: testutil.Discard()})
	require.NoError(t, err)
	reader := newReader(t, svc, otelaudit.WithExporter("siem", x), otelaudit.WithAttributes(attribute.String("service", "bank")))

	const n = 20
	recordN(t, svc, n)
	lag := otelaudit.MetricExportLag + "{audit.export.consumer=siem,service=bank}"
	records := otelaudit.MetricExportRecords + "{audit.export.consumer=siem,service=bank}"
	written := otelaudit.MetricWritten + "{service=bank}"
	got := mustCollect(t, reader)
	assert.EqualValues(t, n, got.value(t, lag), "nothing exported yet")
	assert.Zero(t, got.value(t, records))
	assert.EqualValues(t, n, got.value(t, written))
	assert.NotContains(t, got, otelaudit.MetricWritten, "every point has the attributes")

	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- x.Run(ctx) }()
	testutil.WaitFor(t, time.Minute, func() bool { return mustCollect(t, reader).value(t, lag) == 0 }, "the exporter to catch up")
	cancel()
	require.NoError(t, <-done)
	got = mustCollect(t, reader)
	assert.EqualValues(t, x.Stats().Exported, got.value(t, records))
	assert.EqualValues(t, n, got.value(t, records))
	assert.EqualValues(t, x.Stats().Failures, got.value(t, otelaudit.MetricExportFailures+"{audit.export.consumer=siem,service=bank}"))
	assert.True(t, got[records].monotonic)
}

// When the lag cannot be read, that one point is left out, the other
// figures are still collected, and Collect's error names the consumer.
func TestLagErrorLeavesTheRestIntact(t *testing.T) {
	svc, _ := newService(t)
	db, err := sql.Open("sqlite3", testutil.TempDB(t))
	require.NoError(t, err)
	x, err := auditexport.New(auditexport.Config{Source: svc, Sink: discardSink{}, DB: db, Consumer: "gone", Logger: testutil.Discard()})
	require.NoError(t, err)
	require.NoError(t, db.Close()) // the cursor's database is gone
	reader := newReader(t, svc, otelaudit.WithExporter("gone", x))
	recordN(t, svc, 2)

	got, err := collect(t, reader)
	require.Error(t, err)
	assert.Contains(t, err.Error(), `audit.export.lag of "gone"`)
	assert.NotContains(t, got, otelaudit.MetricExportLag+"{audit.export.consumer=gone}")
	assert.Contains(t, got, otelaudit.MetricExportRecords+"{audit.export.consumer=gone}")
	assert.EqualValues(t, 2, got.value(t, otelaudit.MetricWritten))
}

type discardSink struct{}

func (discardSink) Write(context.Context, []auditexport.Record) error { return nil }
func (discardSink) Close() error                                      { return nil }

// A bad argument or option is an error that names it, with one prefix.
func TestRegisterRejectsBadInput(t *testing.T) {
	svc, _ := newService(t)
	meter := sdkmetric.NewMeterProvider().Meter("t")
	x, err := auditexport.New(auditexport.Config{Source: svc, Sink: discardSink{}, DB: testutil.RawDB(t, testutil.TempDB(t)), Consumer: "c"})
	require.NoError(t, err)
	tests := []struct {
		name  string
		meter metric.Meter
		svc   *audit.AuditService
		opts  []otelaudit.Option
		want  string
	}{
		{"nil meter", nil, svc, nil, "nil meter"},
		{"nil service", meter, nil, nil, "nil service"},
		{"nil option", meter, svc, []otelaudit.Option{otelaudit.WithAttributes(), nil}, "option 1 is nil"},
		{"nil exporter", meter, svc, []otelaudit.Option{otelaudit.WithExporter("siem", nil)}, `WithExporter("siem"): nil exporter`},
		{"empty consumer", meter, svc, []otelaudit.Option{otelaudit.WithExporter("", x)}, "WithExporter: empty consumer name"},
		{"zero lag timeout", meter, svc, []otelaudit.Option{otelaudit.WithLagTimeout(0)}, "WithLagTimeout(0s): must be positive"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			reg, err := otelaudit.Register(tt.meter, tt.svc, tt.opts...)
			require.Error(t, err)
			assert.Nil(t, reg)
			assert.Equal(t, "otelaudit: register: "+tt.want, err.Error())
		})
	}
}

// After Unregister the callback no longer runs: the service's points are
// gone from the next collection.
func TestUnregister(t *testing.T) {
	svc, _ := newService(t)
	reader := sdkmetric.NewManualReader()
	mp := sdkmetric.NewMeterProvider(sdkmetric.WithReader(reader))
	defer func() { _ = mp.Shutdown(context.Background()) }()
	reg, err := otelaudit.Register(mp.Meter("t"), svc)
	require.NoError(t, err)
	recordN(t, svc, 1)
	assert.Contains(t, mustCollect(t, reader), otelaudit.MetricWritten)
	require.NoError(t, reg.Unregister())
	assert.NotContains(t, mustCollect(t, reader), otelaudit.MetricWritten)
}
