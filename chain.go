package audit

import (
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"database/sql"
	"encoding/binary"
	"encoding/hex"
	"fmt"
	"hash"
)

// VerifyReport describes a chain that Verify checked.
type VerifyReport struct {
	Entries int64 // entries checked
	FirstID int64 // first remaining ID; 0 when the log is empty
	LastID  int64
	Head    string // Hash of the last entry: publish it elsewhere to anchor the log
}

// hasher computes entry hashes: SHA-256, or HMAC-SHA256 under a key.
type hasher struct {
	key []byte
}

// hash returns the lowercase hex hash of r linked to prev. The encoding is
// unambiguous: a version tag, then every field as its length (uvarint) and
// its bytes, in a fixed order, with Details marked present or absent. It
// covers the exact stored bytes: the time text and the Details JSON as
// written.
func (h hasher) hash(prev string, r *record) string {
	var m hash.Hash
	if h.key != nil {
		m = hmac.New(sha256.New, h.key)
	} else {
		m = sha256.New()
	}
	var buf [binary.MaxVarintLen64]byte
	field := func(s string) {
		m.Write(buf[:binary.PutUvarint(buf[:], uint64(len(s)))])
		m.Write([]byte(s))
	}
	m.Write([]byte("audit.v1\x00"))
	field(prev)
	field(r.time)
	field(r.eventType)
	field(r.actor)
	field(r.resource)
	field(r.outcome)
	field(r.requestID)
	if r.details == nil {
		m.Write([]byte{0})
	} else {
		m.Write([]byte{1})
		field(string(r.details))
	}
	var sum [sha256.Size]byte
	return hex.EncodeToString(m.Sum(sum[:0]))
}

// verifyPage is how many entries Verify reads per query.
const verifyPage = 1000

// Verify walks the hash chain from the first remaining entry to the chain
// head, in one read transaction, and returns ErrTampered, wrapped with the
// first ID whose link or hash does not check, when an entry was altered,
// inserted, or removed from the start or the middle; or the head no longer
// matches the last entry. Pruning is not tampering. Removing the newest
// entries together with the head row can only be caught against a Head
// published earlier: compare it with the report's.
func (s *AuditService) Verify(ctx context.Context) (VerifyReport, error) {
	sess, done, err := s.ready(ctx, "verify")
	if err != nil {
		return VerifyReport{}, err
	}
	defer done()
	var opts *sql.TxOptions
	if sess.d.postgres {
		opts = &sql.TxOptions{Isolation: sql.LevelRepeatableRead, ReadOnly: true}
	}
	tx, err := sess.sqlDB.BeginTx(ctx, opts)
	if err != nil {
		return VerifyReport{}, fmt.Errorf("audit: verify: begin: %w", err)
	}
	defer tx.Rollback() //nolint:errcheck // read-only
	rep, err := s.verify(ctx, sess, tx)
	if err != nil {
		return rep, fmt.Errorf("audit: verify: %w", err)
	}
	return rep, nil
}

func (s *AuditService) verify(ctx context.Context, sess *session, tx *sql.Tx) (VerifyReport, error) {
	var (
		rep                VerifyReport
		lastID, prunedID   int64
		lastHash, prevHash string
	)
	if err := tx.QueryRowContext(ctx, sess.q.chainState, sess.q.key).Scan(&lastID, &lastHash, &prunedID, &prevHash); err != nil {
		return rep, fmt.Errorf("read chain head: %w", err)
	}
	wantID := prunedID + 1
	tampered := func(id int64, why string) error {
		return fmt.Errorf("%w at ID %d: %s", ErrTampered, id, why)
	}
	for {
		rows, err := tx.QueryContext(ctx, sess.q.verifyScan, wantID-1, verifyPage)
		if err != nil {
			return rep, err
		}
		n := 0
		for rows.Next() {
			n++
			var id int64
			var r record
			var prev, stored string
			if err := rows.Scan(&id, &r.time, &r.eventType, &r.actor, &r.resource, &r.outcome, &r.requestID, &r.details, &prev, &stored); err != nil {
				rows.Close()
				return rep, err
			}
			switch {
			case id != wantID:
				// Entries before id are missing: id's link is the first
				// that does not check.
				rows.Close()
				return rep, tampered(id, fmt.Sprintf("expected ID %d next, found %d", wantID, id))
			case prev != prevHash:
				rows.Close()
				return rep, tampered(id, "PrevHash does not match the entry before it")
			case s.chain.hash(prev, &r) != stored:
				rows.Close()
				return rep, tampered(id, "Hash does not match the entry's content")
			}
			if rep.FirstID == 0 {
				rep.FirstID = id
			}
			rep.LastID, rep.Entries = id, rep.Entries+1
			prevHash, wantID = stored, id+1
		}
		if err := rows.Close(); err != nil {
			return rep, err
		}
		if err := rows.Err(); err != nil {
			return rep, err
		}
		if n < verifyPage {
			break
		}
	}
	// The walk must end exactly at the chain head: removing the newest
	// entries is caught here unless the head row was rewritten too.
	switch last := wantID - 1; {
	case last > lastID:
		return rep, tampered(lastID+1, fmt.Sprintf("entries after the chain head (entry %d)", lastID))
	case last < lastID:
		return rep, tampered(last+1, fmt.Sprintf("entries %d through %d, up to the chain head, are missing", last+1, lastID))
	case prevHash != lastHash:
		return rep, tampered(last, "the last entry does not match the chain head")
	}
	rep.Head = lastHash
	return rep, nil
}
