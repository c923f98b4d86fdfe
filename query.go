package audit

import (
	"context"
	"database/sql"
	"fmt"
	"strconv"
	"strings"
	"time"
)

// Filter selects entries for List and Count. Zero fields do not filter.
type Filter struct {
	Actor     string
	EventType string
	Resource  string
	Outcome   string
	RequestID string
	Since     time.Time // Time >= Since
	Until     time.Time // Time <  Until
	AfterID   int64     // ID >  AfterID (keyset pagination, ascending)
	BeforeID  int64     // ID <  BeforeID (keyset pagination, descending)
	Limit     int       // List only: 0 means 100; more than 10000 or negative is ErrInvalidFilter
	Desc      bool      // List only: newest (highest ID) first
}

// Limits of List.
const (
	DefaultListLimit = 100   // Filter.Limit 0
	MaxListLimit     = 10000 // the largest Filter.Limit
)

// Get returns the committed entry with the given ID, or ErrNotFound.
func (s *AuditService) Get(ctx context.Context, id int64) (Entry, error) {
	sess, done, err := s.use(ctx, "get")
	if err != nil {
		return Entry{}, err
	}
	defer done()
	rows, err := sess.get.QueryContext(ctx, id)
	if err != nil {
		return Entry{}, opErr("get "+itoa(id), err)
	}
	defer rows.Close()
	if !rows.Next() {
		if err := rows.Err(); err != nil {
			return Entry{}, opErr("get "+itoa(id), err)
		}
		return Entry{}, opErr("get "+itoa(id), ErrNotFound)
	}
	e, err := scanEntry(rows)
	if err != nil {
		return Entry{}, opErr("get "+itoa(id), err)
	}
	return e, nil
}

// List returns the committed entries that f selects, in ascending ID order
// (descending with f.Desc), at most f.Limit of them (100 when zero). Entries
// still queued are not visible: Flush first to read your writes. Page with
// AfterID (ascending) or BeforeID (descending) set to the last ID seen.
func (s *AuditService) List(ctx context.Context, f Filter) ([]Entry, error) {
	if err := f.check(true); err != nil {
		return nil, opErr("list", err)
	}
	sess, done, err := s.use(ctx, "list")
	if err != nil {
		return nil, err
	}
	defer done()
	where, args := sess.q.where(&f)
	limit := f.Limit
	if limit == 0 {
		limit = DefaultListLimit
	}
	order := " ORDER BY id"
	if f.Desc {
		order += " DESC"
	}
	args = append(args, limit)
	query := "SELECT " + columns + " FROM " + sess.q.table + where + order + " LIMIT " + sess.q.d.ph(len(args))
	stmt, err := sess.stmt(ctx, query)
	if err != nil {
		return nil, opErr("list", err)
	}
	rows, err := stmt.QueryContext(ctx, args...)
	if err != nil {
		return nil, opErr("list", err)
	}
	defer rows.Close()
	out := make([]Entry, 0, min(limit, 128))
	for rows.Next() {
		e, err := scanEntry(rows)
		if err != nil {
			return nil, opErr("list", err)
		}
		out = append(out, e)
	}
	if err := rows.Err(); err != nil {
		return nil, opErr("list", err)
	}
	return out, nil
}

// Count returns how many committed entries f selects; it ignores f.Limit
// and f.Desc.
func (s *AuditService) Count(ctx context.Context, f Filter) (int64, error) {
	if err := f.check(false); err != nil {
		return 0, opErr("count", err)
	}
	sess, done, err := s.use(ctx, "count")
	if err != nil {
		return 0, err
	}
	defer done()
	where, args := sess.q.where(&f)
	stmt, err := sess.stmt(ctx, "SELECT COUNT(*) FROM "+sess.q.table+where)
	if err != nil {
		return 0, opErr("count", err)
	}
	var n int64
	if err := stmt.QueryRowContext(ctx, args...).Scan(&n); err != nil {
		return 0, opErr("count", err)
	}
	return n, nil
}

// check validates f. Strings that no entry can hold (invalid UTF-8, NUL)
// and times outside the years that entries can have are refused rather
// than sent to the database, which may reject them in its own words.
func (f *Filter) check(list bool) error {
	if list && (f.Limit < 0 || f.Limit > MaxListLimit) {
		return fmt.Errorf("%w: Limit %d is outside 0 through %d", ErrInvalidFilter, f.Limit, MaxListLimit)
	}
	for _, c := range [...]struct{ name, v string }{
		{"Actor", f.Actor}, {"EventType", f.EventType}, {"Resource", f.Resource},
		{"Outcome", f.Outcome}, {"RequestID", f.RequestID},
	} {
		if !utf8Valid(c.v) {
			return fmt.Errorf("%w: %s is not valid UTF-8 without NUL bytes", ErrInvalidFilter, c.name)
		}
	}
	for _, c := range [...]struct {
		name string
		t    time.Time
	}{{"Since", f.Since}, {"Until", f.Until}} {
		if !c.t.IsZero() {
			if y := c.t.UTC().Year(); y < 1 || y > 9999 {
				return fmt.Errorf("%w: %s %s is outside years 1 through 9999 (UTC)", ErrInvalidFilter, c.name, c.t.UTC().Format(time.RFC3339Nano))
			}
		}
	}
	return nil
}

func utf8Valid(s string) bool {
	return checkString("", s, len(s), false) == nil
}

// where returns the WHERE clause of f and its arguments.
func (q *queries) where(f *Filter) (string, []any) {
	var b strings.Builder
	var args []any
	// cond writes a condition on the argument arg, given its placeholder.
	cond := func(arg any, text func(ph string) string) {
		if len(args) == 0 {
			b.WriteString(" WHERE ")
		} else {
			b.WriteString(" AND ")
		}
		args = append(args, arg)
		b.WriteString(text(q.d.ph(len(args))))
	}
	add := func(op string, arg any) {
		cond(arg, func(ph string) string { return op + ph })
	}
	// equal filters col on value, by the hash first where col's index is
	// of its hash (filterIndex).
	equal := func(col, value string) {
		if !hashed(q.d, col) {
			add(col+" = ", value)
			return
		}
		cond(value, func(ph string) string {
			return q.d.hashKey(col) + " = " + q.d.hashKey(ph+"::text") + " AND " + col + " = " + ph
		})
	}
	if f.Actor != "" {
		equal("actor", f.Actor)
	}
	if f.EventType != "" {
		equal("event_type", f.EventType)
	}
	if f.Resource != "" {
		equal("resource", f.Resource)
	}
	if f.Outcome != "" {
		equal("outcome", f.Outcome)
	}
	if f.RequestID != "" {
		equal("request_id", f.RequestID)
	}
	if !f.Since.IsZero() {
		add("time >= ", f.Since.UTC().Format(timeLayout))
	}
	if !f.Until.IsZero() {
		add("time < ", f.Until.UTC().Format(timeLayout))
	}
	if f.AfterID != 0 {
		add("id > ", f.AfterID)
	}
	if f.BeforeID != 0 {
		add("id < ", f.BeforeID)
	}
	return b.String(), args
}

// scanEntry reads one row of columns.
func scanEntry(rows *sql.Rows) (Entry, error) {
	id, r, prevHash, hash, err := scanRow(rows)
	if err != nil {
		return Entry{}, err
	}
	return r.entry(id, prevHash, hash)
}

// scanRow reads one row of columns as stored: Verify hashes these bytes.
func scanRow(rows *sql.Rows) (id int64, r record, prevHash, hash string, err error) {
	err = rows.Scan(&id, &r.time, &r.eventType, &r.actor, &r.resource, &r.outcome, &r.requestID, &r.details, &prevHash, &hash)
	return id, r, prevHash, hash, err
}

func itoa(n int64) string { return strconv.FormatInt(n, 10) }
