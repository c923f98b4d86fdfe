// Package otelaudit reports an audit service's counters and gauges
// through the OpenTelemetry metric API, so that an operator can alert on a
// failing audit pipeline (NIST SP 800-53 AU-5) with the metrics stack they
// already run.
//
// [Register] creates asynchronous instruments on a [metric.Meter] and one
// callback that reads [audit.AuditService.Stats] (and, for each exporter
// given with [WithExporter], [auditexport.Exporter.Stats] and
// [auditexport.Exporter.Lag]) when the SDK collects. Nothing is added to
// Record's path: between two collections the package does no work at all.
//
// The package depends on the OpenTelemetry API alone
// (go.opentelemetry.io/otel/metric); the program chooses the SDK and the
// exporter (Prometheus, OTLP, stdout). It is a module of its own, so users
// of the audit library who do not want OpenTelemetry never see it in their
// module graph.
//
// The instruments, with their units as OpenTelemetry writes them (a
// Prometheus exporter turns "audit.writer.failures" into
// audit_writer_failures_total and a gauge in "s" into ..._seconds):
//
//	audit.entries.queued                gauge    {entry}   accepted, not yet committed
//	audit.entries.written               counter  {entry}   committed by this service
//	audit.entries.rejected              counter  {entry}   Record calls refused
//	audit.writer.batches                counter  {batch}   write transactions committed
//	audit.writer.failures               counter  {failure} failed open or write attempts
//	audit.writer.commit.duration        gauge    s         the last batch's write transaction
//	audit.writer.oldest_uncommitted.age gauge    s         how long the oldest waiting entry has waited; 0 when none waits
//	audit.writer.last_commit.age        gauge    s         since the last commit; no point before the first
//	audit.export.lag                    gauge    {entry}   committed entries the exporter's sink has yet to receive
//	audit.export.records                counter  {record}  records delivered by the exporter
//	audit.export.failures               counter  {failure} the exporter's failed reads, deliveries and cursor updates
//
// The export instruments carry the attribute audit.export.consumer. The
// ones to alert on: oldest_uncommitted.age above a few seconds (the
// writer cannot commit: the database is gone, full or locked), a rising
// failures or rejected count, and export.lag that keeps growing.
package otelaudit

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/cleveragents/audit"
	"github.com/cleveragents/audit/auditexport"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/metric"
)

// The instruments' names: see the package documentation.
const (
	MetricQueued            = "audit.entries.queued"
	MetricWritten           = "audit.entries.written"
	MetricRejected          = "audit.entries.rejected"
	MetricBatches           = "audit.writer.batches"
	MetricFailures          = "audit.writer.failures"
	MetricCommitDuration    = "audit.writer.commit.duration"
	MetricOldestUncommitted = "audit.writer.oldest_uncommitted.age"
	MetricLastCommitAge     = "audit.writer.last_commit.age"
	MetricExportLag         = "audit.export.lag"
	MetricExportRecords     = "audit.export.records"
	MetricExportFailures    = "audit.export.failures"
)

// ConsumerKey is the attribute that names an exporter's consumer on the
// audit.export.* instruments.
const ConsumerKey = attribute.Key("audit.export.consumer")

// DefaultLagTimeout bounds the query behind audit.export.lag in one
// collection (see [WithLagTimeout]).
const DefaultLagTimeout = 2 * time.Second

// An Option configures [Register].
type Option func(*config)

type config struct {
	attrs      []attribute.KeyValue
	exporters  []exporter
	lagTimeout time.Duration
	errs       []error
}

type exporter struct {
	x        *auditexport.Exporter
	consumer string
}

// WithAttributes adds attrs to every observation, e.g. to tell two
// services (two tables, two databases) apart on one meter.
func WithAttributes(attrs ...attribute.KeyValue) Option {
	return func(c *config) { c.attrs = append(c.attrs, attrs...) }
}

// WithExporter adds the audit.export.* instruments for x, with
// consumer (usually x's Config.Consumer) in the attribute
// audit.export.consumer. Give it once per exporter. The lag costs one
// COUNT query of the log per collection (see [auditexport.Exporter.Lag]),
// bounded by [WithLagTimeout]; the other figures are read from memory.
func WithExporter(consumer string, x *auditexport.Exporter) Option {
	return func(c *config) {
		switch {
		case x == nil:
			c.errs = append(c.errs, fmt.Errorf("WithExporter(%q): nil exporter", consumer))
		case consumer == "":
			c.errs = append(c.errs, errors.New("WithExporter: empty consumer name"))
		default:
			c.exporters = append(c.exporters, exporter{x: x, consumer: consumer})
		}
	}
}

// WithLagTimeout bounds the query behind audit.export.lag in each
// collection: when the database does not answer in time the lag is left
// out of that collection and the callback returns the error (the SDK
// hands it to the OpenTelemetry error handler). Defaults to
// DefaultLagTimeout.
func WithLagTimeout(d time.Duration) Option {
	return func(c *config) {
		if d <= 0 {
			c.errs = append(c.errs, fmt.Errorf("WithLagTimeout(%v): must be positive", d))
			return
		}
		c.lagTimeout = d
	}
}

// Register creates the instruments listed in the package documentation
// on meter and registers one callback that observes svc's [audit.Stats]
// (and the exporters' figures) at each collection. Unregister the
// returned registration before svc is gone, or let it live as long as the
// meter provider; Stats works after Shutdown, so a late collection is
// harmless. The error names the argument or option at fault, or the
// instrument the meter refused.
func Register(meter metric.Meter, svc *audit.AuditService, opts ...Option) (metric.Registration, error) {
	cfg := config{lagTimeout: DefaultLagTimeout}
	if meter == nil {
		cfg.errs = append(cfg.errs, errors.New("nil meter"))
	}
	if svc == nil {
		cfg.errs = append(cfg.errs, errors.New("nil service"))
	}
	for i, o := range opts {
		if o == nil {
			cfg.errs = append(cfg.errs, fmt.Errorf("option %d is nil", i))
			continue
		}
		o(&cfg)
	}
	if len(cfg.errs) > 0 {
		return nil, fmt.Errorf("otelaudit: register: %w", cfg.errs[0])
	}
	// The attribute sets are built once, not at every collection.
	attrs := metric.WithAttributeSet(attribute.NewSet(cfg.attrs...))
	exportAttrs := make([]metric.MeasurementOption, len(cfg.exporters))
	for i, x := range cfg.exporters {
		kv := append(append([]attribute.KeyValue{}, cfg.attrs...), ConsumerKey.String(x.consumer))
		exportAttrs[i] = metric.WithAttributeSet(attribute.NewSet(kv...))
	}

	var ins instruments
	b := builder{meter: meter}
	ins.queued = b.intGauge(MetricQueued, "{entry}", "Audit entries accepted and not yet committed, the writer's batch in flight included.")
	ins.written = b.intCounter(MetricWritten, "{entry}", "Audit entries committed by this service.")
	ins.rejected = b.intCounter(MetricRejected, "{entry}", "Record calls refused: invalid, queue full or closed.")
	ins.batches = b.intCounter(MetricBatches, "{batch}", "Write transactions committed by the audit writer.")
	ins.failures = b.intCounter(MetricFailures, "{failure}", "Failed attempts to open the audit database or commit a batch (each retried).")
	ins.commit = b.floatGauge(MetricCommitDuration, "s", "How long the last committed batch's write transaction took.")
	ins.oldest = b.floatGauge(MetricOldestUncommitted, "s", "How long the oldest audit entry not yet committed has waited; 0 when none waits.")
	ins.lastCommit = b.floatGauge(MetricLastCommitAge, "s", "Time since the audit writer last committed a batch; absent before the first commit.")
	if len(cfg.exporters) > 0 {
		ins.lag = b.intGauge(MetricExportLag, "{entry}", "Committed audit entries that the exporter's sink has yet to receive.")
		ins.exported = b.intCounter(MetricExportRecords, "{record}", "Audit records delivered by the exporter (a batch sent again counts again).")
		ins.exportFailures = b.intCounter(MetricExportFailures, "{failure}", "The exporter's failed reads, deliveries and cursor updates (each retried).")
	}
	if b.err != nil {
		return nil, fmt.Errorf("otelaudit: register: %w", b.err)
	}

	cb := func(ctx context.Context, o metric.Observer) error {
		now := time.Now() // the service stamps its Stats with the wall clock too
		st := svc.Stats()
		o.ObserveInt64(ins.queued, int64(st.Queued), attrs)
		o.ObserveInt64(ins.written, clampInt64(st.Written), attrs)
		o.ObserveInt64(ins.rejected, clampInt64(st.Rejected), attrs)
		o.ObserveInt64(ins.batches, clampInt64(st.Batches), attrs)
		o.ObserveInt64(ins.failures, clampInt64(st.Failures), attrs)
		o.ObserveFloat64(ins.commit, st.CommitLatency.Seconds(), attrs)
		o.ObserveFloat64(ins.oldest, age(now, st.OldestUncommitted), attrs)
		if !st.LastCommit.IsZero() {
			o.ObserveFloat64(ins.lastCommit, age(now, st.LastCommit), attrs)
		}
		var errs []error
		for i, x := range cfg.exporters {
			xs := x.x.Stats()
			o.ObserveInt64(ins.exported, clampInt64(xs.Exported), exportAttrs[i])
			o.ObserveInt64(ins.exportFailures, clampInt64(xs.Failures), exportAttrs[i])
			lctx, cancel := context.WithTimeout(ctx, cfg.lagTimeout)
			lag, err := x.x.Lag(lctx)
			cancel()
			if err != nil {
				errs = append(errs, fmt.Errorf("otelaudit: %s of %q: %w", MetricExportLag, x.consumer, err))
				continue
			}
			o.ObserveInt64(ins.lag, lag, exportAttrs[i])
		}
		return errors.Join(errs...)
	}
	reg, err := meter.RegisterCallback(cb, ins.observables()...)
	if err != nil {
		return nil, fmt.Errorf("otelaudit: register callback: %w", err)
	}
	return reg, nil
}

// instruments are the observables of one Register.
type instruments struct {
	queued, written, rejected, batches, failures metric.Int64Observable
	commit, oldest, lastCommit                   metric.Float64Observable
	lag, exported, exportFailures                metric.Int64Observable // nil without exporters
}

func (ins *instruments) observables() []metric.Observable {
	obs := []metric.Observable{ins.queued, ins.written, ins.rejected, ins.batches, ins.failures, ins.commit, ins.oldest, ins.lastCommit}
	if ins.lag != nil {
		obs = append(obs, ins.lag, ins.exported, ins.exportFailures)
	}
	return obs
}

// builder creates instruments and keeps the first error, so that Register
// reads as a list.
type builder struct {
	meter metric.Meter
	err   error
}

func (b *builder) intGauge(name, unit, desc string) metric.Int64Observable {
	g, err := b.meter.Int64ObservableGauge(name, metric.WithUnit(unit), metric.WithDescription(desc))
	b.keep(name, err)
	return g
}

func (b *builder) intCounter(name, unit, desc string) metric.Int64Observable {
	c, err := b.meter.Int64ObservableCounter(name, metric.WithUnit(unit), metric.WithDescription(desc))
	b.keep(name, err)
	return c
}

func (b *builder) floatGauge(name, unit, desc string) metric.Float64Observable {
	g, err := b.meter.Float64ObservableGauge(name, metric.WithUnit(unit), metric.WithDescription(desc))
	b.keep(name, err)
	return g
}

func (b *builder) keep(name string, err error) {
	if err != nil && b.err == nil {
		b.err = fmt.Errorf("instrument %s: %w", name, err)
	}
}

// age is how long before now t was, in seconds; 0 for a zero t (nothing
// waits) and never negative (the wall clock may step back).
func age(now, t time.Time) float64 {
	if t.IsZero() {
		return 0
	}
	return max(now.Sub(t).Seconds(), 0)
}

// clampInt64 converts a counter for the Int64 instruments, which no
// counter of a running service reaches the limit of.
func clampInt64(n uint64) int64 {
	return int64(min(n, 1<<63-1))
}
