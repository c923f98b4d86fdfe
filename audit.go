package audit

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"
)

// AuditService records audit entries and answers queries about them. Its
// methods are safe for concurrent use. Create one with [New] and end it
// with [AuditService.Shutdown] or [AuditService.Close].
type AuditService struct {
	cfg   config
	log   *slog.Logger
	chain hasher

	// The lazy session: sess is the fast path, openMu the slow one.
	sess     atomic.Pointer[session]
	openMu   sync.Mutex    // serialises opening and closing the session; guards dbClosed
	dbClosed bool          // Shutdown has closed the database: no reopening
	carry    *chainHead    // the head of a replaced file, for the next open to continue; guarded by openMu
	opened   chan struct{} // closed by the first successful open

	// The queue and its senders. Nobody closes queue: a sender registers
	// under sendMu while closed is false, and Shutdown waits for the
	// registered senders before the writer's last drain.
	queue   chan item
	sendMu  sync.RWMutex // guards closed
	closed  bool
	senders sync.WaitGroup // registered senders still sending
	// useMu is read-held by every query call (Get, List, Count, Prune,
	// Verify) for as long as it uses the session, so that Shutdown and the
	// retiring of a replaced file (watch.go) close a database nobody uses.
	// Lock order: useMu, then openMu.
	useMu       sync.RWMutex
	sendersDone chan struct{} // closed once closed is set and senders is zero

	writeMu sync.Mutex // serialises this service's write transactions (the writer's batches and Prune's chunks)

	// The writer's lifecycle; see writer.go.
	stop       chan struct{} // closed when Shutdown begins: drain, then end
	abort      chan struct{} // closed when Shutdown's ctx ends: give up now
	writerCtx  context.Context
	cancelW    context.CancelFunc // cancels writerCtx on abort
	writerDone chan struct{}
	retainDone chan struct{} // nil without WithRetention
	retainStop context.CancelFunc

	pub *publisher // signs automatic checkpoints (publish.go); nil without WithSigner // HOOK(merkle)

	shutdownOnce sync.Once
	shutdownErr  error

	queued, lost                         atomic.Int64
	written, batches, failures, rejected atomic.Uint64
	lastErr                              atomic.Pointer[error] // the writer's last failure; nil after a success
}

// item is what the queue carries: an entry, a Flush barrier (rec nil), or
// both a sync entry and the channel its caller waits on.
type item struct {
	rec  *record
	done chan error // buffered, 1: answered once, never blocks the writer
}

// Stats are counters of a service since New.
type Stats struct {
	Queued   int    // accepted and not yet committed, the writer's in-flight batch included
	Written  uint64 // entries committed by this service
	Batches  uint64 // transactions committed by the writer
	Failures uint64 // failed open or write attempts (each retried; see Reliability)
	Rejected uint64 // Record calls refused: invalid, queue full, closed
}

// New validates the options, starts the background writer and returns the
// service. It does not touch the database: the first call that needs it
// opens it. The error names the option at fault.
func New(opts ...Option) (*AuditService, error) {
	cfg := defaultConfig()
	for _, o := range opts {
		if o == nil {
			cfg.fail("New", "nil Option")
			continue
		}
		o(&cfg)
	}
	if err := cfg.validate(); err != nil {
		return nil, err
	}
	s := &AuditService{
		cfg:         cfg,
		log:         cfg.logger,
		chain:       hasher{key: cfg.chainKey},
		opened:      make(chan struct{}),
		queue:       make(chan item, cfg.queueSize),
		sendersDone: make(chan struct{}),
		stop:        make(chan struct{}),
		abort:       make(chan struct{}),
		writerDone:  make(chan struct{}),
	}
	s.writerCtx, s.cancelW = context.WithCancel(context.Background())
	s.pub = s.startPublisher() // HOOK(merkle): before the writer, which reads s.pub
	go s.runWriter()
	if cfg.retention > 0 {
		var ctx context.Context
		ctx, s.retainStop = context.WithCancel(context.Background())
		s.retainDone = make(chan struct{})
		go s.runRetention(ctx)
	}
	return s, nil
}

// Record validates e and hands it to the writer. An invalid entry is
// ErrInvalidEntry, wrapped with the name of the field at fault, and is never
// queued; an empty Actor or RequestID is first taken from ctx (see
// [ContextWithActor]). ID, PrevHash and Hash are ignored.
//
// In async mode Record returns once the entry is queued; in sync mode once
// its transaction has committed, or with ctx's error if ctx ends first (the
// entry stays queued and may still be committed). With a full queue,
// Record waits for room until ctx ends (OverflowBlock: the error wraps
// ErrQueueFull and ctx's error) or returns ErrQueueFull at once
// (OverflowFail). After Shutdown has begun it returns ErrClosed.
func (s *AuditService) Record(ctx context.Context, e Entry) error {
	if e.Actor == "" {
		e.Actor, _ = ActorFromContext(ctx)
	}
	if e.RequestID == "" {
		e.RequestID, _ = RequestIDFromContext(ctx)
	}
	r, err := s.newRecord(&e)
	if err != nil {
		s.rejected.Add(1)
		return fmt.Errorf("audit: record: %w", err)
	}
	it := item{rec: r}
	if !s.cfg.async {
		it.done = make(chan error, 1)
	}
	if err := s.enqueue(ctx, it, s.cfg.overflow == OverflowFail); err != nil {
		s.rejected.Add(1)
		return fmt.Errorf("audit: record: %w", err)
	}
	if it.done == nil {
		return nil
	}
	if err := s.keyCheck(ctx); err != nil { // HOOK(merkle): the entry stays queued
		return fmt.Errorf("audit: record: %w", err)
	}
	select {
	case err := <-it.done:
		return err
	case <-ctx.Done():
		return fmt.Errorf("audit: record: waiting for commit: %w", ctx.Err())
	}
}

// enqueue puts it on the queue. It registers as a sender under sendMu so
// that Shutdown, once it has set closed, can wait for every sender that got
// in before it and then let the writer drain: a sender never sends on a
// closed channel, and an accepted entry is never left behind.
func (s *AuditService) enqueue(ctx context.Context, it item, failFast bool) error {
	s.sendMu.RLock()
	if s.closed {
		s.sendMu.RUnlock()
		return ErrClosed
	}
	s.senders.Add(1)
	s.sendMu.RUnlock()
	defer s.senders.Done()

	if it.rec != nil {
		// Counted before the send, so that the writer's decrement after
		// commit cannot come first: Queued never goes below zero.
		s.queued.Add(1)
	}
	select {
	case s.queue <- it:
		return nil
	default:
	}
	err := ErrQueueFull
	if !failFast {
		select {
		case s.queue <- it:
			return nil
		case <-ctx.Done():
			err = fmt.Errorf("%w: %w", ErrQueueFull, ctx.Err())
		case <-s.abort:
			err = ErrClosed
		}
	}
	if it.rec != nil {
		s.queued.Add(-1)
	}
	return err
}

// Flush returns once every entry accepted before the call is committed. If
// ctx ends first it returns ctx's error, wrapping the writer's last write
// error if it has one. After Shutdown has begun it returns ErrClosed.
func (s *AuditService) Flush(ctx context.Context) error {
	if s.isClosed() {
		return fmt.Errorf("audit: flush: %w", ErrClosed)
	}
	if s.queued.Load() == 0 {
		return nil // nothing accepted is uncommitted
	}
	if err := s.keyCheck(ctx); err != nil { // HOOK(merkle): a writer that cannot write
		return fmt.Errorf("audit: flush: %w", err)
	}
	barrier := item{done: make(chan error, 1)}
	err := s.enqueue(ctx, barrier, false)
	if err == nil {
		select {
		case err = <-barrier.done:
		case <-ctx.Done():
			err = ctx.Err()
		}
	}
	if err == nil {
		return nil
	}
	if errors.Is(err, ErrQueueFull) {
		err = ctx.Err() // the barrier waited for room: that is not Record's overflow
	}
	if last := s.lastErr.Load(); last != nil && !errors.Is(err, ErrClosed) {
		return fmt.Errorf("audit: flush: %w (last write error: %w)", err, *last)
	}
	return fmt.Errorf("audit: flush: %w", err)
}

// Shutdown stops accepting entries, commits everything accepted, stops the
// writer and closes the database if the service opened it. If ctx ends
// first, the writer gives up; every entry not committed is logged as a
// line of JSON, and the error says how many there were. Shutdown is
// idempotent: later and concurrent calls wait for the first and return its
// result.
func (s *AuditService) Shutdown(ctx context.Context) error {
	s.shutdownOnce.Do(func() { s.shutdownErr = s.shutdown(ctx) })
	return s.shutdownErr
}

// Close is Shutdown(context.Background()).
func (s *AuditService) Close() error {
	return s.Shutdown(context.Background())
}

func (s *AuditService) shutdown(ctx context.Context) error {
	s.sendMu.Lock()
	s.closed = true
	s.sendMu.Unlock()
	// No sender registers after this point; the ones already registered
	// end with a send, their ctx, or abort.
	go func() {
		s.senders.Wait()
		close(s.sendersDone)
	}()
	close(s.stop)
	if s.retainStop != nil {
		s.retainStop()
		<-s.retainDone
	}

	var err error
	select {
	case <-s.writerDone:
	case <-ctx.Done():
		close(s.abort)
		s.cancelW()
		<-s.writerDone // prompt: the writer's statements run under writerCtx
		if n := s.lost.Load(); n > 0 {
			err = fmt.Errorf("audit: shutdown: %d entries not committed: %w", n, ctx.Err())
		}
	}
	s.cancelW()
	s.stopPublisher(ctx) // HOOK(merkle): the last checkpoint, before the database closes

	// Queries that began before Shutdown finish on an open database
	// (unless ctx ends first); those that wait for useMu find closed set.
	locked, released := make(chan struct{}), make(chan struct{})
	go func() {
		s.useMu.Lock()
		close(locked)
		<-released
		s.useMu.Unlock()
	}()
	defer close(released)
	select {
	case <-locked:
	case <-ctx.Done():
	}

	s.openMu.Lock()
	s.dbClosed = true
	sess := s.sess.Load()
	s.openMu.Unlock()
	if sess != nil {
		if cerr := sess.close(); cerr != nil {
			err = errors.Join(err, fmt.Errorf("audit: shutdown: close database: %w", cerr))
		}
	}
	return err
}

// Stats returns the service's counters. It is cheap and never fails, even
// after Close.
func (s *AuditService) Stats() Stats {
	return Stats{
		Queued:   int(s.queued.Load()),
		Written:  s.written.Load(),
		Batches:  s.batches.Load(),
		Failures: s.failures.Load(),
		Rejected: s.rejected.Load(),
	}
}

// isClosed reports whether Shutdown has begun.
func (s *AuditService) isClosed() bool {
	s.sendMu.RLock()
	defer s.sendMu.RUnlock()
	return s.closed
}

// ready returns the session for a query method, or ErrClosed. The call
// read-holds useMu from before its check of closed until done, so that
// Shutdown waits for it before closing the database under it.
func (s *AuditService) ready(ctx context.Context, op string) (sess *session, done func(), err error) {
	s.useMu.RLock()
	if s.isClosed() {
		s.useMu.RUnlock()
		return nil, nil, fmt.Errorf("audit: %s: %w", op, ErrClosed)
	}
	if sess, err = s.session(ctx); err != nil {
		s.useMu.RUnlock()
		return nil, nil, fmt.Errorf("audit: %s: %w", op, err)
	}
	return sess, s.useMu.RUnlock, nil
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
