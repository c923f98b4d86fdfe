package audit

import (
	"bytes"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"strings"
	"time"
	"unicode/utf8"
)

// Entry is one audit record.
type Entry struct {
	ID        int64          // assigned when committed; strictly increasing in commit order
	Time      time.Time      // when it happened; Record sets the service clock's now when zero
	EventType string         // required, e.g. "user.login"
	Actor     string         // required: who did it
	Resource  string         // optional: what it was done to
	Outcome   string         // optional: "success", "failure", "denied", ...
	RequestID string         // optional correlation id
	Details   map[string]any // optional, stored as JSON
	PrevHash  string         // lowercase hex; Hash of the entry before it in the chain
	Hash      string         // lowercase hex; set when committed (see "Tamper evidence")
}

// Limits of validation.
const (
	maxShortField  = MaxFieldLen
	maxResource    = MaxResourceLen
	maxDetailsJSON = MaxDetailsLen
	// maxDetailsDepth bounds the nesting of Details. encoding/json refuses
	// to decode deeper than 10000 levels, so a deeper value would be
	// accepted and then unreadable; PostgreSQL's json parser has a lower
	// stack-bound limit still.
	maxDetailsDepth = 1000
)

// timeLayout is fixed-width RFC 3339 in UTC with nine fractional digits: for
// years 1 through 9999 its text sorts in time order and round-trips to the
// nanosecond, which int64 Unix nanoseconds (years 1678 to 2262) cannot.
// Limits of an [Entry]'s fields, in bytes, as Record enforces them.
const (
	MaxFieldLen    = 256   // EventType, Actor, Outcome and RequestID
	MaxResourceLen = 1024  // Resource
	MaxDetailsLen  = 65536 // json.Marshal(Details)
)

// RedactedPrefix begins every value that redaction replaced: the value
// becomes RedactedPrefix followed by the hex HMAC-SHA256 of its canonical
// JSON (see [WithRedactKeys]).
const RedactedPrefix = "hmac-sha256:"

const timeLayout = "2006-01-02T15:04:05.000000000Z"

// record is an entry as validated and stored: the exact bytes that are
// hashed and written.
type record struct {
	time      string
	eventType string
	actor     string
	resource  string
	outcome   string
	requestID string
	details   []byte // nil when Details is nil or empty
	accepted  int64  // when Record accepted it, in Unix nanoseconds: for Stats.OldestUncommitted
}

// newRecord validates e and returns the record to store. It runs in the
// caller's goroutine so that the writer only hashes and inserts.
func (s *AuditService) newRecord(e *Entry) (*record, error) {
	if e.Time.IsZero() {
		e.Time = s.cfg.clock()
	}
	t := e.Time.UTC()
	if y := t.Year(); y < 1 || y > 9999 {
		return nil, fmt.Errorf("%w: Time %s is outside years 1 through 9999 (UTC)", ErrInvalidEntry, t.Format(time.RFC3339Nano))
	}
	for _, f := range [...]struct {
		name, value string
		max         int
		required    bool
	}{
		{"EventType", e.EventType, maxShortField, true},
		{"Actor", e.Actor, maxShortField, true},
		{"Resource", e.Resource, maxResource, false},
		{"Outcome", e.Outcome, maxShortField, false},
		{"RequestID", e.RequestID, maxShortField, false},
	} {
		if err := checkString(f.name, f.value, f.max, f.required); err != nil {
			return nil, err
		}
	}
	details, err := s.marshalDetails(e.Details)
	if err != nil {
		return nil, err
	}
	return recordOf(e, t, details), nil
}

// timeText returns t, in UTC and years 1 through 9999, as
// t.Format(timeLayout) does, without interpreting the layout on every
// Record.
func timeText(t time.Time) string {
	year, month, day := t.Date()
	hour, minute, sec := t.Clock()
	var b [len(timeLayout)]byte
	putDigits(b[0:4], year)
	b[4] = '-'
	putDigits(b[5:7], int(month))
	b[7] = '-'
	putDigits(b[8:10], day)
	b[10] = 'T'
	putDigits(b[11:13], hour)
	b[13] = ':'
	putDigits(b[14:16], minute)
	b[16] = ':'
	putDigits(b[17:19], sec)
	b[19] = '.'
	putDigits(b[20:29], t.Nanosecond())
	b[29] = 'Z'
	return string(b[:])
}

// putDigits writes n, zero-padded, into all of b.
func putDigits(b []byte, n int) {
	for i := len(b) - 1; i >= 0; i-- {
		b[i] = byte('0' + n%10)
		n /= 10
	}
}

func checkString(field, v string, max int, required bool) error {
	switch {
	case required && v == "":
		return fmt.Errorf("%w: %s is required", ErrInvalidEntry, field)
	case len(v) > max:
		return fmt.Errorf("%w: %s is %d bytes, more than %d", ErrInvalidEntry, field, len(v), max)
	case !utf8.ValidString(v):
		return fmt.Errorf("%w: %s is not valid UTF-8", ErrInvalidEntry, field)
	case strings.IndexByte(v, 0) >= 0:
		return fmt.Errorf("%w: %s holds a NUL byte", ErrInvalidEntry, field)
	}
	return nil
}

// marshalDetails returns the JSON to store for d, or nil for none.
func (s *AuditService) marshalDetails(d map[string]any) ([]byte, error) {
	if len(d) == 0 {
		return nil, nil
	}
	b, err := marshalJSON(d)
	if err != nil {
		return nil, fmt.Errorf("%w: Details do not marshal to JSON: %w", ErrInvalidEntry, err)
	}
	if len(b) > maxDetailsJSON {
		return nil, fmt.Errorf("%w: Details are %d bytes of JSON, more than %d", ErrInvalidEntry, len(b), maxDetailsJSON)
	}
	// Every level of nesting takes two bytes: shorter JSON cannot nest
	// too deep, and is not scanned.
	if len(b) > 2*maxDetailsDepth {
		if depth := jsonDepth(b); depth > maxDetailsDepth {
			return nil, fmt.Errorf("%w: Details nest %d levels deep, more than %d", ErrInvalidEntry, depth, maxDetailsDepth)
		}
	}
	if s.cfg.redactKey != nil {
		if b, err = redact(b, s.cfg.redactKey, s.cfg.redactKeys); err != nil {
			return nil, fmt.Errorf("%w: Details: redact: %w", ErrInvalidEntry, err)
		}
		if len(b) > maxDetailsJSON {
			return nil, fmt.Errorf("%w: Details are %d bytes of JSON once redacted, more than %d", ErrInvalidEntry, len(b), maxDetailsJSON)
		}
	}
	return b, nil
}

// jsonDepth returns the deepest nesting of objects and arrays in valid JSON.
func jsonDepth(b []byte) int {
	depth, deepest, inString, escaped := 0, 0, false, false
	for _, c := range b {
		switch {
		case escaped:
			escaped = false
		case inString:
			switch c {
			case '\\':
				escaped = true
			case '"':
				inString = false
			}
		case c == '"':
			inString = true
		case c == '{' || c == '[':
			depth++
			deepest = max(deepest, depth)
		case c == '}' || c == ']':
			depth--
		}
	}
	return deepest
}

// redact replaces the values of the keys (lower-cased) at any depth of the
// JSON object b with their keyed hash.
func redact(b, key []byte, keys map[string]bool) ([]byte, error) {
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.UseNumber() // keep numbers' text: canonical JSON of a value is stable
	var v any
	if err := dec.Decode(&v); err != nil {
		return nil, err
	}
	var walk func(v any) (any, error)
	walk = func(v any) (any, error) {
		switch v := v.(type) {
		case map[string]any:
			for k, x := range v {
				if keys[strings.ToLower(k)] {
					canon, err := json.Marshal(x)
					if err != nil {
						return nil, err
					}
					m := hmac.New(sha256.New, key)
					m.Write(canon)
					v[k] = RedactedPrefix + hex.EncodeToString(m.Sum(nil))
					continue
				}
				y, err := walk(x)
				if err != nil {
					return nil, err
				}
				v[k] = y
			}
		case []any:
			for i, x := range v {
				y, err := walk(x)
				if err != nil {
					return nil, err
				}
				v[i] = y
			}
		}
		return v, nil
	}
	if v, err := walk(v); err != nil {
		return nil, err
	} else {
		return json.Marshal(v)
	}
}

// entry turns a stored row back into an Entry.
func (r *record) entry(id int64, prevHash, hash string) (Entry, error) {
	t, err := time.Parse(timeLayout, r.time)
	if err != nil {
		return Entry{}, fmt.Errorf("audit: entry %d: stored time %q: %w", id, r.time, err)
	}
	e := Entry{
		ID:        id,
		Time:      t,
		EventType: r.eventType,
		Actor:     r.actor,
		Resource:  r.resource,
		Outcome:   r.outcome,
		RequestID: r.requestID,
		PrevHash:  prevHash,
		Hash:      hash,
	}
	if len(r.details) > 0 {
		if e.Details, err = decodeDetails(r.details); err != nil {
			return Entry{}, fmt.Errorf("audit: entry %d: stored details: %w", id, err)
		}
	}
	return e, nil
}

// logJSON encodes r as one line of JSON, for the log of the entries that
// Shutdown could not commit.
func (r *record) logJSON() string {
	var details json.RawMessage
	if r.details != nil {
		details = r.details
	}
	b, _ := json.Marshal(struct {
		Time      string          `json:"time"`
		EventType string          `json:"event_type"`
		Actor     string          `json:"actor"`
		Resource  string          `json:"resource,omitempty"`
		Outcome   string          `json:"outcome,omitempty"`
		RequestID string          `json:"request_id,omitempty"`
		Details   json.RawMessage `json:"details,omitempty"`
	}{r.time, r.eventType, r.actor, r.resource, r.outcome, r.requestID, details})
	return string(b)
}

// recordOf is the record of e's fields, at t, with details the Details JSON.
func recordOf(e *Entry, t time.Time, details []byte) *record {
	return &record{
		time:      timeText(t),
		eventType: e.EventType,
		actor:     e.Actor,
		resource:  e.Resource,
		outcome:   e.Outcome,
		requestID: e.RequestID,
		details:   details,
	}
}
