package audit

import (
	"context"
	"fmt"
	"time"
)

// The writer is one goroutine that owns all of the service's background
// writes, and this file is its whole lifecycle:
//
//   - New starts it (go s.runWriter()).
//   - It takes entries from the queue in order, up to BatchSize per
//     transaction, without waiting for a batch to fill: a lone entry is
//     written at once, and entries that arrive while a transaction commits
//     form the next batch (group commit). Without WithBatchSize the limit
//     doubles after every full batch, up to maxGrownBatch (less on a long
//     log: batchCap), and halves back towards DefaultBatchSize after one
//     less than half full (growBatch). A transaction takes, before it
//     commits, what arrived while it inserted, up to its limit (refill).
//     A failed batch is retried, whole and in order, with capped
//     exponential backoff. Flush barriers and sync callers are answered
//     only after the transaction holding their entries has committed.
//   - Every walCheckpointEntries committed entries it starts a WAL
//     checkpoint on a goroutine of its own (checkpoint.go), which it waits
//     for before it ends.
//   - Its ticker checks, while idle, that the SQLite file is still the one
//     it opened (watch.go), and starts the retention prune of
//     WithRetention, which it runs one chunk at a time between batches.
//   - Its context is s.abort. Shutdown closes the intake; the writer then
//     drains the queue and ends. When a Shutdown caller's ctx ends first,
//     Shutdown cancels s.abort: every statement the writer runs is
//     interrupted, and it logs what it could not commit and ends.
//   - Shutdown waits for its end (s.writerDone) before closing the store.
//
// The writer uses the store's session without registering as a user
// (store.use): it is the only one that retires a session (checkFile), and
// the store is closed only after the writer has ended.

// Backoff of the writer's retries.
const (
	backoffMin = 50 * time.Millisecond
	backoffMax = 5 * time.Second
	// writeTimeout bounds one attempt, so that a hung connection is
	// counted as a failure and retried rather than waited on for ever.
	writeTimeout = 30 * time.Second
	// fileCheckEvery is how often an idle writer checks the file.
	fileCheckEvery = 2 * time.Second
)

// outboxTurn is the state of the writer's moving of RecordTx entries
// (outbox.go) into the chain.
type outboxTurn struct {
	due    bool      // look at the outbox at the end of this turn
	follow time.Time // after a RecordTx, look every outboxPoll until then
	fast   *time.Ticker
}

// fastC is the fast poll's channel while following a RecordTx, else nil.
func (o *outboxTurn) fastC() <-chan time.Time {
	if o.follow.IsZero() {
		return nil
	}
	if time.Now().After(o.follow) {
		o.follow = time.Time{}
		return nil
	}
	return o.fast.C
}

// retention is the state of the writer's background pruning.
type retention struct {
	cutoff string    // the run in progress prunes entries before it; "" when none is
	began  time.Time // when the last run began; zero before the first
	pruned int64     // entries the run in progress has pruned
}

func (s *AuditService) runWriter() {
	defer close(s.writerDone)
	var ckpt checkpointer // runs the WAL checkpoints beside the writer
	defer ckpt.wait()
	every := fileCheckEvery
	if s.cfg.retention > 0 {
		every = min(every, s.cfg.retentionEvery)
	}
	tick := time.NewTicker(every)
	defer tick.Stop()
	b := &inflight{limit: s.cfg.batchSize}
	var ret retention
	ob := outboxTurn{fast: time.NewTicker(outboxPoll)}
	defer ob.fast.Stop()
	for {
		var ok bool
		b.items, ok = s.nextBatch(b.items[:0], b.limit, tick.C, &ret, &ob)
		if !ok {
			if s.abort.Err() == nil && s.usedOutbox.Load() {
				s.drainOutbox() // the last committed RecordTx entries
			}
			// Shutdown: after a full drain there is nothing left, and
			// abandon only returns; after an abort it logs what is left.
			s.abandon(b.items)
			return
		}
		b.recs = b.recs[:0]
		for _, it := range b.items {
			if it.rec != nil {
				b.recs = append(b.recs, it.rec)
			}
		}
		if len(b.recs) > 0 && !s.commitWithRetry(b) {
			s.abandon(b.items)
			return
		}
		b.limit = s.growBatch(b.limit, len(b.recs))
		if s.cfg.batchGrow && b.next > 0 {
			b.limit = max(min(b.limit, batchCap(b.next)), s.cfg.batchSize)
		}
		ckpt.committed(s, len(b.recs))
		if ob.due || (len(b.recs) < len(b.items) && s.usedOutbox.Load()) {
			// A Flush barrier covers the RecordTx entries committed
			// before it: move them before answering it.
			ob.due = false
			s.drainOutbox()
		}
		for _, it := range b.items {
			if it.done != nil {
				it.done <- nil
			}
		}
		clear(b.items) // let the records go
		clear(b.recs)
		if ret.cutoff != "" {
			// A pruned entry writes about as much WAL as a new one: the
			// checkpoints count both.
			ckpt.committed(s, int(s.retainChunk(&ret)))
		}
	}
}

// nextBatch waits for the first item, then takes what else is queued, up to
// limit entries. While a retention run is in progress it does not wait:
// with nothing queued it returns no item, so that the writer prunes the
// next chunk. It reports false when the writer should end: after Shutdown
// began, once no sender can add more and the queue is empty, or on abort;
// whatever it returns then has not been written.
func (s *AuditService) nextBatch(b []item, limit int, tick <-chan time.Time, ret *retention, ob *outboxTurn) ([]item, bool) {
	var first item
	if ret.cutoff != "" && !s.in.isClosed() {
		select {
		case first = <-s.in.queue:
		default:
			return b, true
		}
	} else {
		ret.cutoff = "" // Shutdown began: the retention run is dropped
	wait:
		for {
			select {
			case first = <-s.in.queue:
				break wait
			case <-tick:
				ob.due = s.st.sess.Load() != nil // other services' and a crash's rows too
				if s.tick(ret) || ob.due {
					return b, true
				}
			case <-s.poke:
				ob.due, ob.follow = true, time.Now().Add(outboxFollow)
				return b, true
			case <-ob.fastC():
				ob.due = true
				return b, true
			case <-s.in.closing():
				select {
				case first = <-s.in.queue:
					break wait
				case <-s.in.idle():
					select {
					case first = <-s.in.queue:
						break wait
					default:
						return b, false // drained: nobody can send any more
					}
				case <-s.abort.Done():
					return b, false
				}
			}
		}
	}
	n := 0
	if first.rec != nil {
		n++
	}
	return s.in.take(append(b, first), n, limit), true
}

// tick does the idle writer's periodic work: is the file still there (see
// watch.go), and is a retention run due? It reports whether one began.
func (s *AuditService) tick(ret *retention) bool {
	sess := s.st.sess.Load()
	if sess == nil {
		return false // not open yet: nothing to check or prune
	}
	if s.st.checkFile(s.abort, sess, s.abort.Done()) {
		return false
	}
	if s.cfg.retention <= 0 || (!ret.began.IsZero() && time.Since(ret.began) < s.cfg.retentionEvery) {
		return false
	}
	before := s.cfg.clock().Add(-s.cfg.retention)
	ret.began, ret.pruned = time.Now(), 0
	ret.cutoff = pruneCutoff(before)
	return ret.cutoff != ""
}

// retainChunk prunes one chunk of the retention run in progress, and ends
// the run when nothing is left to prune or the prune failed (the next
// interval tries again). It returns how many entries it pruned.
func (s *AuditService) retainChunk(ret *retention) int64 {
	sess := s.st.sess.Load()
	if sess == nil {
		ret.cutoff = "" // retired: the next interval prunes the new file
		return 0
	}
	n, more, err := s.pruneOnce(s.abort, sess, ret.cutoff)
	ret.pruned += n
	switch {
	case err != nil:
		ret.cutoff = ""
		if s.abort.Err() == nil {
			s.stats.failures.Add(1)
			s.log.Warn("audit: retention prune failed; retrying at the next interval", "err", err)
		}
	case !more:
		if ret.pruned > 0 {
			s.log.Info("audit: retention pruned entries", "entries", ret.pruned)
			s.selfRecord(EventPrune, map[string]any{"deleted": ret.pruned, "before": ret.cutoff, "retention": s.cfg.retention.String()})
		}
		ret.cutoff = ""
	}
	return n
}

// commitWithRetry writes b's entries in one transaction, retrying with
// backoff until it commits (true) or Shutdown aborts (false). Its first
// attempt may take more entries from the queue (refill); a retry writes
// what the batch holds.
func (s *AuditService) commitWithRetry(b *inflight) bool {
	backoff := backoffMin
	s.stats.oldest.Store(b.recs[0].accepted)
	defer s.stats.oldest.Store(0)
	// Its first attempt takes what arrives while it inserts: in sync mode
	// the callers of the transaction before, which has just committed,
	// record their next entries meanwhile, and one transaction of both
	// halves of the callers costs less than two (the README's "Batches
	// that grow" has the figures).
	b.grow = true
	for {
		began := time.Now()
		attempt := s.perm.begin()
		err := s.commitOnce(b)
		b.grow = false
		if err == nil {
			n := len(b.recs)
			s.stats.commitNanos.Store(int64(time.Since(began)))
			s.stats.lastCommit.Store(time.Now().UnixNano())
			s.stats.lastErr.Store(nil)
			s.pub.grew(n)
			s.stats.written.Add(uint64(n))
			s.stats.batches.Add(1)
			s.stats.queued.Add(-int64(n))
			s.wakeTailers() // waiting tailers read at once (tail.go)
			return true
		}
		if s.abort.Err() != nil {
			return false
		}
		s.stats.lastErr.Store(&err)
		if isPermanent(err) {
			s.log.Error("audit: write failed, and retrying cannot help until the cause is fixed (see err); the entries stay queued and are retried",
				"database", s.cfg.databaseName(), "entries", len(b.recs), "retry_in", backoff, "err", err)
			s.perm.fail(attempt, err) // after the log line: a caller it wakes may look for it
		} else {
			s.log.Warn("audit: write failed; retrying", "database", s.cfg.databaseName(), "entries", len(b.recs), "retry_in", backoff, "err", err)
		}
		if !sleep(backoff, s.abort.Done()) {
			return false
		}
		backoff = min(2*backoff, backoffMax)
	}
}

// commitOnce makes one attempt. It runs under the writer's own context,
// never a caller's: a caller that gives up does not abort its batch.
func (s *AuditService) commitOnce(b *inflight) error {
	ctx, cancel := context.WithTimeout(s.abort, writeTimeout)
	defer cancel()
	sess, err := s.st.session(ctx) // counts its own failures
	if err != nil {
		return err
	}
	if s.st.checkFile(ctx, sess, s.abort.Done()) {
		// Not a byte more into a file that left the path.
		if sess, err = s.st.session(ctx); err != nil {
			return err
		}
	}
	if fault := sess.fault.Load(); fault != nil {
		if err := s.st.checkSchema(ctx, sess, nil, false); err != nil {
			s.stats.failures.Add(1)
			return fmt.Errorf("write %d entries to %s: %w", len(b.recs), s.cfg.databaseName(), err)
		}
		sess.fault.Store(nil) // fixed
	}
	if err := s.insertBatch(ctx, sess, b, s.refill(b)); err != nil {
		s.stats.failures.Add(1)
		return fmt.Errorf("write %d entries to %s: %w", len(b.recs), s.cfg.databaseName(), s.st.explain(ctx, sess, err))
	}
	return nil
}

// abandon ends the writer after Shutdown's ctx ended: it logs every entry
// that was not committed, from the batch in hand and then from the queue,
// as one line of JSON each, and answers their waiters.
func (s *AuditService) abandon(batch []item) {
	<-s.in.idle() // senders end promptly on abort; after that the queue only shrinks
	errAbandoned := errorf(ErrClosed, "shut down before the entry was committed")
	drop := func(it item) {
		if it.rec != nil {
			s.lost++
			s.stats.queued.Add(-1)
			s.log.Error("audit: entry not committed", "entry", it.rec.logJSON())
		}
		if it.done != nil {
			it.done <- errAbandoned
		}
	}
	for _, it := range batch {
		drop(it)
	}
	for {
		select {
		case it := <-s.in.queue:
			drop(it)
		default:
			if s.lost > 0 {
				s.log.Error("audit: shutdown ended before the queue was drained", "not_committed", s.lost)
			}
			return
		}
	}
}

// sleep waits for d or until done is closed, and says whether d passed.
func sleep(d time.Duration, done <-chan struct{}) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-done:
		return false
	}
}
