package audit

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync/atomic"
	"time"
)

// AuditService records audit entries and answers queries about them. Its
// methods are safe for concurrent use. Create one with [New] and end it
// with [AuditService.Shutdown] or [AuditService.Close].
//
// It is three parts, each owning its own state: the intake (the queue and
// its senders, intake.go), the writer (one goroutine, writer.go) and the
// store (the lazily opened database and its write transactions,
// store.go). Record and Flush go through the intake; the writer drains it
// into the store; queries use the store directly.
type AuditService struct {
	cfg     config
	log     *slog.Logger
	chain   hasher
	cols    columnArgs // the arguments of insertColumns INSERTs (insert_columns.go), under the store's writeMu
	copyBuf []byte     // the data of COPYs (pgcopy.go), under the store's writeMu

	in    intake
	st    store
	stats counters
	perm  failSignal // the writer's permanent failures, for the callers waiting for a commit (permanent.go)

	// The writer's lifecycle (writer.go). abort is the writer's context:
	// cancelled, with the cause, when a Shutdown caller's ctx ends before
	// the drain does. writerDone is closed by the writer as it ends, and
	// lost (the entries it could not commit) is set before.
	abort      context.Context
	cancel     context.CancelCauseFunc
	writerDone chan struct{}
	lost       int64

	// RecordTx (outbox.go): poke wakes the writer to look for committed
	// outbox rows; usedOutbox is set once the service has outbox entries
	// to care about, after which Flush always asks the writer.
	poke       chan struct{}
	usedOutbox atomic.Bool

	tails tailHub // wakes Tail's readers after each commit (tail.go)

	pub *publisher // signs automatic checkpoints (publish.go); nil without WithSigner

	stopRecorded atomic.Bool // WithSelfAudit: EventStop is queued once, by the first Shutdown caller

	// stopped is closed once the first Shutdown has done its work, and
	// stopErr set before: every Shutdown call returns it.
	stopped chan struct{}
	stopErr error
}

// New validates the options, starts the background writer and returns the
// service. It does not touch the database: the first call that needs it
// opens it (call [AuditService.Ping] to check it at start-up). The error
// names the option at fault.
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
		cfg:        cfg,
		log:        cfg.logger,
		chain:      hasher{key: cfg.chainKey},
		in:         newIntake(cfg.queueSize),
		writerDone: make(chan struct{}),
		stopped:    make(chan struct{}),
		poke:       make(chan struct{}, 1),
	}
	s.st = store{cfg: &s.cfg, log: s.log, failures: &s.stats.failures, hooks: storeHooks{
		leftovers:    s.pokeOutbox,
		openTree:     s.openTree,
		carryTree:    s.readTreeCarry,
		continueTree: s.continueTree,
	}}
	s.abort, s.cancel = context.WithCancelCause(context.Background())
	s.pub = s.startPublisher() // before the writer, which tells it of growth
	go s.runWriter()
	s.selfRecord(EventStart, selfStartDetails())
	return s, nil
}

// Record validates e and hands it to the writer. An invalid entry is
// ErrInvalidEntry, wrapped with the name of the field at fault, and is never
// queued; an empty Actor or RequestID is first taken from ctx (see
// [ContextWithActor]). ID, PrevHash and Hash are ignored.
//
// In async mode Record returns once the entry is queued; in sync mode once
// its transaction has committed, or with ctx's error if ctx ends first, or
// with the error of the writer's attempt if it is one that retrying cannot
// fix (as Flush); in both cases the entry stays queued and may still be
// committed. With a full queue,
// Record waits for room until ctx ends (OverflowBlock: the error wraps
// ErrQueueFull and ctx's error) or returns ErrQueueFull at once
// (OverflowFail). After Shutdown has begun it returns ErrClosed.
func (s *AuditService) Record(ctx context.Context, e Entry) error {
	if s.cfg.readOnly {
		s.stats.rejected.Add(1)
		return opErr("record", ErrReadOnly)
	}
	r, err := s.prepare(ctx, &e)
	if err != nil {
		s.stats.rejected.Add(1)
		return opErr("record", err)
	}
	r.accepted = time.Now().UnixNano()
	it := item{rec: r}
	if !s.cfg.async {
		it.done = make(chan error, 1)
	}
	since, failed := s.perm.watch()
	if err := s.in.send(ctx, it, s.cfg.overflow == OverflowFail, s.abort.Done(), &s.stats.queued); err != nil {
		s.stats.rejected.Add(1)
		return opErr("record", err)
	}
	if it.done == nil {
		return nil
	}
	err = s.awaitCommit(ctx, it.done, since, failed)
	if err != nil && ctx.Err() != nil && errors.Is(err, ctx.Err()) {
		err = fmt.Errorf("waiting for commit: %w", err)
		if last := s.stats.lastErr.Load(); last != nil {
			err = fmt.Errorf("%w (last write error: %w)", err, *last)
		}
	}
	return opErr("record", err)
}

// awaitCommit waits for done's answer, until ctx ends (its error) or an
// attempt of the writer begun after since fails with a permanent error
// (notCommitted): the entries stay queued, but waiting cannot help.
func (s *AuditService) awaitCommit(ctx context.Context, done <-chan error, since uint64, failed <-chan struct{}) error {
	for {
		select {
		case err := <-done:
			return err
		case <-ctx.Done():
			return ctx.Err()
		case <-failed:
			var perr error
			if failed, perr = s.perm.after(since); perr != nil {
				return notCommitted(perr)
			}
		}
	}
}

// prepare is what Record and RecordTx do first: an empty Actor or
// RequestID is taken from ctx, then e is validated and made a record.
func (s *AuditService) prepare(ctx context.Context, e *Entry) (*record, error) {
	if ctx == nil {
		return nil, errNilContext
	}
	if e.Actor == "" {
		e.Actor, _ = ActorFromContext(ctx)
	}
	if e.RequestID == "" {
		e.RequestID, _ = RequestIDFromContext(ctx)
	}
	return s.newRecord(e)
}

// Flush returns once every entry accepted before the call is committed. If
// ctx ends first it returns ctx's error, wrapping the writer's last write
// error if it has one. If the writer's attempt at those entries fails with
// an error that retrying cannot fix (a missing directory, a read-only
// file, a table with other columns, ...: see [AuditService.Ping]), it
// returns that error at once; the entries stay queued and are retried.
// After Shutdown has begun it returns ErrClosed.
func (s *AuditService) Flush(ctx context.Context) error {
	if ctx == nil {
		return opErr("flush", errNilContext)
	}
	if s.in.isClosed() {
		return opErr("flush", ErrClosed)
	}
	if s.stats.queued.Load() == 0 && !s.usedOutbox.Load() {
		return nil // nothing accepted is uncommitted
	}
	barrier := item{done: make(chan error, 1)}
	since, failed := s.perm.watch()
	err := s.in.send(ctx, barrier, false, s.abort.Done(), &s.stats.queued)
	if err == nil {
		err = s.awaitCommit(ctx, barrier.done, since, failed)
	}
	if err == nil {
		return nil
	}
	if isPermanent(err) {
		return opErr("flush", err)
	}
	if errors.Is(err, ErrQueueFull) {
		err = ctx.Err() // the barrier waited for room: that is not Record's overflow
	}
	if last := s.stats.lastErr.Load(); last != nil && !errors.Is(err, ErrClosed) {
		return opErr("flush", fmt.Errorf("%w (last write error: %w)", err, *last))
	}
	return opErr("flush", err)
}

// Shutdown stops accepting entries, commits everything accepted, stops the
// writer and closes the database if the service opened it. It is
// idempotent and safe to call concurrently: the first call does the work,
// and every call returns its result.
//
// Each caller's ctx bounds that caller's wait. When any caller's ctx ends
// before the work is done, the drain is given up: the writer stops within
// a second, every entry not committed is logged as a line of JSON, and the
// error says how many there were.
func (s *AuditService) Shutdown(ctx context.Context) error {
	if ctx == nil {
		return opErr("shutdown", errNilContext)
	}
	if s.cfg.selfAudit && s.stopRecorded.CompareAndSwap(false, true) {
		s.selfRecord(EventStop, nil) // before the intake closes: the last entry drained
	}
	if s.in.close() {
		s.stop(ctx)
	}
	select {
	case <-s.stopped:
	case <-ctx.Done():
		s.cancel(context.Cause(ctx))
		<-s.stopped // prompt now: the writer and the store give up
	}
	return s.stopErr
}

// Close is Shutdown(context.Background()): it waits for as long as the
// drain takes, and so, with the database unreachable, until it comes back
// or another caller's Shutdown ctx ends.
func (s *AuditService) Close() error {
	return s.Shutdown(context.Background())
}

// stop is the first Shutdown's work, in the order that makes it safe: the
// intake is closed already, so the writer drains the queue and ends; then
// the store closes, once the queries in flight have finished.
func (s *AuditService) stop(ctx context.Context) {
	defer close(s.stopped)
	select {
	case <-s.writerDone:
	case <-ctx.Done():
		s.cancel(context.Cause(ctx))
		<-s.writerDone // prompt: the writer's statements run under s.abort
	}
	var err error
	if s.lost > 0 {
		err = opErr("shutdown", fmt.Errorf("%d entries not committed: %w", s.lost, context.Cause(s.abort)))
	}
	s.stopPublisher(ctx) // the last checkpoint, before the database closes
	giveUp := s.abort.Done()
	if ctx.Done() != nil {
		// This caller's ctx bounds the wait for queries too.
		stopGiving := context.AfterFunc(ctx, func() { s.cancel(context.Cause(ctx)) })
		defer stopGiving()
	}
	if cerr := s.st.close(giveUp); cerr != nil {
		err = errors.Join(err, opErr("shutdown", fmt.Errorf("close database: %w", cerr)))
	}
	s.stopErr = err
	s.cancel(ErrClosed)
}

// use returns the session for a query method op, or ErrClosed once
// Shutdown has begun; the call must call done when it no longer uses it.
func (s *AuditService) use(ctx context.Context, op string) (sess *session, done func(), err error) {
	if ctx == nil {
		return nil, nil, opErr(op, errNilContext)
	}
	if s.in.isClosed() {
		return nil, nil, opErr(op, ErrClosed)
	}
	if sess, done, err = s.st.use(ctx); err != nil {
		return nil, nil, opErr(op, err)
	}
	return sess, done, nil
}

// Ping opens the database if it is not open yet (the same lazy open as
// every other first use) and checks that the log can be written: the
// schema exists or was created, and a write (that changes nothing, and is
// rolled back) succeeds in a write transaction (under WithReadOnly: that
// the log can be read). Its
// error names the database and the cause. Call it at start-up to fail
// fast; without it the open is retried in the background.
//
// The causes that retrying cannot fix are returned at once, each named in
// its error: "directory does not exist", "is a directory", "file is not a
// database", "read-only", "table exists with other columns", "index name
// taken by another table", "chain head row below MAX(id)", "no ID left".
// A failed Ping counts in Stats.Failures.
func (s *AuditService) Ping(ctx context.Context) error {
	sess, done, err := s.use(ctx, "ping")
	if err != nil {
		return err
	}
	defer done()
	if s.cfg.readOnly {
		_, err = readHead(ctx, sess.sqlDB, sess)
	} else if err = sess.refuseWrite(); err == nil {
		err = s.st.ping(ctx, sess)
	}
	if err != nil {
		s.stats.failures.Add(1)
		return opErr("ping", fmt.Errorf("database %s: %w", s.cfg.databaseName(), err))
	}
	return nil
}
