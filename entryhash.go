package audit

import (
	"encoding/json"
	"fmt"
	"time"
)

// EntryHash returns the Hash that the writer stores for e when the entry
// before it in the chain has the hash prevHash ("" for the first entry of a
// log), so that a copy of the log outside the database (an export) can be
// checked without the library's database: recompute each entry's hash from
// its fields and compare it with the copy's Hash, and each PrevHash with
// the Hash of the entry before it. key is the log's chain key
// ([WithChainKey]); nil or empty means plain SHA-256.
//
// It hashes what Record stores: e.Time in UTC as the stored text (nine
// fractional digits), the five strings as they are, and json.Marshal of
// e.Details (no Details when it is nil or empty). e.ID, e.PrevHash and
// e.Hash are not hashed. A zero e.Time is hashed as it is, not replaced by
// a clock's now, and Details are not redacted (an entry read back holds
// the redacted values, which is what was hashed).
//
// For an entry read back from the log (Get, List, Tail) the result equals
// its Hash whenever json.Marshal of the Details read back gives the bytes
// that were stored: always for Details built of maps, slices, strings,
// numbers, booleans and nil, as numbers are read back exactly and
// json.Marshal sorts map keys. It does not for a value whose JSON is not
// json.Marshal's canonical form of the same data: a struct whose fields are
// not in sorted order, or a json.Marshaler or json.RawMessage whose output
// has unsorted keys or unneeded escapes, as read back it is a map.
//
// It returns an error, naming the field, when e.Time is outside years 1
// through 9999 or e.Details do not marshal to JSON.
func EntryHash(prevHash string, e Entry, key []byte) (string, error) {
	t := e.Time.UTC()
	if y := t.Year(); y < 1 || y > 9999 {
		return "", fmt.Errorf("%w: Time %s is outside years 1 through 9999 (UTC)", ErrInvalidEntry, t.Format(time.RFC3339Nano))
	}
	r := record{
		time:      timeText(t),
		eventType: e.EventType,
		actor:     e.Actor,
		resource:  e.Resource,
		outcome:   e.Outcome,
		requestID: e.RequestID,
	}
	if len(e.Details) > 0 {
		b, err := json.Marshal(e.Details)
		if err != nil {
			return "", fmt.Errorf("%w: Details do not marshal to JSON: %w", ErrInvalidEntry, err)
		}
		r.details = b
	}
	h := hasher{}
	if len(key) > 0 {
		h.key = key
	}
	return h.hash(prevHash, &r), nil
}
