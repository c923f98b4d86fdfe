// Command httpservice is a small HTTP service whose every request and
// every committed model change is audited: the audithttp middleware records
// one entry per request, and the gormaudit plugin records each create,
// update and delete of an account, with the same actor and request ID.
//
//	go run ./examples/httpservice                       # http://127.0.0.1:8080, ./httpservice.db
//	go run ./examples/httpservice -addr 127.0.0.1:0     # any free port: it prints the one it got
//	go run ./examples/httpservice -db /tmp/bank.db
//
// The accounts and the audit log share one SQLite file (-db): the accounts
// in the table "accounts", the log in "audit_entries" and
// "audit_chain_heads", which the plugin never audits. Read the log with
// auditctl while the service runs or after it stopped:
//
//	go run ./cmd/auditctl --db httpservice.db list
//	go run ./cmd/auditctl --db httpservice.db verify
//
// The endpoints (JSON in, JSON out):
//
//	POST   /accounts       {"owner", "email", "password" (optional)}  201 with the account
//	GET    /accounts/{id}                                             the account
//	PATCH  /accounts/{id}  {"email", "balance_delta", "password"}     the account; any of the three
//	DELETE /accounts/{id}                                             204
//	POST   /transfer       {"from", "to", "amount"}                   200 with both accounts; 409 when
//	                                                                  "from" would go negative
//	GET    /healthz                                                   200 "ok", or 503 with the reason when
//	                                                                  the audit log cannot take entries
//	GET    /metrics                                                   the audit log's metrics (Prometheus)
//
// Neither of the last two is audited (see metrics.go).
//
// Errors are {"error": "..."} with status 400 (a bad request), 404 (no
// such account), 409 (insufficient funds) or 500.
//
// # Who is the actor
//
// The actor is the X-User request header. That is a stand-in for
// authentication, for the sake of the example: anyone can claim any name.
// A real service takes the actor from its authentication (a session, a
// verified token) in a WithActor function, with the authentication
// middleware outside the audit middleware. Requests without X-User are
// recorded as "anonymous". A request's X-Request-ID header, when it has
// one, becomes the entries' RequestID; otherwise the middleware makes one
// up. Either way the response carries it.
//
// # Shutting down
//
// SIGINT or SIGTERM stops the service: the HTTP server stops accepting and
// waits for the requests in flight (at most 10 s), then the audit service
// commits every entry still queued (at most 10 s) and the program prints
// how many entries it wrote and exits with status 0. Entries that could
// not be committed in time are logged to stderr, one JSON line each, and
// the exit status is 1.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/cleveragents/audit"
	"github.com/cleveragents/audit/audithttp"
	"github.com/cleveragents/audit/gormaudit"
	"gorm.io/driver/sqlite"
	"gorm.io/gorm"
	gormlogger "gorm.io/gorm/logger"
)

// Defaults and limits.
const (
	defaultAddr     = "127.0.0.1:8080"
	defaultDB       = "httpservice.db"
	shutdownTimeout = 10 * time.Second // for the HTTP server, then again for the audit log
	maxBody         = 1 << 20          // bytes of a request body
	maxOwner        = 100              // bytes of an owner's name
	minPassword     = 8                // bytes of a password
	maxAmount       = 100_000_000_000  // the largest transfer or balance change, in cents

	// PBKDF2-HMAC-SHA256 with OWASP's recommended iteration count.
	pbkdf2Iterations = 600_000
	pbkdf2KeyLen     = 32
	pbkdf2SaltLen    = 16
)

// Account is the service's model. Its struct tags tell the gormaudit
// plugin what to leave out of the audit log:
//
//   - PasswordHash is tagged audit:"redact": the log shows "[redacted]"
//     instead of the hash (or a keyed HMAC of it with
//     gormaudit.WithRedactKey), and still lists the column under
//     "changed" when a password changes;
//   - UpdatedAt is tagged audit:"-": it changes with every update, so it
//     would only add noise to "changed".
type Account struct {
	ID           int64     `json:"id"`
	Owner        string    `json:"owner" gorm:"not null"`
	Email        string    `json:"email" gorm:"not null"`
	Balance      int64     `json:"balance" gorm:"not null;default:0"` // in cents
	PasswordHash string    `json:"-" audit:"redact"`
	CreatedAt    time.Time `json:"created_at"`
	UpdatedAt    time.Time `json:"updated_at" audit:"-"`
}

func main() {
	addr := flag.String("addr", defaultAddr, "`address` to listen on; port 0 picks a free port")
	dbPath := flag.String("db", defaultDB, "SQLite `file` of the accounts and of the audit log; created if missing")
	flag.Parse()
	if flag.NArg() > 0 {
		fmt.Fprintf(os.Stderr, "httpservice: unexpected arguments: %s\n", strings.Join(flag.Args(), " "))
		flag.Usage()
		os.Exit(2)
	}
	logger := slog.New(slog.NewTextHandler(os.Stderr, nil))
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, *addr, *dbPath, os.Stdout, logger); err != nil {
		logger.Error("httpservice: " + err.Error())
		stop()
		os.Exit(1)
	}
}

// run serves on addr until ctx ends, then shuts down. It prints
// "listening on http://HOST:PORT" to out once the listener is open, and a
// summary when it has stopped.
func run(ctx context.Context, addr, dbPath string, out io.Writer, logger *slog.Logger) (err error) {
	db, err := openDB(dbPath, logger)
	if err != nil {
		return err
	}
	sqlDB, err := db.DB()
	if err != nil {
		return err
	}
	defer func() {
		if cerr := sqlDB.Close(); cerr != nil && err == nil {
			err = fmt.Errorf("close %s: %w", dbPath, cerr)
		}
	}()

	// The audit service opens its own connections to the same file. SQLite
	// (in WAL mode, with busy timeouts on both sides) lets the two write it
	// in turns.
	svc, err := audit.New(audit.WithSQLite(dbPath), audit.WithLogger(logger))
	if err != nil {
		return err
	}
	svcDown := false
	defer func() {
		if !svcDown {
			_ = svc.Close() // an early return: nothing was served
		}
	}()

	// The log is on the application's own file, so the plugin writes each
	// change's entry inside the change's own transaction (RecordTx): a
	// committed transfer always has its entries, even across a kill -9.
	// It never audits the service's own tables (audit.DefaultTable, its
	// outbox and audit.ChainTable); a service with audit.WithTable passes
	// the same name to gormaudit.WithAuditTable. Register the plugin
	// before any session is derived from db.
	plugin, err := gormaudit.New(svc, gormaudit.WithLogger(logger))
	if err != nil {
		return err
	}
	if err := db.Use(plugin); err != nil {
		return fmt.Errorf("register gormaudit: %w", err)
	}

	api := &server{db: db, log: logger}
	mux := http.NewServeMux()
	mux.HandleFunc("POST /accounts", api.createAccount)
	mux.HandleFunc("GET /accounts/{id}", api.getAccount)
	mux.HandleFunc("PATCH /accounts/{id}", api.updateAccount)
	mux.HandleFunc("DELETE /accounts/{id}", api.deleteAccount)
	mux.HandleFunc("POST /transfer", api.transfer)
	// Metrics and health (metrics.go).
	metrics, stopMetrics, err := newMetrics(svc, logger)
	if err != nil {
		return err
	}
	defer func() { _ = stopMetrics(context.Background()) }()
	mux.HandleFunc("GET /healthz", healthz(svc))
	mux.Handle("GET /metrics", metrics)
	// End of metrics and health.

	auditor, err := audithttp.New(svc,
		// X-User stands in for authentication: see the package doc.
		audithttp.WithActor(func(r *http.Request) string { return r.Header.Get("X-User") }),
		audithttp.WithSkipPaths("/healthz", "/metrics"),
		audithttp.WithLogger(logger),
	)
	if err != nil {
		return err // names the option at fault, with the audithttp: prefix
	}
	handler := auditor.Handler(mux)

	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return err
	}
	srv := &http.Server{
		Handler:           handler,
		ReadHeaderTimeout: 10 * time.Second,
		ReadTimeout:       30 * time.Second,
		WriteTimeout:      30 * time.Second,
		IdleTimeout:       2 * time.Minute,
		ErrorLog:          slog.NewLogLogger(logger.Handler(), slog.LevelWarn),
	}
	served := make(chan error, 1)
	go func() { served <- srv.Serve(ln) }()
	fmt.Fprintf(out, "listening on http://%s\n", ln.Addr())

	select {
	case <-ctx.Done():
	case err := <-served: // Serve failed; it returns nothing else before Shutdown
		svcDown = true
		return errors.Join(fmt.Errorf("serve: %w", err), shutdownAudit(svc, logger))
	}

	// Stop the HTTP server first: Shutdown waits for the handlers in
	// flight, and the middleware records each request's entry as its
	// handler returns. Only then is everything there is to audit queued.
	logger.Info("shutting down")
	sctx, cancel := context.WithTimeout(context.Background(), shutdownTimeout)
	defer cancel()
	var errs []error
	if err := srv.Shutdown(sctx); err != nil {
		errs = append(errs, fmt.Errorf("http shutdown: %w", err))
		_ = srv.Close() // the handlers still running get no more time
	}
	if err := <-served; !errors.Is(err, http.ErrServerClosed) {
		errs = append(errs, fmt.Errorf("serve: %w", err))
	}
	svcDown = true
	if err := shutdownAudit(svc, logger); err != nil {
		errs = append(errs, err)
	}
	if err := errors.Join(errs...); err != nil {
		return err
	}
	st := svc.Stats()
	fmt.Fprintf(out, "stopped: %d audit %s written in %d %s\n",
		st.Written, plural(st.Written, "entry", "entries"), st.Batches, plural(st.Batches, "transaction", "transactions"))
	return nil
}

// shutdownAudit commits the entries still queued. Those it cannot commit
// within shutdownTimeout it logs as JSON lines (the library does that),
// and the error says how many.
func shutdownAudit(svc *audit.AuditService, logger *slog.Logger) error {
	ctx, cancel := context.WithTimeout(context.Background(), shutdownTimeout)
	defer cancel()
	queued := svc.Stats().Queued
	if err := svc.Shutdown(ctx); err != nil {
		// err reads "audit: shutdown: N entries not committed: ...".
		logger.Error("audit log shutdown", "queued_when_shutdown_began", queued, "err", err)
		return err
	}
	return nil
}

// openDB opens the accounts database and creates its table.
//
// WAL lets readers (auditctl among them) work beside the writers; the busy
// timeout makes a writer wait for the audit service's transactions rather
// than fail; and _txlock=immediate starts every transaction with the write
// lock, because one that reads first (as the transfer handler does) cannot
// upgrade to a write once another connection, a concurrent request's or
// the audit writer's, has written the file in between: it fails at once
// with "database is locked". (The plugin needs no such setting: on SQLite
// it takes the write lock itself before it reads a row's values.)
func openDB(path string, logger *slog.Logger) (*gorm.DB, error) {
	dsn := path + "?_journal_mode=WAL&_busy_timeout=5000&_txlock=immediate&_foreign_keys=on"
	db, err := gorm.Open(sqlite.Open(dsn), &gorm.Config{
		Logger: gormlogger.NewSlogLogger(logger, gormlogger.Config{
			SlowThreshold:             time.Second,
			LogLevel:                  gormlogger.Warn,
			IgnoreRecordNotFoundError: true, // a 404, not a problem
		}),
	})
	if err != nil {
		return nil, fmt.Errorf("open %s: %w", path, err)
	}
	if err := db.AutoMigrate(&Account{}); err != nil {
		if sqlDB, derr := db.DB(); derr == nil {
			_ = sqlDB.Close()
		}
		return nil, fmt.Errorf("migrate %s: %w", path, err)
	}
	return db, nil
}
