package main

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"time"

	"github.com/cleveragents/audit"
)

// verifyJSONLHelp is verify's help on --jsonl.
const verifyJSONLHelp = `With --jsonl FILE ("-" for stdin) verify checks an exported copy instead of
the database, which it does not open: the JSON lines of export --format
jsonl, of the whole log (no filters). Each line's hash must be the one the
library computes from the line's fields (as audit.EntryHash does), its
prev_hash the hash of the line before it, and its id the one after that
line's; the first bad line is named with its ID. The time and details must
be exactly the text that export writes (the stored time text, the stored
details JSON). Lines removed from the end, or from the start (which looks
like pruning), are caught only with --head. Details recorded from a Go
struct whose fields are not in sorted order (or a json.Marshaler writing
unsorted keys) do not verify in a copy: the library reads them back as a
map, and export writes that map's JSON, not the bytes stored. Exit status: 0 when the copy
verifies, 1 when a check fails, 2 when FILE cannot be read or a line is not
one of export's JSON objects.`

// maxJSONLLine bounds a line of an export: 64 KiB of details and 2.5 KiB
// of strings, each byte escaped in at most 6, fit with room to spare.
const maxJSONLLine = 1 << 20

// exportedLine is a line of export --format jsonl (jsonEntry) as read
// back: pointers tell a missing field from an empty one.
type exportedLine struct {
	ID        *int64          `json:"id"`
	Time      *string         `json:"time"`
	EventType *string         `json:"event_type"`
	Actor     *string         `json:"actor"`
	Resource  *string         `json:"resource"`
	Outcome   *string         `json:"outcome"`
	RequestID *string         `json:"request_id"`
	Details   json.RawMessage `json:"details"`
	PrevHash  *string         `json:"prev_hash"`
	Hash      *string         `json:"hash"`
}

// jsonlBad is a line of the copy that does not check.
type jsonlBad struct {
	line int
	id   int64
	why  string
}

// verifyJSONL checks the chain of the export at path (stdin for "-") and
// prints what it checked, as verify does for the database; want is a
// --head to find, or "".
func (a *app) verifyJSONL(stdin io.Reader, out, errOut io.Writer, path, want string) error {
	key, err := a.chainKey()
	if err != nil {
		return err
	}
	name, r := path, stdin
	if path == "-" {
		name = "stdin"
	} else {
		f, err := os.Open(path)
		if err != nil {
			return &exitError{code: exitUsage, err: fmt.Errorf("--jsonl: %w", err)}
		}
		defer f.Close()
		r = f
	}
	rep, wantID, bad, err := checkJSONL(r, key, want)
	if err != nil {
		return &exitError{code: exitUsage, err: fmt.Errorf("--jsonl %s: %w", name, err)}
	}
	if bad != nil {
		fmt.Fprintf(out, "TAMPERED: %d entries checked before line %d\n", rep.Entries, bad.line)
		if bad.line == 1 {
			hint := "pass the chain key with --key-file"
			if a.keyFile != "" {
				hint = "check that --key-file holds the chain key"
			}
			fmt.Fprintf(errOut, "hint: the first line does not check; if the log is chained with an HMAC key (WithChainKey), %s\n", hint)
		}
		return failure(fmt.Errorf("verify --jsonl: %s line %d (ID %d): %s", name, bad.line, bad.id, bad.why))
	}
	printReport(out, rep)
	switch {
	case want == "":
		_, err = fmt.Fprintln(out, "OK: the exported chain verifies")
	case rep.Head == want:
		_, err = fmt.Fprintln(out, "OK: the exported chain verifies and its head is --head")
	case wantID != 0:
		_, err = fmt.Fprintf(out, "OK: the exported chain verifies and --head is entry %d's hash; %d entries were added after it\n", wantID, rep.LastID-wantID)
	default:
		fmt.Fprintln(out, "HEAD MISMATCH")
		return failure(fmt.Errorf("head mismatch: --head %s is the hash of no line of %s: lines up to it were removed or rewritten", want, name))
	}
	return err
}

// checkJSONL reads an export from r and checks its chain under key. It
// returns what it checked, the ID of the line whose hash is want (0 when
// none is), and the first line that does not check; or an error when r
// cannot be read or a line is not an export's JSON object.
func checkJSONL(r io.Reader, key []byte, want string) (rep audit.VerifyReport, wantID int64, bad *jsonlBad, err error) {
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64<<10), maxJSONLLine)
	for n := 1; sc.Scan(); n++ {
		l, err := parseJSONLine(sc.Bytes())
		if err != nil {
			return rep, 0, nil, fmt.Errorf("line %d: %w", n, err)
		}
		id, prev, hash := *l.ID, *l.PrevHash, *l.Hash
		fail := func(format string, args ...any) *jsonlBad {
			return &jsonlBad{line: n, id: id, why: fmt.Sprintf(format, args...)}
		}
		if id < 1 {
			return rep, 0, fail("IDs begin at 1"), nil
		}
		if rep.Entries > 0 {
			switch {
			case id != rep.LastID+1:
				return rep, 0, fail("expected ID %d next, found %d", rep.LastID+1, id), nil
			case prev != rep.Head:
				return rep, 0, fail("prev_hash does not match the hash of the line before it"), nil
			}
		}
		e, why := l.entry()
		if why != "" {
			return rep, 0, fail("%s", why), nil
		}
		sum, err := audit.EntryHash(prev, e, key)
		if err != nil {
			return rep, 0, fail("%s", errorText(err)), nil
		}
		if sum != hash {
			return rep, 0, fail("hash does not match the entry's content"), nil
		}
		if rep.Entries == 0 {
			rep.FirstID = id
		}
		if hash == want {
			wantID = id
		}
		rep.Entries, rep.LastID, rep.Head = rep.Entries+1, id, hash
	}
	if err := sc.Err(); err != nil {
		if errors.Is(err, bufio.ErrTooLong) {
			err = fmt.Errorf("line %d is longer than %d bytes: not an export", rep.Entries+1, maxJSONLLine)
		}
		return rep, 0, nil, err
	}
	return rep, wantID, nil, nil
}

// parseJSONLine reads one line of an export: a JSON object with exactly
// export's fields, of their types.
func parseJSONLine(b []byte) (*exportedLine, error) {
	if len(bytes.TrimSpace(b)) == 0 {
		return nil, errors.New("empty line")
	}
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	var l exportedLine
	if err := dec.Decode(&l); err != nil {
		return nil, fmt.Errorf("not an export's JSON object: %w", err)
	}
	if _, err := dec.Token(); err != io.EOF {
		return nil, errors.New("not an export's JSON object: more after the object")
	}
	for _, f := range []struct {
		name    string
		missing bool
	}{
		{"id", l.ID == nil}, {"time", l.Time == nil}, {"event_type", l.EventType == nil},
		{"actor", l.Actor == nil}, {"resource", l.Resource == nil}, {"outcome", l.Outcome == nil},
		{"request_id", l.RequestID == nil}, {"details", l.Details == nil},
		{"prev_hash", l.PrevHash == nil}, {"hash", l.Hash == nil},
	} {
		if f.missing {
			return nil, fmt.Errorf("no %q field", f.name)
		}
	}
	return &l, nil
}

// entry returns the entry that l holds, or why its time or details cannot
// be what the library stored: the hash covers the stored text of both,
// which export writes unchanged.
func (l *exportedLine) entry() (audit.Entry, string) {
	t, err := time.Parse(time.RFC3339Nano, *l.Time)
	if err != nil || t.UTC().Format(timeLayout) != *l.Time {
		return audit.Entry{}, fmt.Sprintf("time %q is not the stored text (RFC 3339 in UTC with nine fractional digits)", *l.Time)
	}
	e := audit.Entry{
		ID: *l.ID, Time: t, EventType: *l.EventType, Actor: *l.Actor, Resource: *l.Resource,
		Outcome: *l.Outcome, RequestID: *l.RequestID, PrevHash: *l.PrevHash, Hash: *l.Hash,
	}
	if string(l.Details) == "null" {
		return e, ""
	}
	// Numbers as json.Number keep their digits; json.Marshal sorts the
	// keys and escapes as the library's json.Marshal did. So the details
	// that the library stored give their own bytes back, and any others
	// are not what it stored.
	dec := json.NewDecoder(bytes.NewReader(l.Details))
	dec.UseNumber()
	if err := dec.Decode(&e.Details); err != nil {
		return audit.Entry{}, "details are not a JSON object"
	}
	if b, err := json.Marshal(e.Details); err != nil || !bytes.Equal(b, l.Details) {
		return audit.Entry{}, "details are not the JSON that the library stores (compact, keys sorted, as json.Marshal writes it)"
	}
	return e, ""
}

// chainKey reads --key-file, as open does: nil without one.
func (a *app) chainKey() ([]byte, error) {
	if a.keyFile == "" {
		return nil, nil
	}
	key, err := os.ReadFile(a.keyFile)
	if err != nil {
		return nil, openError(fmt.Errorf("--key-file: %w", err))
	}
	if len(key) == 0 {
		return nil, usageErrorf("--key-file %s is empty", a.keyFile)
	}
	return key, nil
}
