package otelaudit_test

import (
	"context"
	"fmt"
	"log"
	"os"
	"path/filepath"

	"github.com/cleveragents/audit"
	"github.com/cleveragents/audit/otelaudit"
	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	"go.opentelemetry.io/otel/sdk/metric/metricdata"
)

// Register the service's instruments on a meter. Here the SDK's manual
// reader collects them; a program would give the meter provider a
// Prometheus or OTLP exporter instead.
func ExampleRegister() {
	dir, err := os.MkdirTemp("", "otelaudit-example")
	if err != nil {
		log.Fatal(err)
	}
	defer os.RemoveAll(dir)
	ctx := context.Background()
	svc, err := audit.New(audit.WithSQLite(filepath.Join(dir, "audit.db")))
	if err != nil {
		log.Fatal(err)
	}
	defer svc.Shutdown(ctx)

	reader := sdkmetric.NewManualReader()
	provider := sdkmetric.NewMeterProvider(sdkmetric.WithReader(reader))
	defer provider.Shutdown(ctx)
	reg, err := otelaudit.Register(provider.Meter("github.com/cleveragents/audit"), svc)
	if err != nil {
		log.Fatal(err)
	}
	defer reg.Unregister()

	for _, actor := range []string{"alice", "bob", "carol"} {
		if err := svc.Record(ctx, audit.Entry{EventType: "user.login", Actor: actor}); err != nil {
			log.Fatal(err)
		}
	}
	if err := svc.Flush(ctx); err != nil {
		log.Fatal(err)
	}

	var rm metricdata.ResourceMetrics
	if err := reader.Collect(ctx, &rm); err != nil {
		log.Fatal(err)
	}
	for _, sm := range rm.ScopeMetrics {
		for _, m := range sm.Metrics {
			switch d := m.Data.(type) {
			case metricdata.Sum[int64]:
				if m.Name == otelaudit.MetricWritten || m.Name == otelaudit.MetricRejected {
					fmt.Println(m.Name, d.DataPoints[0].Value)
				}
			case metricdata.Gauge[float64]:
				if m.Name == otelaudit.MetricOldestUncommitted {
					fmt.Println(m.Name, d.DataPoints[0].Value)
				}
			}
		}
	}
	// Unordered output:
	// audit.entries.written 3
	// audit.entries.rejected 0
	// audit.writer.oldest_uncommitted.age 0
}
