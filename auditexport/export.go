// Package auditexport copies an audit log, entry by entry and in ID order,
// to a sink outside the database: JSON lines in rotated files
// ([NewFileSink]), an HTTP webhook ([NewWebhookSink]) or a syslog collector
// ([NewSyslogSink]); the module github.com/cleveragents/audit/auditexport/otlp
// adds OpenTelemetry logs over OTLP/HTTP, with its dependencies kept out of
// this one's.
//
// An [Exporter] reads committed entries through the service's public
// queries (it never touches the service's queue, so a slow or failed sink
// never slows or blocks Record), hands them to its sink in batches, and
// after each batch that the sink accepted moves a cursor that it keeps in
// a small table of a database the user gives it ([CursorTable]). Delivery
// is at least once and in ID order: a batch is retried, whole and in
// order, with capped exponential backoff until the sink takes it, and an
// exporter that is killed between a delivery and the cursor's update sends
// that one batch again when it restarts. Every exported [Record] carries
// the entry's ID, so a receiver dedupes by ID, and its prev_hash and hash,
// so that the copy's chain can be verified again.
package auditexport

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"sync/atomic"
	"time"

	"github.com/cleveragents/audit"
)

// Defaults of a [Config].
const (
	DefaultBatchSize    = 256
	DefaultPollInterval = 200 * time.Millisecond
	DefaultMaxBackoff   = 30 * time.Second
	minBackoff          = 100 * time.Millisecond
)

// TimeLayout is the text of [Record.Time]: RFC 3339 in UTC with nine
// fractional digits, exactly as the log stores and hashes it.
const TimeLayout = "2006-01-02T15:04:05.000000000Z"

// Record is one exported entry: every field of the entry as stored, in a
// fixed order of JSON keys, so that the copy's chain can be re-verified.
type Record struct {
	ID        int64           `json:"id"`
	Time      string          `json:"time"` // in TimeLayout
	EventType string          `json:"event_type"`
	Actor     string          `json:"actor"`
	Resource  string          `json:"resource"`
	Outcome   string          `json:"outcome"`
	RequestID string          `json:"request_id"`
	Details   json.RawMessage `json:"details"` // the stored JSON; null when none
	PrevHash  string          `json:"prev_hash"`
	Hash      string          `json:"hash"`
}

// FromEntry returns the record of a committed entry.
func FromEntry(e audit.Entry) (Record, error) {
	r := Record{
		ID: e.ID, Time: e.Time.UTC().Format(TimeLayout),
		EventType: e.EventType, Actor: e.Actor, Resource: e.Resource, Outcome: e.Outcome, RequestID: e.RequestID,
		Details:  json.RawMessage("null"),
		PrevHash: e.PrevHash, Hash: e.Hash,
	}
	if e.Details != nil {
		// The service reads Details so that encoding/json writes the
		// stored bytes again (see audit.Entry).
		b, err := json.Marshal(e.Details)
		if err != nil {
			return Record{}, fmt.Errorf("auditexport: entry %d: details: %w", e.ID, err)
		}
		r.Details = b
	}
	return r, nil
}

// A Sink delivers batches of records. Write returns nil only once the
// whole batch is delivered as far as the sink can tell; on an error the
// exporter calls Write again with the same batch, so a sink must either
// deliver a batch whole or tolerate its records arriving again. Write is
// never called concurrently.
type Sink interface {
	Write(ctx context.Context, batch []Record) error
	Close() error
}

// Source is what an exporter reads: an [*audit.AuditService] is one.
type Source interface {
	List(ctx context.Context, f audit.Filter) ([]audit.Entry, error)
	Count(ctx context.Context, f audit.Filter) (int64, error)
}

var _ Source = (*audit.AuditService)(nil)

// exportRecorder is the Source that records its exports in its own chain
// (*audit.AuditService, under audit.WithSelfAudit).
type exportRecorder interface {
	RecordExport(consumer string, firstID, lastID int64, n uint64)
}

var _ exportRecorder = (*audit.AuditService)(nil)

// Config configures an [Exporter].
type Config struct {
	// Source is the log, usually the *audit.AuditService. Required.
	Source Source
	// Sink receives the records. Required. The exporter does not close
	// it: the caller does, after Run has returned.
	Sink Sink
	// DB holds the cursor, in [CursorTable] (created when missing): the
	// log's own database or any other, SQLite (mattn/go-sqlite3) or
	// PostgreSQL. With GORM, pass gormDB.DB(). On SQLite, open it with a
	// busy timeout (e.g. "file.db?_busy_timeout=5000"). Required.
	DB *sql.DB
	// Consumer names the cursor: exporters with different names keep
	// their own places in the log. Required.
	Consumer string
	// Table is the log's table, which keys the cursor beside Consumer.
	// Defaults to audit.DefaultTable.
	Table string
	// BatchSize is the most records per Write, 1 through
	// audit.MaxListLimit. Defaults to DefaultBatchSize.
	BatchSize int
	// PollInterval is how often a caught-up exporter looks for new
	// entries. Defaults to DefaultPollInterval.
	PollInterval time.Duration
	// MaxBackoff caps the wait between retries, which starts at 100 ms
	// and doubles. Defaults to DefaultMaxBackoff.
	MaxBackoff time.Duration
	// Logger receives the exporter's warnings. Defaults to slog.Default().
	Logger *slog.Logger
}

// Exporter copies a log to a sink; see the package documentation. Create
// one with [New] and run it with [Exporter.Run].
type Exporter struct {
	cfg    Config
	cursor *cursorStore

	pos                         atomic.Int64 // the cursor as last stored
	loaded                      atomic.Bool  // pos holds the stored cursor
	exported, batches, failures atomic.Uint64
	lastErr                     atomic.Pointer[error]
	running                     atomic.Bool
}

// Stats are an exporter's counters since New.
type Stats struct {
	Cursor   int64  // the ID of the last entry delivered and recorded in the cursor
	Exported uint64 // records delivered (a batch sent again counts again)
	Batches  uint64 // batches delivered
	Failures uint64 // failed reads, deliveries and cursor updates (each retried)
}

// New validates cfg and returns an exporter. It does not touch the
// database or the sink. The error names the field at fault.
func New(cfg Config) (*Exporter, error) {
	if cfg.Source == nil {
		return nil, errors.New("auditexport: Config.Source is nil")
	}
	if cfg.Sink == nil {
		return nil, errors.New("auditexport: Config.Sink is nil")
	}
	if cfg.DB == nil {
		return nil, errors.New("auditexport: Config.DB is nil (the cursor's database)")
	}
	if cfg.Consumer == "" || len(cfg.Consumer) > 200 {
		return nil, fmt.Errorf("auditexport: Config.Consumer %q: must be 1 to 200 bytes", cfg.Consumer)
	}
	if cfg.Table == "" {
		cfg.Table = audit.DefaultTable
	}
	switch {
	case cfg.BatchSize == 0:
		cfg.BatchSize = DefaultBatchSize
	case cfg.BatchSize < 0 || cfg.BatchSize > audit.MaxListLimit:
		return nil, fmt.Errorf("auditexport: Config.BatchSize %d is outside 1 through %d", cfg.BatchSize, audit.MaxListLimit)
	}
	switch {
	case cfg.PollInterval == 0:
		cfg.PollInterval = DefaultPollInterval
	case cfg.PollInterval < 0:
		return nil, fmt.Errorf("auditexport: Config.PollInterval %v is negative", cfg.PollInterval)
	}
	switch {
	case cfg.MaxBackoff == 0:
		cfg.MaxBackoff = DefaultMaxBackoff
	case cfg.MaxBackoff < minBackoff:
		return nil, fmt.Errorf("auditexport: Config.MaxBackoff %v is below %v", cfg.MaxBackoff, minBackoff)
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	return &Exporter{cfg: cfg, cursor: newCursorStore(cfg.DB, cfg.Consumer, cfg.Table)}, nil
}

// Run exports until ctx ends, then returns nil. It reads the cursor,
// then repeatedly reads the next batch after it, delivers it and records
// its last ID in the cursor; every failure (of the log, the sink or the
// cursor's database) is logged, counted and retried with backoff. Run
// returns an error before ctx ends only when it is already running, or
// when the Source is closed (the error wraps audit.ErrClosed).
func (x *Exporter) Run(ctx context.Context) error {
	if !x.running.CompareAndSwap(false, true) {
		return errors.New("auditexport: Run: already running")
	}
	defer x.running.Store(false)
	var pos int64
	first, delivered := int64(0), uint64(0)
	defer func() {
		// The log's own life (audit.WithSelfAudit): what this run exported.
		if r, ok := x.cfg.Source.(exportRecorder); ok && delivered > 0 {
			r.RecordExport(x.cfg.Consumer, first, pos, delivered)
		}
	}()
	if !x.retry(ctx, "read cursor", func() (err error) {
		pos, err = x.cursor.load(ctx)
		return err
	}) {
		return nil
	}
	x.pos.Store(pos)
	x.loaded.Store(true)
	poll := time.NewTimer(x.cfg.PollInterval)
	defer poll.Stop()
	for ctx.Err() == nil {
		var batch []Record
		var closed error
		if !x.retry(ctx, "read log", func() error {
			entries, err := x.cfg.Source.List(ctx, audit.Filter{AfterID: pos, Limit: x.cfg.BatchSize})
			if errors.Is(err, audit.ErrClosed) {
				closed = err // nothing will come any more
				return nil
			}
			if err != nil {
				return err
			}
			batch = batch[:0]
			for _, e := range entries {
				r, err := FromEntry(e)
				if err != nil {
					return err
				}
				batch = append(batch, r)
			}
			return nil
		}) {
			return nil
		}
		if closed != nil {
			return fmt.Errorf("auditexport: run: the log's service is closed: %w", closed)
		}
		if len(batch) == 0 {
			poll.Reset(x.cfg.PollInterval)
			select {
			case <-ctx.Done():
				return nil
			case <-poll.C:
			}
			continue
		}
		if !x.retry(ctx, "deliver", func() error { return x.cfg.Sink.Write(ctx, batch) }) {
			return nil
		}
		x.exported.Add(uint64(len(batch)))
		x.batches.Add(1)
		last := batch[len(batch)-1].ID
		if !x.retry(ctx, "save cursor", func() error { return x.cursor.save(ctx, last) }) {
			return nil // the batch goes again after a restart
		}
		if delivered == 0 {
			first = batch[0].ID
		}
		delivered += uint64(len(batch))
		pos = last
		x.pos.Store(pos)
	}
	return nil
}

// retry runs fn until it succeeds (true) or ctx ends (false), waiting
// with capped exponential backoff between attempts.
func (x *Exporter) retry(ctx context.Context, op string, fn func() error) bool {
	backoff := minBackoff
	for {
		err := fn()
		if err == nil {
			return true
		}
		if ctx.Err() != nil {
			return false
		}
		x.failures.Add(1)
		x.lastErr.Store(&err)
		x.cfg.Logger.Warn("auditexport: "+op+" failed; retrying", "consumer", x.cfg.Consumer, "retry_in", backoff, "err", err)
		t := time.NewTimer(backoff)
		select {
		case <-ctx.Done():
			t.Stop()
			return false
		case <-t.C:
		}
		backoff = min(2*backoff, x.cfg.MaxBackoff)
	}
}

// Lag returns how many committed entries of the log lie after the
// cursor: what the sink has yet to receive. Before Run has read the
// cursor, Lag reads it itself.
func (x *Exporter) Lag(ctx context.Context) (int64, error) {
	pos := x.pos.Load()
	if !x.loaded.Load() {
		var err error
		if pos, err = x.cursor.load(ctx); err != nil {
			return 0, fmt.Errorf("auditexport: lag: %w", err)
		}
	}
	n, err := x.cfg.Source.Count(ctx, audit.Filter{AfterID: pos})
	if err != nil {
		return 0, fmt.Errorf("auditexport: lag: %w", err)
	}
	return n, nil
}

// Stats returns the exporter's counters. It is cheap and never fails.
func (x *Exporter) Stats() Stats {
	return Stats{Cursor: x.pos.Load(), Exported: x.exported.Load(), Batches: x.batches.Load(), Failures: x.failures.Load()}
}

// LastError returns the last failure, or nil if there was none.
func (x *Exporter) LastError() error {
	if p := x.lastErr.Load(); p != nil {
		return *p
	}
	return nil
}
