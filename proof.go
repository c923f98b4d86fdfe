package audit

import (
	"context"
	"database/sql"
	"errors"
	"fmt"

	"golang.org/x/mod/sumdb/note"
	"golang.org/x/mod/sumdb/tlog"
)

// ErrProof is returned, wrapped with the reason, by the offline checks of
// proofs and receipts when they do not verify.
var ErrProof = errors.New("audit: proof does not verify")

// An InclusionProof proves that an entry is a leaf of a tree of a given
// size: with a checkpoint of that size, anyone can check it offline
// ([VerifyInclusion]).
type InclusionProof struct {
	ID       int64            // the entry's ID
	Hash     string           // the entry's Hash, its leaf's record data
	Index    int64            // the leaf's index in the tree
	TreeSize int64            // the size of the tree it is proven in
	Proof    tlog.RecordProof // the hashes from the leaf to the root
}

// InclusionProof returns the proof that the entry with the given ID is a
// leaf of the log's tree of size treeSize (a checkpoint's Size). The entry
// must still be in the table (ErrNotFound otherwise) and its leaf below
// treeSize.
func (s *AuditService) InclusionProof(ctx context.Context, id, treeSize int64) (InclusionProof, error) {
	var p InclusionProof
	err := s.readTree(ctx, "inclusion proof", func(tx *sql.Tx, sess *session, h treeHead) error {
		var hash string
		if err := tx.QueryRowContext(ctx, sess.q.tree.entryHash, id).Scan(&hash); err != nil {
			if errors.Is(err, sql.ErrNoRows) {
				return fmt.Errorf("entry %d: %w", id, ErrNotFound)
			}
			return err
		}
		index := id - h.base - 1
		if treeSize < 1 || treeSize > h.size || index < 0 || index >= treeSize {
			return fmt.Errorf("entry %d (leaf %d) is not in a tree of size %d (the log's tree has %d leaves)", id, index, treeSize, h.size)
		}
		proof, err := tlog.ProveRecord(treeSize, index, hashReader{ctx, dbTiles{tx, &sess.q.tree, h.base}})
		if err != nil {
			return err
		}
		p = InclusionProof{ID: id, Hash: hash, Index: index, TreeSize: treeSize, Proof: proof}
		return nil
	})
	return p, err
}

// ConsistencyProof returns the proof that the log's tree of size newSize
// extends its tree of size oldSize (0 < oldSize <= newSize <= the tree's
// size): check it offline with [VerifyConsistency].
func (s *AuditService) ConsistencyProof(ctx context.Context, oldSize, newSize int64) (tlog.TreeProof, error) {
	var p tlog.TreeProof
	err := s.readTree(ctx, "consistency proof", func(tx *sql.Tx, sess *session, h treeHead) error {
		if oldSize < 1 || oldSize > newSize || newSize > h.size {
			return fmt.Errorf("sizes %d and %d: want 0 < old <= new <= %d (the tree's size)", oldSize, newSize, h.size)
		}
		var err error
		p, err = tlog.ProveTree(newSize, oldSize, hashReader{ctx, dbTiles{tx, &sess.q.tree, h.base}})
		return err
	})
	return p, err
}

// readTree runs fn in a read transaction with the table's tree head.
func (s *AuditService) readTree(ctx context.Context, op string, fn func(tx *sql.Tx, sess *session, h treeHead) error) error {
	sess, done, err := s.use(ctx, op)
	if err != nil {
		return err
	}
	defer done()
	tx, err := sess.sqlDB.BeginTx(ctx, readTxOptions(sess))
	if err != nil {
		return fmt.Errorf("audit: %s: begin: %w", op, err)
	}
	defer tx.Rollback() //nolint:errcheck // read-only
	h, ok, err := readTreeHead(ctx, tx, &sess.q.tree)
	if err == nil && !ok {
		err = errors.New("the log has no tree head")
	}
	if err == nil {
		err = fn(tx, sess, h)
	}
	if err != nil {
		return fmt.Errorf("audit: %s: %w", op, err)
	}
	return nil
}

// readTxOptions are the options of a consistent read transaction.
func readTxOptions(sess *session) *sql.TxOptions { return sess.d.readOpts }

// VerifyInclusion checks offline, needing no database, that p proves its
// entry Hash to be leaf p.Index of the tree that c states.
func VerifyInclusion(p InclusionProof, c Checkpoint) error {
	if p.TreeSize != c.Size {
		return fmt.Errorf("%w: the proof is for a tree of size %d, the checkpoint's has %d", ErrProof, p.TreeSize, c.Size)
	}
	lh, err := leafHash(p.Hash)
	if err != nil {
		return fmt.Errorf("%w: %w", ErrProof, err)
	}
	if err := tlog.CheckRecord(p.Proof, c.Size, c.Root, p.Index, lh); err != nil {
		return fmt.Errorf("%w: entry %d is not leaf %d of the checkpoint's tree: %w", ErrProof, p.ID, p.Index, err)
	}
	return nil
}

// VerifyConsistency checks offline that newer's tree extends older's: every
// leaf of older's is a leaf of newer's, at the same index.
func VerifyConsistency(older, newer Checkpoint, proof tlog.TreeProof) error {
	if older.Origin != newer.Origin {
		return fmt.Errorf("%w: checkpoints of two logs (%q and %q)", ErrProof, older.Origin, newer.Origin)
	}
	if err := tlog.CheckTree(proof, newer.Size, newer.Root, older.Size, older.Root); err != nil {
		return fmt.Errorf("%w: the tree of size %d does not extend the tree of size %d: %w", ErrProof, newer.Size, older.Size, err)
	}
	return nil
}

// A Receipt is what a third party needs to check, offline, that an entry
// is in the log: the entry, the proof of its leaf and the signed
// checkpoint the proof is for. Check it with [VerifyReceipt] and the
// log's verifier key.
type Receipt struct {
	Entry      Entry
	Proof      InclusionProof
	Checkpoint []byte // the signed checkpoint note
}

// Receipt returns the receipt of the entry with the given ID in the tree
// of checkpoint (a signed checkpoint note of this log).
func (s *AuditService) Receipt(ctx context.Context, id int64, checkpoint []byte) (Receipt, error) {
	c, err := ParseUnverifiedCheckpoint(checkpoint)
	if err != nil {
		return Receipt{}, fmt.Errorf("audit: receipt: %w", err)
	}
	e, err := s.Get(ctx, id)
	if err != nil {
		return Receipt{}, err
	}
	p, err := s.InclusionProof(ctx, id, c.Size)
	if err != nil {
		return Receipt{}, err
	}
	return Receipt{Entry: e, Proof: p, Checkpoint: append([]byte(nil), checkpoint...)}, nil
}

// VerifyReceipt checks r offline: the checkpoint's signature under v, that
// the proof is of r.Entry, and that it proves the entry's leaf in the
// checkpoint's tree. (Whether the entry's fields hash to its Hash depends
// on the chain key under WithChainKey; Verify checks that.)
func VerifyReceipt(r Receipt, v note.Verifier) error {
	c, err := ParseCheckpoint(r.Checkpoint, v)
	if err != nil {
		return err
	}
	if r.Entry.ID != r.Proof.ID || r.Entry.Hash != r.Proof.Hash {
		return fmt.Errorf("%w: the proof is of entry %d, the receipt's entry is %d", ErrProof, r.Proof.ID, r.Entry.ID)
	}
	return VerifyInclusion(r.Proof, c)
}

// VerifySince checks the log against a checkpoint trusted earlier (a
// signed note, checked under v), reading only what changed since it: that
// the stored tree of the checkpoint's size still has its root, that every
// entry committed after it links to the one before and hashes to its Hash
// and is the next leaf, that the tree's root now is that of these leaves,
// and that no entries are missing from the start without an authentic
// prune checkpoint. Entries the checkpoint covers are not read: a receipt
// for them stays checkable, and [AuditService.VerifyCheckpoint] reads them
// too. Failures wrap ErrTampered, or ErrCheckpoint for the checkpoint
// itself.
func (s *AuditService) VerifySince(ctx context.Context, checkpoint []byte, v note.Verifier) (VerifyReport, error) {
	return s.verifyAgainst(ctx, "verify since checkpoint", checkpoint, v, false)
}

// VerifyCheckpoint is the full check against a trusted checkpoint: what
// VerifySince checks, and every remaining entry's hash, link and leaf, and
// the whole tree's leaves against its root.
func (s *AuditService) VerifyCheckpoint(ctx context.Context, checkpoint []byte, v note.Verifier) (VerifyReport, error) {
	return s.verifyAgainst(ctx, "verify checkpoint", checkpoint, v, true)
}

func (s *AuditService) verifyAgainst(ctx context.Context, op string, checkpoint []byte, v note.Verifier, full bool) (VerifyReport, error) {
	c, err := ParseCheckpoint(checkpoint, v)
	if err != nil {
		return VerifyReport{}, fmt.Errorf("audit: %s: %w", op, err)
	}
	var rep VerifyReport
	err = s.readTree(ctx, op, func(tx *sql.Tx, sess *session, h treeHead) error {
		if want := v.Name() + "/" + sess.q.key; c.Origin != want {
			return fmt.Errorf("%w: its origin is %q, this log's is %q", ErrCheckpoint, c.Origin, want)
		}
		head, err := readHead(ctx, tx, sess)
		if err != nil {
			return err
		}
		if err := s.checkPrune(ctx, tx, sess, head, v); err != nil {
			return err
		}
		rep, err = s.verifyTree(ctx, tx, sess, h, head, c, full)
		return err
	})
	if err != nil {
		return rep, err
	}
	return rep, nil
}
