package gormaudit

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync/atomic"
	"time"

	"github.com/cleveragents/audit"
	"gorm.io/gorm"
	gormlogger "gorm.io/gorm/logger"
)

// DefaultActor is the Actor of entries whose statement context carries
// none (see [WithDefaultActor]).
const DefaultActor = "system"

// Recorder is what the plugin needs of the audit log: [*audit.AuditService]
// implements it.
type Recorder interface {
	// Record records e; see [audit.AuditService.Record]. The plugin calls
	// it after a commit, or for a statement outside a transaction, when
	// the log is on another database than the models.
	Record(ctx context.Context, e audit.Entry) error
	// RecordTx records e as part of tx's open transaction, so that it is
	// committed if and only if tx commits; see
	// [audit.AuditService.RecordTx]. The plugin calls it inside business
	// transactions when the log is on the models' database.
	RecordTx(ctx context.Context, tx *gorm.DB, e audit.Entry) error
}

// Compile-time checks that the types fit the interfaces they are used as.
var (
	_ gorm.Plugin = (*Plugin)(nil)
	_ Recorder    = (*audit.AuditService)(nil)
)

// Plugin is the gorm.Plugin that audits model changes. Create it with
// [New] and register it with db.Use. Its methods are safe for concurrent
// use.
type Plugin struct {
	rec Recorder
	cfg config

	// inTx is set by Initialize when the log is on the plugin's database:
	// entries are then written inside the business transactions (RecordTx).
	// Otherwise they are recorded after the commit (Record).
	inTx bool

	dropped atomic.Uint64 // entries that Record refused
	warned  atomic.Bool   // the untracked-transaction warning was logged
}

// New returns the plugin that records into rec, or an error that names
// the first invalid option.
func New(rec Recorder, opts ...Option) (*Plugin, error) {
	cfg := config{
		actor:  DefaultActor,
		tables: auditTables(audit.DefaultTable),
		logger: slog.Default(),
	}
	if rec == nil {
		return nil, errors.New("gormaudit: New: nil Recorder")
	}
	for i, o := range opts {
		if o == nil {
			return nil, fmt.Errorf("gormaudit: New: option %d is nil", i)
		}
		if err := o(&cfg); err != nil {
			return nil, err
		}
	}
	return &Plugin{rec: rec, cfg: cfg}, nil
}

// Name returns "gormaudit", the name GORM registers the plugin under.
func (p *Plugin) Name() string { return "gormaudit" }

// Initialize registers the callbacks and chooses how entries are recorded:
// inside the business transactions when the log lives on db, else after
// their commits, with the plugin's transaction tracking placed beneath
// db's connection pool (see the package doc). GORM calls it from db.Use.
func (p *Plugin) Initialize(db *gorm.DB) error {
	if db.ConnPool == nil {
		return errors.New("gormaudit: the DB has no connection pool")
	}
	if err := p.register(db); err != nil {
		return err
	}
	p.inTx = p.probe(db)
	if !p.inTx {
		p.trackTransactions(db)
	}
	return nil
}

// probeTimeout bounds the probe of Initialize.
const probeTimeout = 10 * time.Second

// probe reports whether the log lives on db. It finds out by writing an entry with RecordTx in a
// transaction on db that it then rolls back: nothing stays of it, and a
// failed write (the log's tables are elsewhere) spoils only that
// transaction, never a business one (on PostgreSQL a failed statement
// aborts its transaction).
func (p *Plugin) probe(db *gorm.DB) bool {
	ctx, cancel := context.WithTimeout(context.Background(), probeTimeout)
	defer cancel()
	if pinger, ok := p.rec.(interface{ Ping(context.Context) error }); ok {
		// Open the log first: on SQLite, a log on db's file opened from
		// inside the probe's transaction would wait for that
		// transaction's own write lock to create its tables.
		_ = pinger.Ping(ctx) // a failure fails the probe too, and says why
	}
	errProbe := errors.New("probe done")
	var recErr error
	err := db.Session(&gorm.Session{NewDB: true, Context: ctx, Logger: gormlogger.Discard}).Transaction(func(tx *gorm.DB) error {
		recErr = p.rec.RecordTx(ctx, unpreparedTx(tx), audit.Entry{EventType: "gormaudit.probe", Actor: p.cfg.actor})
		return errProbe
	})
	switch {
	case !errors.Is(err, errProbe):
		p.cfg.logger.Warn("gormaudit: cannot begin a transaction to find where the audit log is; entries are recorded after each commit, and a crash right after a commit loses its entries", "err", err)
	case recErr == nil:
		return true
	case strings.Contains(recErr.Error(), "another database"):
		p.cfg.logger.Info("gormaudit: the audit log is on another database; entries are recorded after each commit, and a crash right after a commit loses its entries")
	default:
		p.cfg.logger.Warn("gormaudit: cannot record inside transactions; entries are recorded after each commit, and a crash right after a commit loses its entries", "err", recErr)
	}
	return false
}

// Dropped returns how many entries of committed changes the service
// refused (each is also logged): the changes stand, unaudited.
func (p *Plugin) Dropped() uint64 { return p.dropped.Load() }

// auditTables returns the lower-cased names of the tables of the log in
// table ([audit.Tables]): never audited.
func auditTables(table string) map[string]bool {
	m := map[string]bool{}
	for _, t := range audit.Tables(table) {
		m[strings.ToLower(t)] = true
	}
	return m
}

// An Option configures a Plugin in [New].
type Option func(*config) error

type config struct {
	actor     string
	tables    map[string]bool // lower-cased names of the tables never audited
	redactKey []byte
	logger    *slog.Logger
}

// optionError returns the error of an invalid option, naming it.
func optionError(option, format string, args ...any) error {
	return fmt.Errorf("gormaudit: %s: %s", option, fmt.Sprintf(format, args...))
}

// WithDefaultActor sets the Actor of entries whose statement context
// carries none (see [audit.ContextWithActor]). Defaults to "system".
func WithDefaultActor(actor string) Option {
	return func(c *config) error {
		if actor == "" {
			return optionError("WithDefaultActor", "empty actor")
		}
		c.actor = actor
		return nil
	}
}

// WithAuditTable names the audit service's table (its [audit.WithTable]),
// which is never audited; neither is its outbox (the name and
// [audit.OutboxSuffix]), nor the service's shared tables ([audit.ChainTable]
// and the others of [audit.Tables]). Defaults to [audit.DefaultTable].
func WithAuditTable(name string) Option {
	return func(c *config) error {
		if name == "" {
			return optionError("WithAuditTable", "empty table name")
		}
		for t := range auditTables(audit.DefaultTable) {
			delete(c.tables, t)
		}
		for t := range auditTables(name) {
			c.tables[t] = true
		}
		return nil
	}
}

// WithSkipTables names further tables whose changes are not audited, such
// as session or cache tables. Names match case-insensitively. Defaults to
// none.
func WithSkipTables(tables ...string) Option {
	return func(c *config) error {
		for i, t := range tables {
			if t == "" {
				return optionError("WithSkipTables", "table name %d is empty", i)
			}
			c.tables[strings.ToLower(t)] = true
		}
		return nil
	}
}

// WithRedactKey sets the HMAC key of redacted values (see the package
// doc): they appear as [audit.RedactedPrefix] and the hex HMAC-SHA256 of
// their canonical JSON, as [audit.WithRedactKeys] writes them. Defaults to
// none: such values appear as "[redacted]".
func WithRedactKey(key []byte) Option {
	return func(c *config) error {
		if len(key) == 0 {
			return optionError("WithRedactKey", "empty key")
		}
		c.redactKey = append([]byte(nil), key...)
		return nil
	}
}

// WithLogger sets the logger of refused entries and warnings. Defaults to
// slog.Default().
func WithLogger(l *slog.Logger) Option {
	return func(c *config) error {
		if l == nil {
			return optionError("WithLogger", "nil logger")
		}
		c.logger = l
		return nil
	}
}
