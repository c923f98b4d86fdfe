package audit

import "math"

// How big the writer's transactions get (see writer.go).

// maxGrownBatch is the most entries a batch grows to without
// WithBatchSize (batchCap lowers it on a long log): on the realistic
// benchmark, 32768-entry transactions wrote half the bytes per entry that
// 4096-entry ones did, and 4096-entry ones a quarter of what 512-entry
// ones did.
const maxGrownBatch = 32768

// inflight is the writer's batch: the items it took from the queue, in
// order, and their entries.
type inflight struct {
	items []item
	recs  []*record
	limit int   // the most entries it may hold
	grow  bool  // the transaction may take more from the queue (its first attempt)
	next  int64 // the ID the entry after the last refill gets: about the log's size; 0 before one
}

// refill is the batch's refill while it may grow: while the transaction
// inserts what it holds, more entries arrive, and going on with them in
// the same transaction costs less than committing and beginning again
// (each commit writes every page the batch dirtied: with random index
// keys, one or more per entry). It takes what is queued, up to the batch's
// limit and batchCap of the log's size, and never waits.
func (s *AuditService) refill(b *inflight) refill {
	return func(next int64) []*record {
		b.next = next
		if !b.grow {
			return nil
		}
		most := b.limit
		if s.cfg.batchGrow {
			most = min(most, batchCap(next))
		}
		start, took := len(b.recs), len(b.items)
		b.items = s.in.take(b.items, len(b.recs), most)
		for _, it := range b.items[took:] {
			if it.rec != nil {
				b.recs = append(b.recs, it.rec)
			}
		}
		return b.recs[start:]
	}
}

// growBatch returns the entry limit of the next batch after one of n
// entries under limit: without WithBatchSize, a full batch means the
// entries arrive faster than transactions commit, and a bigger one costs
// little more than a small one.
func (s *AuditService) growBatch(limit, n int) int {
	switch {
	case !s.cfg.batchGrow:
		return limit
	case n >= limit:
		return min(2*limit, maxGrownBatch)
	case n < limit/2:
		return max(limit/2, s.cfg.batchSize)
	}
	return limit
}

// The page model of batchCap. A transaction must not dirty more pages than
// the page cache holds (sqliteParams' cache_size), or SQLite spills them
// to the WAL before the commit and writes many of them again. The table's
// pages fill in order; an index of a column with few values, or of time,
// dirties a few pages; an index of random keys (a unique request ID, a
// resource among millions, an actor among thousands) dirties a page per
// entry until the batch covers all of its leaves.
const (
	capBudgetPages   = 14336 // 56 MiB of 4 KiB pages: 7/8 of the cache
	capRowsPerPage   = 6     // table rows of ~600 bytes
	capKeysPerLeaf   = 61    // index entries of ~50 bytes, pages 3/4 full
	capRandomIndexes = 3
)

// batchCap is the most entries a grown batch takes when the log holds
// about size entries: maxGrownBatch halved until the model's dirty pages
// fit the budget: 32768 up to about 150,000 entries, 16384 at 200,000,
// 8192 at 300,000, 4096 from about 500,000 on.
func batchCap(size int64) int {
	leaves := math.Max(1, float64(size)/capKeysPerLeaf)
	k := maxGrownBatch
	for ; k > DefaultBatchSize; k /= 2 {
		random := capRandomIndexes * leaves * (1 - math.Exp(-float64(k)/leaves))
		if random+float64(k)/capRowsPerPage <= capBudgetPages {
			break
		}
	}
	return k
}
