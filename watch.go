package audit

import (
	"context"
	"errors"
	"fmt"
	"os"
)

// A SQLite file can be deleted or replaced under a running service: an
// operator's mistake, or an attack. The service's connections keep writing
// into the unlinked file, and whatever they commit there is gone from the
// path. So the writer compares the identity of the file it opened with the
// path's before every batch, and every fileCheckEvery while idle. When they
// differ it retires the session: the next open creates or opens the file at
// the path, and the chain continues there from the last head committed to
// the old file, kept as the prune checkpoint, so Verify passes on the new
// file. Nothing is written to the old file after the check that found it
// gone.
//
// Only files that WithSQLite opened are watched: the DSN of a dialector or
// db the caller built is not the service's to parse.

// chainHead is the state of a table's chain: its head and its prune
// checkpoint.
type chainHead struct {
	lastID, prunedID     int64
	lastHash, prunedHash string
	tree                 *treeCarry // the Merkle tree, carried to the new file (treeopen.go)
}

// fileChanged reports whether the file that sess opened is no longer the
// one at its path.
func fileChanged(sess *session) bool {
	if sess.ident == nil {
		return false
	}
	fi, err := os.Stat(sess.file)
	return err != nil || !os.SameFile(fi, sess.ident)
}

// checkFile retires sess if its file was deleted or replaced, and reports
// whether it did. It waits for the calls using sess (until giveUp is
// closed): the old file must be closed, by every connection, before the
// path is opened again.
func (st *store) checkFile(ctx context.Context, sess *session, giveUp <-chan struct{}) bool {
	if !fileChanged(sess) {
		return false
	}
	st.mu.Lock()
	defer st.mu.Unlock()
	if st.sess.Load() != sess {
		return true // retired already
	}
	st.sess.Store(nil)
	select {
	case <-sess.retire():
	case <-giveUp:
	}
	head, err := readHead(ctx, sess.sqlDB, sess)
	if err != nil {
		st.log.Error("audit: the database file was deleted or replaced, and its chain head cannot be read: the new file starts a new chain",
			"path", sess.file, "err", err)
	} else {
		head.tree = st.hooks.carryTree(ctx, sess)
		st.carry = &head
		st.log.Error("audit: the database file was deleted or replaced; writing continues in a new file at the path, its chain continuing from the last committed head",
			"path", sess.file, "head_id", head.lastID, "head", head.lastHash)
	}
	st.failures.Add(1) // after the log line: whoever watches the count may look for it
	// The old file's -wal and -shm files are still at the path: SQLite
	// would replay that WAL into whatever file the path holds now. Close
	// every connection of the old file, then remove them if they are still
	// the ones it used.
	sidecars := map[string]os.FileInfo{}
	for _, suffix := range []string{"-wal", "-shm"} {
		if fi, err := os.Stat(sess.file + suffix); err == nil {
			sidecars[sess.file+suffix] = fi
		}
	}
	if err := sess.close(); err != nil {
		st.log.Warn("audit: close the replaced database", "err", err)
	}
	for name, was := range sidecars {
		if fi, err := os.Stat(name); err == nil && os.SameFile(fi, was) {
			if err := os.Remove(name); err != nil {
				st.log.Warn("audit: remove the replaced database's "+name[len(sess.file):]+" file", "err", err)
			}
		}
	}
	return true
}

// readHead reads the chain state of the session's table, through q: the
// pool, or a transaction that needs it consistent with what it reads next.
func readHead(ctx context.Context, q execer, sess *session) (chainHead, error) {
	var h chainHead
	if err := q.QueryRowContext(ctx, sess.q.chainState, sess.q.key).Scan(&h.lastID, &h.lastHash, &h.prunedID, &h.prunedHash); err != nil {
		return h, fmt.Errorf("read chain head: %w", err)
	}
	return h, nil
}

// lockChainHead makes the write transaction tx take turns with the
// writers and prunes of every process before it reads the log's state: it
// reads the chain head with the dialect's row lock (dialect.lockHead),
// which the transaction holds until it ends.
func lockChainHead(ctx context.Context, tx execer, sess *session) error {
	var id int64
	var hash string
	if err := tx.QueryRowContext(ctx, sess.q.head, sess.q.key).Scan(&id, &hash); err != nil {
		return fmt.Errorf("lock chain head: %w", err)
	}
	return nil
}

// errForeignLog is why the service will not write to a file that replaced
// its own and holds a different log.
var errForeignLog = errors.New("the file at the path holds another log, which does not continue this one")

// continueChain makes a new file's chain continue from carry: an empty log
// takes carry as its prune checkpoint and head. A log that already
// continues it (the same head, or carry as its checkpoint: another process
// got there first) is left as it is; any other is refused.
func (st *store) continueChain(ctx context.Context, sess *session, carry *chainHead) error {
	return st.writeTx(ctx, sess, func(tx execer) error {
		h, err := readHead(ctx, tx, sess)
		if err != nil {
			return err
		}
		switch {
		case h.lastID == 0 && h.prunedID == 0:
			if _, err := tx.ExecContext(ctx, sess.q.resetHead, carry.lastID, carry.lastHash, carry.lastID, carry.lastHash, sess.q.key); err != nil {
				return err
			}
			return st.hooks.continueTree(ctx, tx, sess, carry.tree, carry.lastID, carry.lastHash)
		case h.lastID == carry.lastID && h.lastHash == carry.lastHash,
			h.prunedID == carry.lastID && h.prunedHash == carry.lastHash:
			return nil
		}
		return fmt.Errorf("%w (its head is entry %d, this log's is %d)", errForeignLog, h.lastID, carry.lastID)
	})
}
