package audit

import (
	"context"
	"crypto/sha256"
	"database/sql"
	"encoding/binary"
	"encoding/hex"
	"fmt"
)

// VerifyReport describes a chain that Verify checked.
type VerifyReport struct {
	Entries int64 // entries checked
	FirstID int64 // first remaining ID; 0 when the log is empty
	LastID  int64
	Head    string // Hash of the last entry: publish it elsewhere to anchor the log
}

// hasher computes entry hashes: SHA-256, or HMAC-SHA256 under a key. It
// holds nothing but the key, so the writer and Verify use it concurrently.
type hasher struct {
	key []byte
}

// hashBuf is the room for a typical entry's encoding on the stack: hash
// allocates only the hex text it returns, unless the entry is bigger.
const hashBuf = 1024

// hash returns the lowercase hex hash of r linked to prev. The encoding is
// unambiguous: a version tag, then every field as its length (uvarint) and
// its bytes, in a fixed order, with Details marked present or absent. It
// covers the exact stored bytes: the time text and the Details JSON as
// written.
//
// It runs once per entry on the writer's goroutine, so it builds the whole
// message in one buffer and hashes it in one call, with no hash.Hash to
// allocate; under a key it computes HMAC (RFC 2104) from the same two
// SHA-256 calls that crypto/hmac makes.
func (h hasher) hash(prev string, r *record) string {
	var stack [sha256.BlockSize + hashBuf]byte
	b := stack[:0]
	if h.key != nil {
		b = hmacPad(b, h.key, 0x36)
	}
	b = append(b, "audit.v1\x00"...)
	b = appendField(b, prev)
	b = appendField(b, r.time)
	b = appendField(b, r.eventType)
	b = appendField(b, r.actor)
	b = appendField(b, r.resource)
	b = appendField(b, r.outcome)
	b = appendField(b, r.requestID)
	if r.details == nil {
		b = append(b, 0)
	} else {
		b = append(b, 1)
		b = appendField(b, r.details)
	}
	sum := sha256.Sum256(b)
	if h.key != nil {
		var outer [sha256.BlockSize + sha256.Size]byte
		hmacPad(outer[:0], h.key, 0x5c)
		copy(outer[sha256.BlockSize:], sum[:])
		sum = sha256.Sum256(outer[:])
	}
	var text [2 * sha256.Size]byte
	hex.Encode(text[:], sum[:])
	return string(text[:])
}

// appendField appends s to b as its length (uvarint) and its bytes.
func appendField[T string | []byte](b []byte, s T) []byte {
	b = binary.AppendUvarint(b, uint64(len(s)))
	return append(b, s...)
}

// hmacPad appends HMAC's block-sized key, XORed with pad: the key,
// hashed first if it is longer than a block, padded with zeros.
func hmacPad(b, key []byte, pad byte) []byte {
	if len(key) > sha256.BlockSize {
		sum := sha256.Sum256(key)
		key = sum[:]
	}
	for i := range sha256.BlockSize {
		k := byte(0)
		if i < len(key) {
			k = key[i]
		}
		b = append(b, k^pad)
	}
	return b
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
	sess, done, err := s.use(ctx, "verify")
	if err != nil {
		return VerifyReport{}, err
	}
	defer done()
	tx, err := sess.sqlDB.BeginTx(ctx, sess.d.readOpts)
	if err != nil {
		return VerifyReport{}, opErr("verify", fmt.Errorf("begin: %w", err))
	}
	defer tx.Rollback() //nolint:errcheck // read-only
	rep, err := s.verify(ctx, sess, tx)
	if s.cfg.selfAudit {
		d := map[string]any{"entries": rep.Entries, "first_id": rep.FirstID, "last_id": rep.LastID}
		if err != nil {
			d["error"] = err.Error()
		}
		s.selfRecord(EventVerify, d)
	}
	if err != nil {
		return rep, opErr("verify", err)
	}
	return rep, nil
}

func (s *AuditService) verify(ctx context.Context, sess *session, tx *sql.Tx) (VerifyReport, error) {
	var rep VerifyReport
	head, err := readHead(ctx, tx, sess)
	if err != nil {
		return rep, err
	}
	if err := s.checkPrune(ctx, tx, sess, head, nil); err != nil { // HOOK(merkle): authenticated pruning
		return rep, err
	}
	lastID, lastHash := head.lastID, head.lastHash
	wantID, prevHash := head.prunedID+1, head.prunedHash
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
			id, r, prev, stored, err := scanRow(rows)
			if err != nil {
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
