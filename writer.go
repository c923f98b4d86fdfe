package audit

import (
	"context"
	"fmt"
	"time"
)

// The writer is one goroutine that owns all of the service's batch writes.
// New starts it (go s.runWriter()); it ends when Shutdown has begun and the
// queue is drained, or at once when Shutdown's ctx ends (abort), and
// Shutdown waits for it (writerDone).
//
// It takes entries from the queue in order, up to BatchSize per
// transaction, without waiting for a batch to fill: a lone entry is written
// at once, and entries that arrive while a transaction commits form the
// next batch (group commit). A failed batch is retried, whole and in order,
// with capped exponential backoff. Flush barriers and sync callers are
// answered only after the transaction holding their entries has committed.

// Backoff of the writer's retries.
const (
	backoffMin = 50 * time.Millisecond
	backoffMax = 5 * time.Second
	// writeTimeout bounds one attempt, so that a hung connection is
	// counted as a failure and retried rather than waited on for ever.
	writeTimeout = 30 * time.Second
)

func (s *AuditService) runWriter() {
	defer close(s.writerDone)
	batch := make([]item, 0, s.cfg.batchSize)
	recs := make([]*record, 0, s.cfg.batchSize)
	watch := time.NewTicker(fileCheckEvery)
	defer watch.Stop()
	for {
		var ok bool
		batch, ok = s.nextBatch(batch[:0], watch.C)
		if !ok {
			// Shutdown: after a full drain there is nothing left, and
			// abandon only returns; after an abort it logs what is left.
			s.abandon(batch)
			return
		}
		recs = recs[:0]
		for _, it := range batch {
			if it.rec != nil {
				recs = append(recs, it.rec)
			}
		}
		if len(recs) > 0 && !s.commitWithRetry(recs) {
			s.abandon(batch)
			return
		}
		for i, it := range batch {
			if it.done != nil {
				it.done <- nil
			}
			batch[i] = item{} // let the records go
		}
	}
}

// nextBatch waits for the first item, then takes what else is queued, up to
// BatchSize entries. It reports false when the writer should end: after
// Shutdown began, once no sender can add more and the queue is empty, or on
// abort; whatever it returns then has not been written.
func (s *AuditService) nextBatch(b []item, tick <-chan time.Time) ([]item, bool) {
	var first item
wait:
	for {
		select {
		case first = <-s.queue:
			break wait
		case <-tick:
			// Idle: is the file still there? (See watch.go.)
			if sess := s.sess.Load(); sess != nil {
				s.checkFile(s.writerCtx, sess)
			}
		case <-s.stop:
			select {
			case first = <-s.queue:
				break wait
			case <-s.sendersDone:
				select {
				case first = <-s.queue:
					break wait
				default:
					return b, false // drained: nobody can send any more
				}
			case <-s.abort:
				return b, false
			}
		}
	}
	b = append(b, first)
	n := 0
	if first.rec != nil {
		n++
	}
	for n < s.cfg.batchSize {
		select {
		case it := <-s.queue:
			b = append(b, it)
			if it.rec != nil {
				n++
			}
		default:
			return b, true
		}
	}
	return b, true
}

// commitWithRetry writes recs in one transaction, retrying with backoff
// until it commits (true) or Shutdown aborts (false).
func (s *AuditService) commitWithRetry(recs []*record) bool {
	backoff := backoffMin
	for {
		err := s.commitOnce(recs)
		if err == nil {
			s.lastErr.Store(nil)
			s.written.Add(uint64(len(recs)))
			s.batches.Add(1)
			s.queued.Add(-int64(len(recs)))
			s.pub.grew(len(recs)) // HOOK(merkle)
			return true
		}
		select {
		case <-s.abort:
			return false
		default:
		}
		s.lastErr.Store(&err)
		s.log.Warn("audit: write failed; retrying", "entries", len(recs), "retry_in", backoff, "err", err)
		if !sleep(backoff, s.abort) {
			return false
		}
		backoff = min(2*backoff, backoffMax)
	}
}

// commitOnce makes one attempt. It runs under the writer's own context,
// never a caller's: a caller that gives up does not abort its batch.
func (s *AuditService) commitOnce(recs []*record) error {
	ctx, cancel := context.WithTimeout(s.writerCtx, writeTimeout)
	defer cancel()
	sess, err := s.session(ctx) // counts its own failures
	if err != nil {
		return err
	}
	if s.checkFile(ctx, sess) {
		// Not a byte more into a file that left the path.
		if sess, err = s.session(ctx); err != nil {
			return err
		}
	}
	if err := s.insertBatch(ctx, sess, recs); err != nil {
		s.failures.Add(1)
		return err
	}
	return nil
}

// abandon ends the writer after Shutdown's ctx ended: it logs every entry
// that was not committed, from the batch in hand and then from the queue,
// as one line of JSON each, and answers their waiters.
func (s *AuditService) abandon(batch []item) {
	<-s.sendersDone // senders end promptly on abort; after that the queue only shrinks
	errAbandoned := fmt.Errorf("audit: %w: shut down before the entry was committed", ErrClosed)
	drop := func(it item) {
		if it.rec != nil {
			s.lost.Add(1)
			s.queued.Add(-1)
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
		case it := <-s.queue:
			drop(it)
		default:
			if n := s.lost.Load(); n > 0 {
				s.log.Error("audit: shutdown ended before the queue was drained", "not_committed", n)
			}
			return
		}
	}
}
