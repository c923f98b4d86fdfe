package audit

import (
	"errors"
	"fmt"
	"log/slog"
	"regexp"
	"strconv"
	"strings"
	"time"

	"gorm.io/gorm"
)

// Defaults of the options.
const (
	DefaultSQLitePath = "audit.db"      // WithSQLite
	DefaultTable      = "audit_entries" // WithTable
	DefaultQueueSize  = 4096            // WithQueueSize
	DefaultBatchSize  = 512             // WithBatchSize
)

// retentionInterval is how often WithRetention prunes after its first run.
const retentionInterval = time.Minute

// ChainTable is the table that holds one row per audit table: its chain
// head and its prune checkpoint. [WithTable] may not name it, and adapters
// that audit a database's tables never audit it.
const ChainTable = "audit_chain_heads"

const chainTable = ChainTable

var tableNameRE = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_]{0,62}$`)

// OverflowPolicy says what Record does in async mode when the queue is full.
type OverflowPolicy int

const (
	// OverflowBlock makes Record wait for room until its ctx ends. It is
	// the default.
	OverflowBlock OverflowPolicy = iota
	// OverflowFail makes Record return ErrQueueFull at once.
	OverflowFail
)

// String returns the policy's name.
func (p OverflowPolicy) String() string {
	switch p {
	case OverflowBlock:
		return "OverflowBlock"
	case OverflowFail:
		return "OverflowFail"
	}
	return fmt.Sprintf("OverflowPolicy(%d)", int(p))
}

// An Option configures an AuditService in New.
type Option func(*config)

// config is what the options set. New validates it once; options only
// record what they were given, and the errors of what they could not take.
type config struct {
	sqlitePath string
	dialector  gorm.Dialector
	db         *gorm.DB
	sources    []string // names of the database options given, in order

	table      string
	async      bool
	queueSize  int
	batchSize  int
	batchGrow  bool // no WithBatchSize: batches may grow past batchSize (see writer.go)
	overflow   OverflowPolicy
	retention  time.Duration
	chainKey   []byte
	logger     *slog.Logger
	clock      func() time.Time
	readOnly   bool
	selfAudit  bool
	redactKey  []byte
	redactKeys map[string]bool // lower-cased

	tree treeConfig // WithSigner and the checkpoint options (publish.go) // HOOK(merkle)

	retentionEvery time.Duration // tests shorten it
	errs           []error
}

func defaultConfig() config {
	return config{
		sqlitePath:     DefaultSQLitePath,
		table:          DefaultTable,
		async:          true,
		queueSize:      DefaultQueueSize,
		batchSize:      DefaultBatchSize,
		batchGrow:      true,
		overflow:       OverflowBlock,
		logger:         slog.Default(),
		clock:          time.Now,
		retentionEvery: retentionInterval,
	}
}

// databaseName names the database in errors and logs: the SQLite path, or
// the dialector's name.
func (c *config) databaseName() string {
	switch {
	case c.db != nil:
		return "(the shared " + c.db.Dialector.Name() + " *gorm.DB)"
	case c.dialector != nil:
		return "(" + c.dialector.Name() + " dialector)"
	}
	return strconv.Quote(c.sqlitePath)
}

func (c *config) fail(option, format string, args ...any) {
	c.errs = append(c.errs, fmt.Errorf("audit: %s: %s", option, fmt.Sprintf(format, args...)))
}

// atLeastOne sets *dst to n, or fails option if n is below 1.
func (c *config) atLeastOne(option, what string, n int, dst *int) {
	if n < 1 {
		c.fail(option, "%s %d is below 1", what, n)
		return
	}
	*dst = n
}

// validate checks what no single option can: the choice of database.
func (c *config) validate() error {
	if c.readOnly && c.selfAudit {
		c.fail("WithReadOnly", "a read-only service cannot record its own life: drop WithSelfAudit")
	}
	if c.readOnly && c.retention > 0 {
		c.fail("WithReadOnly", "a read-only service cannot prune: drop WithRetention")
	}
	if len(c.sources) > 1 {
		c.fail(strings.Join(c.sources, ", "), "choose at most one of WithSQLite, WithDialector and WithDB")
	}
	c.validateTree() // HOOK(merkle)
	return errors.Join(c.errs...)
}

// WithSQLite stores the log in the SQLite file at path, opened with WAL, a
// busy timeout and synchronous=FULL (see the README for the trade-off).
// The file is created if missing; its directory is not. ":memory:" gives the
// service a private in-memory database that all its connections share.
// Defaults to "audit.db" in the working directory.
func WithSQLite(path string) Option {
	return func(c *config) {
		c.sources = append(c.sources, "WithSQLite")
		if path == "" {
			c.fail("WithSQLite", "empty path")
			return
		}
		c.sqlitePath = path
	}
}

// WithDialector stores the log through any GORM dialector, such as
// postgres.Open(dsn) or sqlite.Open(dsn). The service opens it lazily,
// once, and closes it in Shutdown. SQLite and PostgreSQL are supported.
func WithDialector(d gorm.Dialector) Option {
	return func(c *config) {
		c.sources = append(c.sources, "WithDialector")
		if d == nil {
			c.fail("WithDialector", "nil dialector")
			return
		}
		if _, ok := dialectFor(d.Name()); !ok {
			c.fail("WithDialector", "unsupported dialect %q (want %s)", d.Name(), supportedDialects())
			return
		}
		c.dialector = d
	}
}

// WithDB shares an open *gorm.DB. Shutdown and Close leave it open: it
// belongs to the caller.
func WithDB(db *gorm.DB) Option {
	return func(c *config) {
		c.sources = append(c.sources, "WithDB")
		if db == nil || db.Dialector == nil {
			c.fail("WithDB", "nil db")
			return
		}
		if _, ok := dialectFor(db.Dialector.Name()); !ok {
			c.fail("WithDB", "unsupported dialect %q (want %s)", db.Dialector.Name(), supportedDialects())
			return
		}
		c.db = db
	}
}

// WithTable names the table of entries. It must match
// ^[A-Za-z_][A-Za-z0-9_]{0,62}$ and may not be audit_chain_heads or begin
// with sqlite_ or pg_ (names the databases keep for themselves). On SQLite
// names are case-insensitive: "Logs" and "logs" are one table with one
// chain. Defaults to "audit_entries".
func WithTable(name string) Option {
	return func(c *config) {
		switch {
		case !tableNameRE.MatchString(name):
			c.fail("WithTable", "table name %q is not an identifier matching %s", name, tableNameRE)
		case strings.EqualFold(name, chainTable):
			c.fail("WithTable", "table name %q is reserved for the chain heads", name)
		case hasPrefixFold(name, "sqlite_") || hasPrefixFold(name, "pg_"):
			c.fail("WithTable", "table name %q is reserved by the database (sqlite_ and pg_ prefixes)", name)
		default:
			c.table = name
		}
	}
}

func hasPrefixFold(s, prefix string) bool {
	return len(s) >= len(prefix) && strings.EqualFold(s[:len(prefix)], prefix)
}

// WithAsync chooses async mode (Record returns once the entry is queued) or
// sync mode (Record returns once the entry is committed). Defaults to true.
func WithAsync(async bool) Option {
	return func(c *config) { c.async = async }
}

// WithQueueSize sets how many entries may wait for the writer. Defaults to
// 4096.
func WithQueueSize(n int) Option {
	return func(c *config) { c.atLeastOne("WithQueueSize", "queue size", n, &c.queueSize) }
}

// WithBatchSize sets the most entries the writer commits in one
// transaction, a hard limit. Defaults to 512; without this option, while
// commits are the bottleneck (every batch comes back full) the writer lets
// batches grow, doubling up to 32768 entries on a short log and 4096 on a
// long one (what the page cache holds of the pages a batch dirties), and a
// transaction takes the entries that arrive while it inserts; batches
// shrink back to 512 once the queue keeps up. On a log with random index
// keys (request IDs, resources) a transaction costs about the same however
// many entries it holds.
func WithBatchSize(n int) Option {
	return func(c *config) {
		if n < 1 {
			c.fail("WithBatchSize", "batch size %d is below 1", n)
			return
		}
		c.batchSize, c.batchGrow = n, false
	}
}

// WithOverflow sets what async Record does with a full queue. Defaults to
// OverflowBlock.
func WithOverflow(p OverflowPolicy) Option {
	return func(c *config) {
		if p != OverflowBlock && p != OverflowFail {
			c.fail("WithOverflow", "unknown policy %v", p)
			return
		}
		c.overflow = p
	}
}

// WithRetention prunes, in the background, the entries older than maxAge
// (by the service's clock): within 5 seconds of the first open, then once a
// minute. Zero, the default, keeps everything.
func WithRetention(maxAge time.Duration) Option {
	return func(c *config) {
		if maxAge < 0 {
			c.fail("WithRetention", "negative retention %v", maxAge)
			return
		}
		c.retention = maxAge
	}
}

// WithChainKey chains entries with HMAC-SHA256 under key instead of plain
// SHA-256, so that only holders of the key can forge a consistent chain.
// Every service and verifier of one table must use the same key. Defaults
// to no key.
func WithChainKey(key []byte) Option {
	return func(c *config) {
		if len(key) == 0 {
			c.fail("WithChainKey", "empty key")
			return
		}
		c.chainKey = append([]byte(nil), key...)
	}
}

// WithReadOnly opens the log for reading only: the service never writes
// to the database. It does not switch a SQLite file to WAL or create a
// missing table (a missing table is an error), and Record, RecordTx, Prune
// and Ping return ErrReadOnly. A SQLite file that WithSQLite names is
// opened read-only; when it has no -wal or -journal file beside it (no
// writer is at work and nothing is left to recover), it is opened as
// immutable, so that reading creates no -wal or -shm file either: do not
// write to it while such a service reads it. Defaults to false.
func WithReadOnly() Option {
	return func(c *config) { c.readOnly = true }
}

// WithLogger sets where the service logs failures and, on a Shutdown that
// times out, the entries it could not commit. The service never prints,
// and silences GORM's own logger on the databases it opens. Defaults to
// slog.Default().
func WithLogger(l *slog.Logger) Option {
	return func(c *config) {
		if l == nil {
			c.fail("WithLogger", "nil logger")
			return
		}
		c.logger = l
	}
}

// WithClock sets the clock that stamps entries recorded with a zero Time
// and that WithRetention measures age by. Defaults to time.Now.
func WithClock(now func() time.Time) Option {
	return func(c *config) {
		if now == nil {
			c.fail("WithClock", "nil clock")
			return
		}
		c.clock = now
	}
}

// WithRedactKeys replaces, before hashing and storage, the value of every
// Details key named in keys (at any depth, matched case-insensitively) with
// "hmac-sha256:" and the hex HMAC-SHA256 under hmacKey of the value's
// canonical JSON: equal secrets stay correlatable, but unreadable. Defaults
// to no redaction.
func WithRedactKeys(hmacKey []byte, keys ...string) Option {
	return func(c *config) {
		if len(hmacKey) == 0 {
			c.fail("WithRedactKeys", "empty HMAC key")
			return
		}
		if len(keys) == 0 {
			c.fail("WithRedactKeys", "no keys to redact")
			return
		}
		c.redactKey = append([]byte(nil), hmacKey...)
		if c.redactKeys == nil {
			c.redactKeys = make(map[string]bool, len(keys))
		}
		for _, k := range keys {
			c.redactKeys[strings.ToLower(k)] = true
		}
	}
}
