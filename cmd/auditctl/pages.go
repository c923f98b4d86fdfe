package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"math"

	"github.com/cleveragents/audit"
)

// pageSize is how many entries list and export read per query: memory
// stays constant however many entries they stream.
const pageSize = 1000

// pager reads the entries that a filter selects, page by page, and steps
// over the entries that cannot be read.
type pager struct {
	svc *audit.AuditService
	// skipped is told of each entry that could not be read, with the
	// error that reading it alone gave; nil makes an unreadable entry end
	// the walk with List's error.
	skipped func(id int64, err error)
}

// badEntries counts the entries that list and export stepped over, and
// names each on stderr as it goes.
type badEntries struct {
	w   io.Writer
	n   int
	ids []int64 // the first few, for the final error
}

// maxNamedBad is how many IDs the final error of list and export names.
const maxNamedBad = 10

func (b *badEntries) skip(id int64, err error) {
	fmt.Fprintf(b.w, "auditctl: entry %d cannot be read, skipped: %s\n", id, errorText(err))
	b.n++
	if len(b.ids) < maxNamedBad {
		b.ids = append(b.ids, id)
	}
}

// err is the failure (exit status 1) that ends a walk that skipped
// entries, or nil.
func (b *badEntries) err() error {
	if b.n == 0 {
		return nil
	}
	more := ""
	if b.n > len(b.ids) {
		more = ", ..."
	}
	what := "entries"
	if b.n == 1 {
		what = "entry"
	}
	return failure(fmt.Errorf("%d %s could not be read (ID %s%s); the others were read", b.n, what, joinIDs(b.ids), more))
}

func joinIDs(ids []int64) string {
	var s []byte
	for i, id := range ids {
		if i > 0 {
			s = append(s, ", "...)
		}
		s = fmt.Appendf(s, "%d", id)
	}
	return string(s)
}

// forEachPage reads the entries that f selects, in pages of at most
// pageSize, in f.Desc's order, and hands each page to fn; it stops after
// limit entries (0: none). It pages by ID (keyset pagination), so each
// query is an index range however deep into the log it reads, and returns
// how many entries it handed to fn. Entries it steps over (see pager) do
// not count towards limit.
func (p pager) forEachPage(ctx context.Context, f audit.Filter, limit int, fn func([]audit.Entry) error) (int64, error) {
	var n int64
	for {
		f.Limit = pageSize
		if limit > 0 {
			f.Limit = min(pageSize, limit-int(n))
		}
		page, err := p.svc.List(ctx, f)
		var badID int64 // an entry after page that cannot be read
		var badErr error
		if err != nil {
			if p.skipped == nil || ctx.Err() != nil {
				return n, err
			}
			if page, badID, badErr = p.narrow(ctx, f, err); badID == 0 {
				return n, badErr
			}
		}
		if len(page) > 0 {
			if err := fn(page); err != nil {
				return n, err
			}
			n += int64(len(page))
		}
		last := badID
		if badID != 0 {
			p.skipped(badID, badErr)
		} else if len(page) < f.Limit {
			return n, nil
		} else {
			last = page[len(page)-1].ID
		}
		if limit > 0 && n >= int64(limit) {
			return n, nil
		}
		if f.Desc {
			f.BeforeID = last
		} else {
			f.AfterID = last
		}
	}
}

// narrow finds out why List(f) failed with listErr. When it was an entry
// that cannot be read, narrow returns the entries of the page before that
// one, its ID and the error that Get gives for it; otherwise it returns
// badID 0 and the error to end with.
//
// The library fails a whole page for one row it cannot read, and names the
// row only in its message, so narrow looks for it through the API: List
// with halving limits finds how many entries before it read (each query
// scans only the rows before its limit), and Count over halving ID ranges
// finds the ID of the next entry that f selects, which Get must then fail
// to read.
func (p pager) narrow(ctx context.Context, f audit.Filter, listErr error) (good []audit.Entry, badID int64, err error) {
	// List(f) with limit lo reads; with limit hi it does not.
	lo, hi := 0, f.Limit
	for hi-lo > 1 {
		mid := lo + (hi-lo)/2
		g := f
		g.Limit = mid
		page, err := p.svc.List(ctx, g)
		switch {
		case err == nil && len(page) == mid:
			lo, good = mid, page
		case err == nil: // fewer entries than before: the log changed
			return nil, 0, listErr
		case ctx.Err() != nil:
			return nil, 0, err
		default:
			hi = mid
		}
	}
	after := f
	if len(good) > 0 {
		if last := good[len(good)-1].ID; f.Desc {
			after.BeforeID = last
		} else {
			after.AfterID = last
		}
	}
	id, err := p.nextID(ctx, after)
	switch {
	case ctx.Err() != nil:
		return nil, 0, ctx.Err()
	case err != nil, id == 0:
		return nil, 0, listErr
	}
	switch _, err := p.svc.Get(ctx, id); {
	case err == nil, errors.Is(err, audit.ErrNotFound):
		// It reads alone, or is gone: not a bad row but a failed query,
		// or a log that changed under the query.
		return nil, 0, listErr
	case ctx.Err() != nil:
		return nil, 0, err
	default:
		return good, id, err
	}
}

// nextID returns the ID of the first entry that List(f) would return (the
// highest with f.Desc), without reading any entry, or 0 when there is none.
// It counts the entries f selects in ID ranges of doubling width from
// where f starts, then halves the range that holds one, so it takes about
// 2*log2(d) Counts for an entry at distance d.
func (p pager) nextID(ctx context.Context, f audit.Filter) (int64, error) {
	// The candidates are the IDs first, first+step, ... (first-step, ...
	// with Desc) up to the farthest a Filter can bound; span(d) counts
	// the entries among the first d of them.
	const top = math.MaxInt64 - 1 // BeforeID is exclusive: top+1 must not overflow
	first, room := f.AfterID+1, top-f.AfterID
	if f.Desc {
		first = top
		if f.BeforeID != 0 {
			first = f.BeforeID - 1
		}
		room = first
	}
	if room <= 0 {
		return 0, nil
	}
	span := func(d int64) (bool, error) {
		g := f
		if f.Desc {
			g.AfterID, g.BeforeID = first-d, first+1
		} else {
			g.AfterID, g.BeforeID = first-1, first+d
		}
		n, err := p.svc.Count(ctx, g)
		return n > 0, err
	}
	// span(lo) is false, span(hi) true.
	lo, hi := int64(0), int64(1)
	for {
		ok, err := span(hi)
		if err != nil {
			return 0, err
		}
		if ok {
			break
		}
		if hi == room {
			return 0, nil
		}
		lo, hi = hi, room
		if lo <= room/2 {
			hi = 2 * lo
		}
	}
	for hi-lo > 1 {
		mid := lo + (hi-lo)/2
		ok, err := span(mid)
		if err != nil {
			return 0, err
		}
		if ok {
			hi = mid
		} else {
			lo = mid
		}
	}
	if f.Desc {
		return first - hi + 1, nil
	}
	return first + hi - 1, nil
}
