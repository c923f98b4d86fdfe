// Package otlp is an [auditexport.Sink] that sends audit records to an
// OpenTelemetry collector as logs over OTLP/HTTP (binary protobuf). It is
// a module of its own, so that users of the audit library who do not
// export to OpenTelemetry never get its dependencies.
package otlp

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"sync/atomic"
	"time"

	"github.com/cleveragents/audit/auditexport"
	commonpb "go.opentelemetry.io/proto/otlp/common/v1"
	logspb "go.opentelemetry.io/proto/otlp/logs/v1"
	resourcepb "go.opentelemetry.io/proto/otlp/resource/v1"
	"google.golang.org/protobuf/proto"
)

// Defaults of [Options].
const (
	DefaultServiceName = "audit"
	DefaultTimeout     = 30 * time.Second
	// ScopeName is the instrumentation scope of every log record.
	ScopeName = "github.com/cleveragents/audit"
)

// Options configure a [Sink].
type Options struct {
	// ServiceName is the resource's service.name. Defaults to
	// DefaultServiceName.
	ServiceName string
	// Client sends the requests. Defaults to a client with a timeout of
	// DefaultTimeout.
	Client *http.Client
	// Header is added to every request (e.g. an API key).
	Header http.Header
}

// Sink posts each batch as one ExportLogsServiceRequest to an OTLP/HTTP
// logs endpoint (e.g. http://collector:4318/v1/logs). Each record becomes
// one LogRecord: its time is the entry's time, its event name the event
// type, its severity INFO (WARN for the outcomes "failure" and "denied"),
// its body the record's JSON (as [auditexport.Record] encodes it, so the
// chain can be verified again from the copy), and its attributes the
// fields: audit.id (int), audit.time, audit.event_type, audit.actor,
// audit.resource, audit.outcome, audit.request_id, audit.details (JSON),
// audit.prev_hash and audit.hash.
//
// Any answer but 2xx is an error, and the exporter sends the batch again
// (OTLP says not to retry 400s; an audit log must not drop entries, so
// this sink does, and the exporter's backoff keeps it from hammering). A
// 2xx answer whose partial_success rejects records delivers the batch;
// [Sink.Rejected] counts those records.
type Sink struct {
	endpoint string
	opts     Options
	resource *resourcepb.Resource
	rejected atomic.Int64
}

var _ auditexport.Sink = (*Sink)(nil)

// NewSink returns a sink that posts to endpoint, an http or https URL.
func NewSink(endpoint string, opts Options) (*Sink, error) {
	u, err := url.Parse(endpoint)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return nil, fmt.Errorf("otlp: NewSink: endpoint %q is not an http or https URL", endpoint)
	}
	if opts.ServiceName == "" {
		opts.ServiceName = DefaultServiceName
	}
	if opts.Client == nil {
		opts.Client = &http.Client{Timeout: DefaultTimeout}
	}
	return &Sink{endpoint: endpoint, opts: opts, resource: &resourcepb.Resource{
		Attributes: []*commonpb.KeyValue{str("service.name", opts.ServiceName)},
	}}, nil
}

// Write posts the batch.
func (s *Sink) Write(ctx context.Context, batch []auditexport.Record) error {
	if len(batch) == 0 {
		return nil
	}
	body, err := s.encode(batch)
	if err != nil {
		return err
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, s.endpoint, bytes.NewReader(body))
	if err != nil {
		return fmt.Errorf("otlp: %w", err)
	}
	for k, vs := range s.opts.Header {
		req.Header[k] = vs
	}
	req.Header.Set("Content-Type", "application/x-protobuf")
	resp, err := s.opts.Client.Do(req)
	if err != nil {
		return fmt.Errorf("otlp: %w", err)
	}
	defer resp.Body.Close()
	answer, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if resp.StatusCode/100 != 2 {
		return fmt.Errorf("otlp: %s answered %d %s", s.endpoint, resp.StatusCode, http.StatusText(resp.StatusCode))
	}
	if n := rejectedIn(answer); n > 0 {
		s.rejected.Add(n)
	}
	return nil
}

// Rejected returns how many records collectors refused in partial
// successes.
func (s *Sink) Rejected() int64 { return s.rejected.Load() }

// Close releases idle connections.
func (s *Sink) Close() error {
	s.opts.Client.CloseIdleConnections()
	return nil
}

// encode returns the request. An ExportLogsServiceRequest is, on the
// wire, a LogsData (both are field 1, repeated ResourceLogs), which spares
// this package the collector's gRPC dependencies.
func (s *Sink) encode(batch []auditexport.Record) ([]byte, error) {
	now := uint64(time.Now().UnixNano())
	recs := make([]*logspb.LogRecord, 0, len(batch))
	for i := range batch {
		r := &batch[i]
		body, err := jsonOf(r)
		if err != nil {
			return nil, err
		}
		lr := &logspb.LogRecord{
			ObservedTimeUnixNano: now,
			SeverityNumber:       logspb.SeverityNumber_SEVERITY_NUMBER_INFO,
			SeverityText:         "INFO",
			EventName:            r.EventType,
			Body:                 &commonpb.AnyValue{Value: &commonpb.AnyValue_StringValue{StringValue: body}},
			Attributes: []*commonpb.KeyValue{
				{Key: "audit.id", Value: &commonpb.AnyValue{Value: &commonpb.AnyValue_IntValue{IntValue: r.ID}}},
				str("audit.time", r.Time), str("audit.event_type", r.EventType), str("audit.actor", r.Actor),
				str("audit.resource", r.Resource), str("audit.outcome", r.Outcome), str("audit.request_id", r.RequestID),
				str("audit.details", string(r.Details)), str("audit.prev_hash", r.PrevHash), str("audit.hash", r.Hash),
			},
		}
		if r.Outcome == "failure" || r.Outcome == "denied" {
			lr.SeverityNumber, lr.SeverityText = logspb.SeverityNumber_SEVERITY_NUMBER_WARN, "WARN"
		}
		// Unix nanoseconds hold years 1678 through 2262; outside them
		// the time stays 0 (unknown) and audit.time has it.
		if t, err := time.Parse(auditexport.TimeLayout, r.Time); err == nil && t.Year() > 1677 && t.Year() < 2262 {
			lr.TimeUnixNano = uint64(t.UnixNano())
		}
		recs = append(recs, lr)
	}
	data := &logspb.LogsData{ResourceLogs: []*logspb.ResourceLogs{{
		Resource:  s.resource,
		ScopeLogs: []*logspb.ScopeLogs{{Scope: &commonpb.InstrumentationScope{Name: ScopeName}, LogRecords: recs}},
	}}}
	b, err := proto.Marshal(data)
	if err != nil {
		return nil, fmt.Errorf("otlp: encode entries %s-%s: %w", strconv.FormatInt(batch[0].ID, 10), strconv.FormatInt(batch[len(batch)-1].ID, 10), err)
	}
	return b, nil
}

func str(k, v string) *commonpb.KeyValue {
	return &commonpb.KeyValue{Key: k, Value: &commonpb.AnyValue{Value: &commonpb.AnyValue_StringValue{StringValue: v}}}
}
