package audit

import (
	"context"
	"database/sql"
	"errors"
	"time"

	"golang.org/x/mod/sumdb/note"
)

// treeConfig is what the tree's options set; zero values are defaults.
type treeConfig struct {
	signer     note.Signer
	sink       CheckpointSink
	cpEntries  int
	cpInterval time.Duration
	disabled   bool // no tree at all: the baseline of the benchmarks
}

// withoutTree turns the tree off, for the benchmarks' baseline.
func withoutTree() Option { return func(c *config) { c.tree.disabled = true } }

// WithSigner makes the service sign checkpoints of its Merkle tree with
// signer (a note.Signer: an Ed25519 key from note.NewSigner, or a KMS or HSM
// behind the interface): on demand with [AuditService.Checkpoint], and
// automatically, after [DefaultCheckpointEntries] new entries or
// [DefaultCheckpointInterval] after the last checkpoint if the tree grew
// (see [WithCheckpointEvery]), and once more at Shutdown if the tree grew.
// Automatic checkpoints are kept in CheckpointTable and handed to the sink
// of [WithCheckpointSink]. The signer also signs prune checkpoints (see
// [AuditService.Prune]). The signer's name must be a valid note key name.
// Defaults to no signer.
func WithSigner(signer note.Signer) Option {
	return func(c *config) {
		if signer == nil {
			c.fail("WithSigner", "nil signer")
			return
		}
		c.tree.signer = signer
	}
}

// WithCheckpointSink hands every automatic checkpoint to sink (for example
// a [FileSink]), from a goroutine of its own: publishing never blocks
// Record, and its failures are counted in Stats.Failures and logged. It
// needs WithSigner. Defaults to no sink (checkpoints are only kept in the
// database).
func WithCheckpointSink(sink CheckpointSink) Option {
	return func(c *config) {
		if sink == nil {
			c.fail("WithCheckpointSink", "nil sink")
			return
		}
		c.tree.sink = sink
	}
}

// WithCheckpointEvery sets when automatic checkpoints are signed: after
// entries new entries, or every interval if the tree grew. Defaults to
// [DefaultCheckpointEntries] and [DefaultCheckpointInterval].
func WithCheckpointEvery(entries int, interval time.Duration) Option {
	return func(c *config) {
		if entries < 1 || interval <= 0 {
			c.fail("WithCheckpointEvery", "entries %d and interval %v must both be positive", entries, interval)
			return
		}
		c.tree.cpEntries, c.tree.cpInterval = entries, interval
	}
}

// validateTree checks what the tree options need of each other.
func (c *config) validateTree() {
	if c.tree.sink != nil && c.tree.signer == nil {
		c.fail("WithCheckpointSink", "needs WithSigner")
	}
	if c.tree.cpEntries == 0 {
		c.tree.cpEntries, c.tree.cpInterval = DefaultCheckpointEntries, DefaultCheckpointInterval
	}
}

// publisher is the goroutine that signs automatic checkpoints, started by
// New with a signer and ended by Shutdown after the writer. The writer
// only counts entries and kicks it without waiting.
type publisher struct {
	kick   chan struct{} // buffered 1: a kick never blocks the writer
	stop   chan struct{} // closed by Shutdown: one last checkpoint, then end
	done   chan struct{} // closed when the goroutine ends
	ctx    context.Context
	cancel context.CancelFunc // aborts a publication when Shutdown's ctx ends
	every  int64

	since int64 // entries since the last checkpoint; the writer's goroutine only
}

// startPublisher starts the publisher, or returns nil without a signer.
func (s *AuditService) startPublisher() *publisher {
	if s.cfg.tree.signer == nil {
		return nil
	}
	p := &publisher{
		kick:  make(chan struct{}, 1),
		stop:  make(chan struct{}),
		done:  make(chan struct{}),
		every: int64(s.cfg.tree.cpEntries),
	}
	p.ctx, p.cancel = context.WithCancel(context.Background())
	go s.runPublisher(p)
	return p
}

// grew is the writer's hook after a commit of n entries.
func (p *publisher) grew(n int) {
	if p == nil {
		return
	}
	p.since += int64(n)
	if p.since >= p.every {
		p.since = 0
		select {
		case p.kick <- struct{}{}:
		default:
		}
	}
}

// stopPublisher ends the publisher after its last checkpoint, or at once
// when ctx ends.
func (s *AuditService) stopPublisher(ctx context.Context) {
	p := s.pub
	if p == nil {
		return
	}
	close(p.stop)
	select {
	case <-p.done:
	case <-ctx.Done():
		p.cancel()
		<-p.done
	}
	p.cancel()
}

func (s *AuditService) runPublisher(p *publisher) {
	defer close(p.done) // publish does nothing until the database is open
	tick := time.NewTicker(s.cfg.tree.cpInterval)
	defer tick.Stop()
	last := int64(-1) // the size of the last checkpoint; -1: read it from the database
	for {
		select {
		case <-p.kick:
		case <-tick.C:
		case <-p.stop:
			s.publish(p.ctx, &last)
			return
		}
		s.publish(p.ctx, &last)
	}
}

// publish signs, stores and hands to the sink a checkpoint of the tree if
// it grew since the last one.
func (s *AuditService) publish(ctx context.Context, last *int64) {
	ctx, cancel := context.WithTimeout(ctx, publishTimeout)
	defer cancel()
	sess := s.st.sess.Load()
	if sess == nil || !sess.acquire() { // not open, or being closed: the next turn
		return
	}
	defer sess.release() // so that a replaced file is not closed under us (watch.go)
	fail := func(what string, err error) {
		s.stats.failures.Add(1)
		s.log.Warn("audit: checkpoint "+what+" failed; the next one retries", "err", err)
	}
	if *last < 0 {
		var text string
		err := sess.sqlDB.QueryRowContext(ctx, sess.q.tree.lastCP, sess.q.tree.key).Scan(last, &text)
		if errors.Is(err, sql.ErrNoRows) {
			*last = 0
		} else if err != nil {
			*last = -1
			fail("read", err)
			return
		}
	}
	cur, err := s.currentTree(ctx, sess)
	if err != nil {
		fail("read tree", err)
		return
	}
	if cur.Size <= *last {
		return
	}
	c, err := s.signCheckpoint(ctx, sess, s.cfg.tree.signer)
	if err != nil {
		fail("signing", err)
		return
	}
	*last = c.Size
	if sink := s.cfg.tree.sink; sink != nil {
		if err := sink.PublishCheckpoint(ctx, c); err != nil {
			fail("publication", err)
		}
	}
}
