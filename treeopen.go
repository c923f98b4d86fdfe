package audit

import (
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"

	"golang.org/x/mod/sumdb/tlog"
)

// ErrKeyMismatch is why a service refuses to write to a log: the log was
// created under another chain key, or under a key while the service has
// none, or without a key while the service has one. Entries stay queued.
var ErrKeyMismatch = errors.New("audit: chain key does not match the log's")

// keyFingerprint identifies a chain key without revealing it: "none" for
// the plain SHA-256 chain, else "hmac-sha256:" and the first 16 bytes of an
// HMAC under the key, in hex.
func keyFingerprint(key []byte) string {
	if key == nil {
		return "none"
	}
	m := hmac.New(sha256.New, key)
	m.Write([]byte("audit chain key fingerprint v1"))
	return "hmac-sha256:" + hex.EncodeToString(m.Sum(nil)[:16])
}

// openTree is the session's hook into the tree, run by open once the
// schema exists: it creates the table's tree head if missing, builds the
// tree of a log written before the tree existed (in transactions of
// treeBuildChunk entries, between which writers commit), and checks the
// log's chain key fingerprint against the service's. Its failures are
// logged, not returned: a read-only database can still be queried, and a
// tree that lags is built by the next open.
func (s *AuditService) openTree(ctx context.Context, sess *session) {
	sess.tree = &treeSession{}
	if s.cfg.tree.disabled {
		return
	}
	if err := s.prepareTree(ctx, sess); err != nil {
		s.log.Warn("audit: the Merkle tree could not be brought up to date; the next open retries", "err", err)
	}
}

func (s *AuditService) prepareTree(ctx context.Context, sess *session) error {
	ts := &sess.q.tree
	h, ok, err := readTreeHead(ctx, sess.sqlDB, ts)
	if err != nil {
		return err
	}
	if !ok {
		if err := s.st.writeTx(ctx, sess, func(tx execer) error { return s.initTreeHead(ctx, tx, sess) }); err != nil {
			return fmt.Errorf("create tree head: %w", err)
		}
		if h, _, err = readTreeHead(ctx, sess.sqlDB, ts); err != nil {
			return err
		}
	}
	sess.tree.keyErr = s.checkKey(ctx, sess, h)
	if errors.Is(sess.tree.keyErr, ErrKeyMismatch) {
		return nil // this service does not write: it does not build either
	}
	if sess.tree.keyErr != nil {
		err, sess.tree.keyErr = sess.tree.keyErr, nil
		return err
	}
	head, err := readHead(ctx, sess.sqlDB, sess)
	if err != nil {
		return err
	}
	if h.base+h.size < head.lastID {
		if err := s.buildTree(ctx, sess); err != nil {
			return fmt.Errorf("build the Merkle tree: %w", err)
		}
	}
	return nil
}

// initTreeHead creates the tree head of a log that has none: a new log, or
// one written before the tree existed, whose tree starts at its first
// remaining entry (what was pruned before cannot be recovered). A keyed
// log, or an empty one, records its key's fingerprint; for an older
// non-empty log the fingerprint is recorded once its last entry is seen to
// verify under the service's key (see checkKey).
func (s *AuditService) initTreeHead(ctx context.Context, tx execer, sess *session) error {
	// Take turns with writers and prunes (the head row's lock, where the
	// dialect needs one) before reading the prune checkpoint: a prune of
	// another process between the read and the commit would leave the
	// tree based at entries that are gone.
	if err := lockChainHead(ctx, tx, sess); err != nil {
		return err
	}
	head, err := readHead(ctx, tx, sess)
	if err != nil {
		return err
	}
	var fp any
	if head.lastID == head.prunedID {
		fp = keyFingerprint(s.cfg.chainKey)
	}
	ts := &sess.q.tree
	if _, err := tx.ExecContext(ctx, ts.initHead, ts.key, head.prunedID, fp, head.prunedID, head.prunedHash); err != nil {
		return err
	}
	// The starting point is authenticated like a prune checkpoint: on
	// first open, trust is placed in what is there.
	return s.authPrune(ctx, tx, sess, head.prunedID, head.prunedHash)
}

// buildTree adds the entries that the tree lacks, treeBuildChunk per
// transaction, until it reaches the chain head.
func (s *AuditService) buildTree(ctx context.Context, sess *session) error {
	ts := &sess.q.tree
	for {
		done := false
		err := s.st.writeTx(ctx, sess, func(tx execer) error {
			// Take turns with the writers (the head row's lock, where
			// the dialect needs one).
			if err := lockChainHead(ctx, tx, sess); err != nil {
				return err
			}
			h, ok, err := readTreeHead(ctx, tx, ts)
			if err != nil || !ok {
				done = true
				return err
			}
			hashes, _, err := readLeaves(ctx, tx, ts, h.base+h.size, treeBuildChunk)
			if err != nil {
				return err
			}
			if len(hashes) == 0 {
				done = true
				return nil
			}
			e, err := loadEdge(ctx, dbTiles{tx, ts, h.base}, h.size)
			if err != nil {
				return err
			}
			for _, hx := range hashes {
				lh, err := leafHash(hx)
				if err != nil {
					return err
				}
				e.append(lh)
			}
			return writeEdge(ctx, tx, ts, e)
		})
		if err != nil || done {
			return err
		}
	}
}

// checkKey compares the log's key fingerprint with the service's. A log
// with none recorded (written before fingerprints) adopts the service's if
// its last entry's Hash verifies under the service's key.
func (s *AuditService) checkKey(ctx context.Context, sess *session, h treeHead) error {
	mine := keyFingerprint(s.cfg.chainKey)
	if h.keyFP.Valid {
		if h.keyFP.String == mine {
			return nil
		}
		return keyMismatch(h.keyFP.String, mine)
	}
	head, err := readHead(ctx, sess.sqlDB, sess)
	if err != nil {
		return err
	}
	if head.lastID > head.prunedID {
		rows, err := sess.sqlDB.QueryContext(ctx, sess.q.get, head.lastID)
		if err != nil {
			return err
		}
		var r record
		var prev, stored string
		found := rows.Next()
		if found {
			_, r, prev, stored, err = scanRow(rows)
		}
		rows.Close()
		if err != nil {
			return err
		}
		if found && s.chain.hash(prev, &r) != stored {
			return fmt.Errorf("%w: the log's last entry does not verify under this service's chain key (%s)", ErrKeyMismatch, describeKey(mine))
		}
	}
	ts := &sess.q.tree
	return s.st.writeTx(ctx, sess, func(tx execer) error {
		_, err := tx.ExecContext(ctx, ts.setKey, mine, ts.key)
		return err
	})
}

func keyMismatch(logs, mine string) error {
	created := "without a chain key"
	if logs != "none" {
		created = "under the chain key with fingerprint " + logs
	}
	// Permanent: Flush and sync Record return it at once (permanent.go),
	// and the writer keeps the entries queued.
	return permanent(fmt.Errorf("%w: the log was created %s, this service has %s", ErrKeyMismatch, created, describeKey(mine)),
		"open the log with its own chain key, WithChainKey", "the chain key does not match the log's")
}

func describeKey(fp string) string {
	if fp == "none" {
		return "no chain key"
	}
	return "the chain key with fingerprint " + fp
}

// refuseWrite returns why the service may not write to sess's log, or nil.
func (sess *session) refuseWrite() error {
	if sess.tree == nil {
		return nil
	}
	return sess.tree.keyErr
}

// treeCarry is a tree carried from a replaced SQLite file to the new file
// at its path (watch.go), so that checkpoints taken before the replacement
// still verify: the tree head, every tile above level 0, and every leaf
// (the new file has none of the old entries).
type treeCarry struct {
	head   treeHead
	keys   []tileKey
	tiles  [][]byte
	leaves []tlog.Hash
}

// readTreeCarry reads the tree of the file that sess opened, or returns nil
// (logged) if it cannot: the new file then starts a new tree.
func (s *AuditService) readTreeCarry(ctx context.Context, sess *session) *treeCarry {
	ts := &sess.q.tree
	c := &treeCarry{}
	err := func() error {
		h, ok, err := readTreeHead(ctx, sess.sqlDB, ts)
		if err != nil || !ok {
			return fmt.Errorf("no tree head: %w", err)
		}
		c.head = h
		rows, err := sess.sqlDB.QueryContext(ctx, ts.allTiles, ts.key, ts.key)
		if err != nil {
			return err
		}
		defer rows.Close()
		for rows.Next() {
			var k tileKey
			var data []byte
			if err := rows.Scan(&k.level, &k.n, &data); err != nil {
				return err
			}
			if k.level > 0 {
				c.keys, c.tiles = append(c.keys, k), append(c.tiles, data)
			}
		}
		if err := rows.Err(); err != nil {
			return err
		}
		c.leaves, err = readLeafHashes(ctx, sess.sqlDB, ts, h.base, 0, h.size)
		return err
	}()
	if err != nil {
		s.log.Error("audit: the replaced file's Merkle tree cannot be read: the new file starts a new tree", "err", err)
		return nil
	}
	return c
}

// continueTree writes the carried tree into the new file, in tx, with the
// carried head as its authenticated prune checkpoint. Hook of
// continueChain, for an empty new file only.
func (s *AuditService) continueTree(ctx context.Context, tx execer, sess *session, c *treeCarry, lastID int64, lastHash string) error {
	if c == nil || c.head.base+c.head.size != lastID {
		return nil // no tree, or one that lags: openTree starts a new one
	}
	ts := &sess.q.tree
	if _, err := tx.ExecContext(ctx, ts.initHead, ts.key, c.head.base, c.head.keyFP, lastID, lastHash); err != nil {
		return fmt.Errorf("carry the tree head: %w", err)
	}
	e := &treeEdge{size: c.head.size, dirty: map[tileKey][]byte{}}
	for i, k := range c.keys {
		e.mark(k, c.tiles[i])
	}
	if err := writeEdge(ctx, tx, ts, e); err != nil {
		return fmt.Errorf("carry the tree: %w", err)
	}
	if err := storeLeafTiles(ctx, tx, ts, 0, c.leaves); err != nil {
		return fmt.Errorf("carry the tree: %w", err)
	}
	return s.authPrune(ctx, tx, sess, lastID, lastHash)
}
