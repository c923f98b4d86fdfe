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
	"crypto/pbkdf2"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"math"
	"net"
	"net/http"
	"net/mail"
	"os"
	"os/signal"
	"strconv"
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

// server holds the handlers' dependencies.
type server struct {
	db  *gorm.DB
	log *slog.Logger
}

// Errors the handlers map to statuses (see fail).
var (
	errInsufficientFunds = errors.New("insufficient funds")
)

// badRequest is an error with status 400; its message is shown to the
// client.
type badRequest struct{ msg string }

func (e *badRequest) Error() string { return e.msg }

func badRequestf(format string, args ...any) error {
	return &badRequest{msg: fmt.Sprintf(format, args...)}
}

// createAccount handles POST /accounts.
func (s *server) createAccount(w http.ResponseWriter, r *http.Request) {
	var req struct {
		Owner    string `json:"owner"`
		Email    string `json:"email"`
		Password string `json:"password"`
	}
	if err := decode(w, r, &req); err != nil {
		s.fail(w, r, err)
		return
	}
	acct := Account{Owner: strings.TrimSpace(req.Owner), Email: req.Email}
	if acct.Owner == "" || len(acct.Owner) > maxOwner {
		s.fail(w, r, badRequestf("owner: want 1 to %d bytes", maxOwner))
		return
	}
	if err := checkEmail(acct.Email); err != nil {
		s.fail(w, r, err)
		return
	}
	if req.Password != "" {
		h, err := hashPassword(req.Password)
		if err != nil {
			s.fail(w, r, err)
			return
		}
		acct.PasswordHash = h
	}
	// The request's context carries the actor and the request ID that the
	// middleware put there: db.WithContext hands them to the plugin. GORM
	// runs the insert in a transaction of its own, and the plugin records
	// accounts.create once it has committed.
	if err := s.db.WithContext(r.Context()).Create(&acct).Error; err != nil {
		s.fail(w, r, err)
		return
	}
	writeJSON(w, http.StatusCreated, acct)
}

// getAccount handles GET /accounts/{id}.
func (s *server) getAccount(w http.ResponseWriter, r *http.Request) {
	id, err := pathID(r)
	if err != nil {
		s.fail(w, r, err)
		return
	}
	var acct Account
	if err := s.db.WithContext(r.Context()).First(&acct, id).Error; err != nil {
		s.fail(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, acct)
}

// updateAccount handles PATCH /accounts/{id}: a new email, a change of
// the balance, a new password, or any of them at once.
func (s *server) updateAccount(w http.ResponseWriter, r *http.Request) {
	id, err := pathID(r)
	if err != nil {
		s.fail(w, r, err)
		return
	}
	var req struct {
		Email        *string `json:"email"`
		BalanceDelta *int64  `json:"balance_delta"`
		Password     *string `json:"password"`
	}
	if err := decode(w, r, &req); err != nil {
		s.fail(w, r, err)
		return
	}
	changes := map[string]any{}
	if req.Email != nil {
		if err := checkEmail(*req.Email); err != nil {
			s.fail(w, r, err)
			return
		}
		changes["email"] = *req.Email
	}
	if req.BalanceDelta != nil && (*req.BalanceDelta == 0 || *req.BalanceDelta < -maxAmount || *req.BalanceDelta > maxAmount) {
		s.fail(w, r, badRequestf("balance_delta: want a non-zero amount of at most %d", int64(maxAmount)))
		return
	}
	if req.Password != nil {
		h, err := hashPassword(*req.Password)
		if err != nil {
			s.fail(w, r, err)
			return
		}
		changes["password_hash"] = h
	}
	if len(changes) == 0 && req.BalanceDelta == nil {
		s.fail(w, r, badRequestf("nothing to change: give email, balance_delta or password"))
		return
	}

	var acct Account
	err = s.db.WithContext(r.Context()).Transaction(func(tx *gorm.DB) error {
		if err := tx.First(&acct, id).Error; err != nil {
			return err
		}
		if d := req.BalanceDelta; d != nil {
			if *d > 0 && acct.Balance > math.MaxInt64-*d {
				return badRequestf("balance_delta: the balance would overflow")
			}
			if acct.Balance+*d < 0 {
				return errInsufficientFunds
			}
			changes["balance"] = acct.Balance + *d
		}
		// The plugin reads the row before and after the update, in this
		// transaction, and holds accounts.update until the commit.
		if err := tx.Model(&acct).Updates(changes).Error; err != nil {
			return err
		}
		return tx.First(&acct, id).Error
	})
	if err != nil {
		s.fail(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, acct)
}

// deleteAccount handles DELETE /accounts/{id}.
func (s *server) deleteAccount(w http.ResponseWriter, r *http.Request) {
	id, err := pathID(r)
	if err != nil {
		s.fail(w, r, err)
		return
	}
	err = s.db.WithContext(r.Context()).Transaction(func(tx *gorm.DB) error {
		// Delete the loaded model, not &Account{} with an ID condition:
		// the plugin names the row it deletes ("accounts/<id>") from the
		// model's primary key, and would otherwise record a batch delete.
		var acct Account
		if err := tx.First(&acct, id).Error; err != nil {
			return err
		}
		return tx.Delete(&acct).Error
	})
	if err != nil {
		s.fail(w, r, err)
		return
	}
	w.WriteHeader(http.StatusNoContent)
}

// transfer handles POST /transfer: it moves amount from one account to
// another in one transaction.
func (s *server) transfer(w http.ResponseWriter, r *http.Request) {
	var req struct {
		From   int64 `json:"from"`
		To     int64 `json:"to"`
		Amount int64 `json:"amount"`
	}
	if err := decode(w, r, &req); err != nil {
		s.fail(w, r, err)
		return
	}
	switch {
	case req.From <= 0 || req.To <= 0:
		s.fail(w, r, badRequestf("from, to: want account IDs"))
		return
	case req.From == req.To:
		s.fail(w, r, badRequestf("from and to are the same account"))
		return
	case req.Amount <= 0 || req.Amount > maxAmount:
		s.fail(w, r, badRequestf("amount: want 1 to %d", int64(maxAmount)))
		return
	}

	var res struct {
		From Account `json:"from"`
		To   Account `json:"to"`
	}
	err := s.db.WithContext(r.Context()).Transaction(func(tx *gorm.DB) error {
		from, to := &res.From, &res.To
		if err := tx.First(from, req.From).Error; err != nil {
			return err
		}
		if err := tx.First(to, req.To).Error; err != nil {
			return err
		}
		if to.Balance > math.MaxInt64-req.Amount {
			return badRequestf("amount: the balance of account %d would overflow", to.ID)
		}
		// Move the money, then check the invariant. When it does not
		// hold, returning an error rolls both updates back, and the
		// plugin drops the two accounts.update entries it was holding
		// for the commit: only the request's own http.request entry (409)
		// is recorded.
		if err := tx.Model(from).Update("balance", gorm.Expr("balance - ?", req.Amount)).Error; err != nil {
			return err
		}
		if err := tx.Model(to).Update("balance", gorm.Expr("balance + ?", req.Amount)).Error; err != nil {
			return err
		}
		if err := tx.First(from, req.From).Error; err != nil {
			return err
		}
		if from.Balance < 0 {
			return errInsufficientFunds
		}
		return tx.First(to, req.To).Error
	})
	if err != nil {
		s.fail(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, res)
}

// fail answers with err's status and message: 400, 404, 409, or 500 for
// anything unexpected (whose details are logged, not shown).
func (s *server) fail(w http.ResponseWriter, r *http.Request, err error) {
	var bad *badRequest
	var tooBig *http.MaxBytesError
	switch {
	case errors.As(err, &bad):
		writeError(w, http.StatusBadRequest, bad.msg)
	case errors.As(err, &tooBig):
		writeError(w, http.StatusRequestEntityTooLarge, fmt.Sprintf("request body over %d bytes", tooBig.Limit))
	case errors.Is(err, gorm.ErrRecordNotFound):
		writeError(w, http.StatusNotFound, "account not found")
	case errors.Is(err, errInsufficientFunds):
		writeError(w, http.StatusConflict, err.Error())
	default:
		reqID, _ := audit.RequestIDFromContext(r.Context())
		s.log.Error("request failed", "method", r.Method, "path", r.URL.Path, "request_id", reqID, "err", err)
		writeError(w, http.StatusInternalServerError, "internal error")
	}
}

// decode reads the request's JSON body into v: one object, no unknown
// fields, at most maxBody bytes.
func decode(w http.ResponseWriter, r *http.Request, v any) error {
	dec := json.NewDecoder(http.MaxBytesReader(w, r.Body, maxBody))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		var tooBig *http.MaxBytesError
		if errors.As(err, &tooBig) {
			return err
		}
		return badRequestf("body: %v", err)
	}
	if dec.More() {
		return badRequestf("body: want one JSON object")
	}
	return nil
}

// pathID returns the {id} of the request's path.
func pathID(r *http.Request) (int64, error) {
	id, err := strconv.ParseInt(r.PathValue("id"), 10, 64)
	if err != nil || id <= 0 {
		return 0, badRequestf("id %q: want a positive integer", r.PathValue("id"))
	}
	return id, nil
}

// checkEmail accepts a bare address such as "alice@example.com".
func checkEmail(s string) error {
	a, err := mail.ParseAddress(s)
	if err != nil || a.Address != s {
		return badRequestf("email %q: want an address such as alice@example.com", s)
	}
	return nil
}

// hashPassword returns the PBKDF2-HMAC-SHA256 hash of password with a new
// salt, as "pbkdf2-sha256$<iterations>$<salt>$<key>".
func hashPassword(password string) (string, error) {
	if len(password) < minPassword {
		return "", badRequestf("password: want at least %d bytes", minPassword)
	}
	salt := make([]byte, pbkdf2SaltLen)
	_, _ = rand.Read(salt) // crypto/rand.Read never fails (Go 1.24)
	key, err := pbkdf2.Key(sha256.New, password, salt, pbkdf2Iterations, pbkdf2KeyLen)
	if err != nil {
		return "", err
	}
	enc := base64.RawStdEncoding
	return fmt.Sprintf("pbkdf2-sha256$%d$%s$%s", pbkdf2Iterations, enc.EncodeToString(salt), enc.EncodeToString(key)), nil
}

func plural(n uint64, one, many string) string {
	if n == 1 {
		return one
	}
	return many
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}

func writeError(w http.ResponseWriter, status int, msg string) {
	writeJSON(w, status, map[string]string{"error": msg})
}
