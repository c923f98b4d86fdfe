package main

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"
	"unicode"
	"unicode/utf8"

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
	ID        int64           `json:"id"`
	Time      string          `json:"time"`
	EventType string          `json:"event_type"`
	Actor     string          `json:"actor"`
	Resource  string          `json:"resource"`
	Outcome   string          `json:"outcome"`
	RequestID string          `json:"request_id"`
	Details   json.RawMessage `json:"details"` // null when it has none
	PrevHash  string          `json:"prev_hash"`
	Hash      string          `json:"hash"`
}

func toJSON(e *audit.Entry) (jsonEntry, error) {
	details, err := detailsJSON(e)
	if err != nil {
		return jsonEntry{}, err
	}
	return jsonEntry{
		ID:        e.ID,
		Time:      e.Time.UTC().Format(timeLayout),
		EventType: e.EventType,
		Actor:     e.Actor,
		Resource:  e.Resource,
		Outcome:   e.Outcome,
		RequestID: e.RequestID,
		Details:   details,
		PrevHash:  e.PrevHash,
		Hash:      e.Hash,
	}, nil
}

// detailsJSON is e's Details as the library stored them, or nil for none.
// The library stores json.Marshal(Details) and reads numbers that a float64
// would round as json.Number, so json.Marshal of what it read gives the
// stored bytes again: the same digits, keys in the same (sorted) order, and
// <, > and & escaped as the library escaped them.
func detailsJSON(e *audit.Entry) (json.RawMessage, error) {
	if e.Details == nil {
		return nil, nil
	}
	b, err := json.Marshal(e.Details)
	if err != nil {
		return nil, fmt.Errorf("entry %d: details: %w", e.ID, err)
	}
	return b, nil
}

// newJSONEncoder writes one entry per line, leaving <, > and & as they are
// in the strings of the entry (the details are written as stored).
func newJSONEncoder(w io.Writer) *json.Encoder {
	enc := json.NewEncoder(w)
	enc.SetEscapeHTML(false)
	return enc
}

// csvRecord is an entry as a CSV record in csvHeader's order; Details is
// its JSON, or empty when it has none. The cells are not yet escaped (see
// csvCell).
func csvRecord(e *audit.Entry) ([]string, error) {
	details, err := detailsJSON(e)
	if err != nil {
		return nil, err
	}
	return []string{
		strconv.FormatInt(e.ID, 10),
		e.Time.UTC().Format(timeLayout),
		e.EventType, e.Actor, e.Resource, e.Outcome, e.RequestID,
		string(details), e.PrevHash, e.Hash,
	}, nil
}

// csvWriter writes RFC 4180 records with every field in double quotes, so
// that a separator other than the comma (a spreadsheet set to ";") cannot
// split a cell and start a new one with a formula.
type csvWriter struct {
	w *bufio.Writer
}

// write writes rec, each field escaped by csvCell, and the line's end.
func (c csvWriter) write(rec []string) error {
	for i, f := range rec {
		if i > 0 {
			c.w.WriteByte(',')
		}
		c.w.WriteByte('"')
		c.w.WriteString(strings.ReplaceAll(csvCell(f), `"`, `""`))
		c.w.WriteByte('"')
	}
	return c.w.WriteByte('\n')
}

// csvCell makes a field safe to open in a spreadsheet and to print on a
// terminal, in a form that can be undone:
//
//   - A field that holds a control or other non-printable character (C0
//     such as ESC, BEL, CR, LF and tab; DEL; C1; format characters such as
//     U+202E), invalid UTF-8, or that begins with a double quote is written
//     Go-quoted, quotes included, as list prints it: evil<ESC>[2J becomes
//     "evil\x1b[2J" (strconv.Unquote gives it back).
//   - Then, as OWASP recommends against CSV injection, a field that begins
//     with =, +, -, @, tab, CR or a single quote gets one more single quote
//     in front: =HYPERLINK(...) becomes '=HYPERLINK(...). Remove one
//     leading single quote to get the field back.
func csvCell(s string) string {
	if s != "" && (s[0] == '"' || needsQuoting(s)) {
		s = strconv.Quote(s)
	}
	if s != "" && strings.IndexByte("=+-@\t\r'", s[0]) >= 0 {
		s = "'" + s
	}
	return s
}

// needsQuoting reports whether s holds invalid UTF-8 or a rune that is not
// printable: one that a terminal may act on or show as something else.
func needsQuoting(s string) bool {
	return !utf8.ValidString(s) || strings.IndexFunc(s, func(r rune) bool { return !unicode.IsPrint(r) }) >= 0
}

// tableWriter prints entries as aligned columns for people.
type tableWriter struct {
	tw       *tabwriter.Writer
	header   bool // printed
	buffered int  // rows written since the last flush
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
	t.buffered++
}

// flushEvery is how many rows the table aligns together.
const flushEvery = pageSize

// flushSome writes the rows so far once there are flushEvery of them. The
// columns of the rows after a flush are aligned anew, so the table keeps
// constant memory however long it is.
func (t *tableWriter) flushSome() error {
	if t.buffered < flushEvery {
		return nil
	}
	return t.flush()
}

// flush aligns and writes the rows so far.
func (t *tableWriter) flush() error {
	t.buffered = 0
	return t.tw.Flush()
}

// cell makes a field safe for a terminal and for tabwriter: "-" when empty,
// Go-quoted when it holds a control or non-printable character or invalid
// UTF-8 (an actor name with an escape sequence, or a lone 0x9b byte that
// some terminals read as CSI, must not repaint the operator's screen, nor a
// tab shift the columns).
func cell(s string) string {
	if s == "" {
		return "-"
	}
	if needsQuoting(s) {
		return strconv.Quote(s)
	}
	return s
}
