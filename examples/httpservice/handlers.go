// The HTTP handlers of the accounts service: each change runs in a GORM
// transaction, which gormaudit records.

package main

import (
	"crypto/pbkdf2"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"net/http"
	"net/mail"
	"strconv"
	"strings"

	"github.com/cleveragents/audit"
	"gorm.io/gorm"
)

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
