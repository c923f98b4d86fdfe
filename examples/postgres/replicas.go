// The replicas at work: connecting, recording at once, and reading back
// what each committed.

package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"strings"
	"sync"
	"time"

	"github.com/cleveragents/audit"
	"github.com/cleveragents/audit/examples/internal/walk"
)

// connect opens every replica's database at once: the first call that
// needs it opens the pool and makes sure the schema exists.
func connect(reps []*replica, out io.Writer) error {
	ctx, cancel := context.WithTimeout(context.Background(), walk.StepTimeout)
	defer cancel()
	errs := make([]error, len(reps))
	var wg sync.WaitGroup
	began := time.Now()
	for i, r := range reps {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if _, err := r.svc.Count(ctx, audit.Filter{}); err != nil {
				errs[i] = fmt.Errorf("replica %s: connect: %w", r.name, err)
			}
		}()
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		return err
	}
	fmt.Fprintf(out, "\n%d replicas connected together in %s, each with its own pool (schema creation serialised by an advisory lock)\n",
		len(reps), walk.Round(time.Since(began)))
	return nil
}

// requestID is the correlation ID of a replica's i-th event in this run.
// The sequence number is zero-padded, so a replica's IDs sort in the order
// it recorded them.
func requestID(runID, replica string, i int) string {
	return fmt.Sprintf("req-%s-%s-%04d", runID, replica, i)
}

// record has every replica record its events at once, as requests arrive
// (a short random pause between them, so that the replicas' write
// transactions interleave), then Flush.
func record(reps []*replica, out io.Writer, runID string, events int, start, end time.Time) error {
	total := len(reps) * events
	clock := walk.NewSimClock(start, end, total)
	fmt.Fprintf(out, "\nRecording %d events from %d replicas at once (run %s), simulating %s → %s (%s)\n",
		total, len(reps), runID, walk.Stamp(start), walk.Stamp(end), walk.Span(end.Sub(start)))

	errs := make([]error, len(reps))
	var wg sync.WaitGroup
	release := make(chan struct{})
	for i, r := range reps {
		wg.Add(1)
		go func() {
			defer wg.Done()
			<-release // start together, to make the chain head contended
			began := time.Now()
			for j := range events {
				e := event(clock.Now(), requestID(runID, r.name, j), r.name)
				if err := r.svc.Record(context.Background(), e); err != nil {
					errs[i] = fmt.Errorf("replica %s, event %d: record: %w", r.name, j, err)
					return
				}
				time.Sleep(rand.N(maxPause))
			}
			ctx, cancel := context.WithTimeout(context.Background(), walk.StepTimeout)
			defer cancel()
			if err := r.svc.Flush(ctx); err != nil {
				errs[i] = fmt.Errorf("replica %s: flush: %w", r.name, err)
				return
			}
			r.took = time.Since(began)
		}()
	}
	close(release)
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		return err
	}
	tw := walk.Table(out)
	fmt.Fprintln(tw, "  REPLICA\tCOMMITTED\tTRANSACTIONS\tRECORD + FLUSH")
	for _, r := range reps {
		st := r.svc.Stats()
		fmt.Fprintf(tw, "  %s\t%d\t%d\t%s\n", r.name, st.Written, st.Batches, walk.Round(r.took))
	}
	return tw.Flush()
}

// event is walk.Event with the replica that logged it, which is context
// like a host name: it goes in Details, not in Actor (who did it) or
// Resource (what to).
func event(t time.Time, requestID, replica string) audit.Entry {
	e := walk.Event(t, requestID)
	if e.Details == nil {
		e.Details = map[string]any{}
	}
	e.Details["replica"] = replica
	return e
}

// tally reads back everything committed since prev, the newest entry
// before this run, and counts it per replica.
//
// Filter matches fields by equality only, and none of its fields is the
// right place for "which replica logged this": Actor, Resource and Outcome
// describe the event, and a request ID is unique per request. So each
// replica writes its name in Details["replica"] and a run- and
// replica-scoped prefix in RequestID, and tally pages through the new
// entries in ID order with keyset pagination (AfterID), counting them per
// replica. Count with Filter{AfterID} gives the total to check the sum
// against, and each replica's own Stats.Written its share. The pages also
// show what a single chain head means: the replicas' entries interleave in
// ID (commit) order, yet each replica's appear in the order it recorded
// them, since its one writer commits its queue in order.
func tally(svc *audit.AuditService, reps []*replica, out io.Writer, runID string, prev audit.Entry) error {
	ctx, cancel := context.WithTimeout(context.Background(), walk.StepTimeout)
	defer cancel()
	total, err := svc.Count(ctx, audit.Filter{AfterID: prev.ID})
	if err != nil {
		return fmt.Errorf("count new entries: %w", err)
	}

	type seen struct {
		n       int64
		lastReq string
		inOrder bool
	}
	per := make(map[string]*seen, len(reps))
	for _, r := range reps {
		per[r.name] = &seen{inOrder: true}
	}
	var (
		others   int64  // entries of writers outside this run
		switches int    // consecutive IDs from different replicas
		lastRep  string // replica of the previous entry of this run
		first    audit.Entry
	)
	prefix := "req-" + runID + "-"
	f := audit.Filter{AfterID: prev.ID, Limit: scanPage}
	for {
		page, err := svc.List(ctx, f)
		if err != nil {
			return fmt.Errorf("list new entries after ID %d: %w", f.AfterID, err)
		}
		for _, e := range page {
			if first.ID == 0 {
				first = e
			}
			name, _ := e.Details["replica"].(string)
			s := per[name]
			if s == nil || !strings.HasPrefix(e.RequestID, prefix) {
				others++
				continue
			}
			s.n++
			if e.RequestID <= s.lastReq {
				s.inOrder = false
			}
			s.lastReq = e.RequestID
			if lastRep != "" && name != lastRep {
				switches++
			}
			lastRep = name
		}
		if len(page) < f.Limit {
			break
		}
		f.AfterID = page[len(page)-1].ID
	}

	fmt.Fprintf(out, "\nOne table, %d writers: the %d new entries after #%d, read back in ID order (pages of %d, AfterID)\n",
		len(reps), total, prev.ID, scanPage)
	tw := walk.Table(out)
	fmt.Fprintln(tw, "  REPLICA\tIN THE TABLE\tSTATS.WRITTEN\tIN RECORDING ORDER")
	var sum int64
	mismatch := false
	for _, r := range reps {
		s := per[r.name]
		sum += s.n
		written := r.svc.Stats().Written
		mismatch = mismatch || uint64(s.n) != written || !s.inOrder
		fmt.Fprintf(tw, "  %s\t%d\t%d\t%s\n", r.name, s.n, written, yesNo(s.inOrder))
	}
	if others > 0 {
		fmt.Fprintf(tw, "  other writers\t%d\t\t\n", others)
	}
	fmt.Fprintf(tw, "  all\t%d\t\t(Count with AfterID %d: %d)\n", sum+others, prev.ID, total)
	if err := tw.Flush(); err != nil {
		return fmt.Errorf("print tally: %w", err)
	}
	if mismatch {
		return errors.New("tally: the table does not hold what the replicas wrote, in their order")
	}
	fmt.Fprintf(out, "  the replicas' entries interleave: the writer changes %d times along the IDs\n", switches)

	// The first new entry links to the previous run's head: the chain
	// continues across runs and processes.
	if prev.ID != 0 && first.ID != 0 {
		link := "does NOT match"
		if first.PrevHash == prev.Hash {
			link = "matches"
		}
		fmt.Fprintf(out, "  #%d's PrevHash %s… %s the Hash of #%d, the newest entry before this run\n",
			first.ID, short(first.PrevHash), link, prev.ID)
	}
	return nil
}
