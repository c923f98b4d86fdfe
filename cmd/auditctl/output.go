package main

import (
	"encoding/json"
	"fmt"
	"io"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"
	"unicode"

	"github.com/cleveragents/audit"
)

// timeLayout is how JSON and CSV write an entry's time: RFC 3339 in UTC
// with all nine fractional digits, the text the library stores. It sorts as
// text and round-trips to the nanosecond.
const timeLayout = "2006-01-02T15:04:05.000000000Z07:00"

// csvHeader is the first record of a CSV export.
var csvHeader = []string{"id", "time", "event_type", "actor", "resource", "outcome", "request_id", "details", "prev_hash", "hash"}

// jsonEntry is an entry as one line of JSON: every field, always present.
type jsonEntry struct {
	ID        int64          `json:"id"`
	Time      string         `json:"time"`
	EventType string         `json:"event_type"`
	Actor     string         `json:"actor"`
	Resource  string         `json:"resource"`
	Outcome   string         `json:"outcome"`
	RequestID string         `json:"request_id"`
	Details   map[string]any `json:"details"`
	PrevHash  string         `json:"prev_hash"`
	Hash      string         `json:"hash"`
}

func toJSON(e *audit.Entry) jsonEntry {
	return jsonEntry{
		ID:        e.ID,
		Time:      e.Time.UTC().Format(timeLayout),
		EventType: e.EventType,
		Actor:     e.Actor,
		Resource:  e.Resource,
		Outcome:   e.Outcome,
		RequestID: e.RequestID,
		Details:   e.Details,
		PrevHash:  e.PrevHash,
		Hash:      e.Hash,
	}
}

// newJSONEncoder writes one entry per line, leaving <, > and & as they are.
func newJSONEncoder(w io.Writer) *json.Encoder {
	enc := json.NewEncoder(w)
	enc.SetEscapeHTML(false)
	return enc
}

// csvRecord is an entry as a CSV record in csvHeader's order; Details is
// its JSON, or empty when it has none.
func csvRecord(e *audit.Entry) ([]string, error) {
	details := ""
	if e.Details != nil {
		b, err := json.Marshal(e.Details)
		if err != nil {
			return nil, fmt.Errorf("entry %d: details: %w", e.ID, err)
		}
		details = string(b)
	}
	return []string{
		strconv.FormatInt(e.ID, 10),
		e.Time.UTC().Format(timeLayout),
		e.EventType, e.Actor, e.Resource, e.Outcome, e.RequestID,
		details, e.PrevHash, e.Hash,
	}, nil
}

// tableWriter prints entries as aligned columns for people.
type tableWriter struct {
	tw     *tabwriter.Writer
	header bool // printed
}

func newTableWriter(w io.Writer) *tableWriter {
	return &tableWriter{tw: tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)}
}

func (t *tableWriter) write(e *audit.Entry) {
	if !t.header {
		fmt.Fprintln(t.tw, "ID\tTIME\tEVENT TYPE\tACTOR\tRESOURCE\tOUTCOME")
		t.header = true
	}
	fmt.Fprintf(t.tw, "%d\t%s\t%s\t%s\t%s\t%s\n", e.ID, e.Time.UTC().Format(time.RFC3339),
		cell(e.EventType), cell(e.Actor), cell(e.Resource), cell(e.Outcome))
}

// flush aligns and writes the rows so far. The columns of the rows after it
// are aligned anew, so the table keeps constant memory however long it is.
func (t *tableWriter) flush() error { return t.tw.Flush() }

// cell makes a field safe for a terminal and for tabwriter: "-" when empty,
// Go-quoted when it holds a control or non-printable character (an actor
// name with an escape sequence must not repaint the operator's screen, nor
// a tab shift the columns).
func cell(s string) string {
	if s == "" {
		return "-"
	}
	if strings.IndexFunc(s, func(r rune) bool { return !unicode.IsPrint(r) }) >= 0 {
		return strconv.Quote(s)
	}
	return s
}
