package audit

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"sync"
	"sync/atomic"
)

// walCheckpointEntries is how many committed entries make the writer start
// a background checkpoint of the WAL (on SQLite, about 2 KB of WAL an
// entry with random index keys): pages that several batches dirtied are
// copied to the database once.
const walCheckpointEntries = 8192

// checkpointer runs the WAL checkpoints of the writer's commits on a
// goroutine of its own, so that the writer goes on with the next batch
// while the pages are copied: SQLite's own checkpoint (wal_autocheckpoint)
// runs inside the COMMIT that crosses its threshold and holds the writer
// for all of it. The autocheckpoint stays, at a higher threshold
// (sqliteCheckpointPages), as the backstop; checkpointWAL completes a
// checkpoint before the WAL reaches it. At most one checkpoint runs at a
// time; the writer owns the checkpointer and waits for its goroutine
// before it ends.
type checkpointer struct {
	since int            // entries committed since the last checkpoint began; the writer's goroutine only
	busy  atomic.Bool    // a checkpoint is running
	wg    sync.WaitGroup // the running checkpoint's goroutine
}

// committed counts n entries the writer has just committed and starts a
// checkpoint when walCheckpointEntries have gone by and none is running.
func (c *checkpointer) committed(s *AuditService, n int) {
	c.since += n
	if c.since < walCheckpointEntries || c.busy.Load() {
		return
	}
	sess := s.st.sess.Load()
	if sess == nil || sess.d.checkpoint == nil || !sess.acquire() {
		return // nothing to checkpoint, or the session is being retired
	}
	c.since = 0
	c.busy.Store(true)
	c.wg.Add(1)
	go func() {
		defer c.wg.Done()
		defer c.busy.Store(false)
		defer sess.release() // retiring the session waits for the checkpoint
		if err := s.st.checkpointWAL(s.abort, sess); err != nil && s.abort.Err() == nil {
			// Harmless: the next one, or the autocheckpoint, copies the pages.
			s.log.Debug("audit: background WAL checkpoint failed", "err", err)
		}
	}()
}

// wait waits for the running checkpoint, if any.
func (c *checkpointer) wait() { c.wg.Wait() }

// checkpointWAL runs the dialect's checkpoint, then fsyncs the database
// file it copied pages into. SQLite fsyncs the database only when a
// checkpoint copies the whole WAL, so a run of partial checkpoints (beside
// a busy writer they all are) leaves tens of MiB of dirty pages for the one
// that completes: SQLite's autocheckpoint, inside the COMMIT that crosses
// its threshold, holding the write lock while that fsync writes them out
// (a 120 ms stall every WAL cycle while Prune ran on a 1M-entry log). The
// fsync here writes them out a checkpoint at a time, beside the writer.
//
// Once the WAL holds half the autocheckpoint threshold, it then copies the
// few frames committed meanwhile with the service's writes held (writeMu):
// that checkpoint completes, the next transaction starts the WAL over, and
// no COMMIT ever crosses the threshold (which cost the transaction that
// did 40-60 ms more).
func (st *store) checkpointWAL(ctx context.Context, sess *session) error {
	if sess.d.checkpoint == nil {
		return nil // the database checkpoints by itself
	}
	frames, err := sess.d.checkpoint(ctx, sess.sqlDB)
	if err != nil || sess.file == "" {
		return err // not a file the service opened: SQLite's own fsyncs stay
	}
	if err := fsyncFile(sess.file); err != nil {
		return err
	}
	if frames < sqliteCheckpointPages/2 {
		return nil
	}
	st.writeMu.Lock()
	defer st.writeMu.Unlock()
	_, err = sess.d.checkpoint(ctx, sess.sqlDB)
	return err
}

// sqliteCheckpoint copies what it can of the WAL into the database
// without waiting for readers or blocking the writer (PASSIVE), and
// returns how many frames the WAL holds.
func sqliteCheckpoint(ctx context.Context, db *sql.DB) (walFrames int, err error) {
	var busy, checkpointed int
	err = db.QueryRowContext(ctx, "PRAGMA wal_checkpoint(PASSIVE)").Scan(&busy, &walFrames, &checkpointed)
	return walFrames, err
}

// fsyncFile fsyncs the file at path; a file that is gone needs none.
func fsyncFile(path string) error {
	f, err := os.Open(path)
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("fsync: %w", err)
	}
	defer f.Close()
	if err := f.Sync(); err != nil {
		return fmt.Errorf("fsync %s: %w", path, err)
	}
	return nil
}
