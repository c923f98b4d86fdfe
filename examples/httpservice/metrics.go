package main

// Metrics and health: the readiness probe (GET /healthz) and the audit
// log's metrics in Prometheus' text format (GET /metrics), through the
// OpenTelemetry SDK, its Prometheus exporter and otelaudit. The library
// itself depends on none of them.

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"

	"github.com/cleveragents/audit"
	"github.com/cleveragents/audit/otelaudit"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"go.opentelemetry.io/otel/attribute"
	otelprom "go.opentelemetry.io/otel/exporters/prometheus"
	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	"go.opentelemetry.io/otel/sdk/resource"
)

// healthz answers a readiness probe: 200 "ok" while the audit log can take
// entries (svc.Healthy), 503 with the reason otherwise, e.g. "audit:
// healthy: the writer is failing with 3 entries waiting: ..." while
// another process holds the database's write lock. A service that must
// not lose audit entries stops taking traffic then.
func healthz(svc *audit.AuditService) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		if err := svc.Healthy(r.Context()); err != nil {
			http.Error(w, err.Error(), http.StatusServiceUnavailable)
			return
		}
		_, _ = io.WriteString(w, "ok\n")
	}
}

// newMetrics returns the handler of GET /metrics, which serves the audit
// service's instruments (see otelaudit) on a Prometheus registry of its
// own, and the function that stops them.
func newMetrics(svc *audit.AuditService, logger *slog.Logger) (http.Handler, func(context.Context) error, error) {
	reg := prometheus.NewRegistry()
	// Without the otel_scope_* labels: one meter serves them all here.
	exporter, err := otelprom.New(otelprom.WithRegisterer(reg), otelprom.WithoutScopeInfo())
	if err != nil {
		return nil, nil, fmt.Errorf("metrics: %w", err)
	}
	provider := sdkmetric.NewMeterProvider(
		sdkmetric.WithReader(exporter),
		sdkmetric.WithResource(resource.NewSchemaless(attribute.String("service.name", "httpservice"))),
	)
	registration, err := otelaudit.Register(provider.Meter("github.com/cleveragents/audit/examples/httpservice"), svc)
	if err != nil {
		_ = provider.Shutdown(context.Background())
		return nil, nil, err
	}
	stop := func(ctx context.Context) error {
		return errors.Join(registration.Unregister(), provider.Shutdown(ctx))
	}
	handler := promhttp.HandlerFor(reg, promhttp.HandlerOpts{
		ErrorLog: slog.NewLogLogger(logger.Handler(), slog.LevelWarn),
	})
	return handler, stop, nil
}
