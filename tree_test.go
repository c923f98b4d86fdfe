package audit

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"math/big"
	"testing"

	"github.com/stretchr/testify/require"
	"golang.org/x/mod/sumdb/tlog"
)

// refTree is the reference: tlog's own stored hashes, in memory.
type refTree struct{ hashes []tlog.Hash }

func (r *refTree) ReadHashes(idx []int64) ([]tlog.Hash, error) {
	out := make([]tlog.Hash, len(idx))
	for i, x := range idx {
		out[i] = r.hashes[x]
	}
	return out, nil
}

func (r *refTree) add(tb testing.TB, n int64, lh tlog.Hash) {
	hs, err := tlog.StoredHashesForRecordHash(n, lh, r)
	require.NoError(tb, err)
	r.hashes = append(r.hashes, hs...)
}

// leafOf is the leaf hash of the i-th test entry: a Hash of its own.
func leafOf(i int64) tlog.Hash {
	sum := sha256.Sum256([]byte{byte(i), byte(i >> 8), byte(i >> 16), byte(i >> 24)})
	lh, _ := leafHash(hex.EncodeToString(sum[:]))
	return lh
}

// memEdgeAppend appends leaves to the tree in m through a treeEdge loaded
// from m, as the writer does for one batch.
func memEdgeAppend(tb testing.TB, m memTiles, size int64, leaves []tlog.Hash) {
	e, err := loadEdge(context.Background(), m, size)
	require.NoError(tb, err)
	for _, lh := range leaves {
		e.append(lh)
	}
	keys, data := e.changed()
	for i, k := range keys {
		m[k] = data[i]
	}
}

func TestTreeRootsEqualTlogEverySize(t *testing.T) {
	ctx := context.Background()
	m := memTiles{}
	ref := &refTree{}
	const n = 2000
	batch := []int64{1, 3, 16, 17, 5, 255, 256, 1, 2}
	size := int64(0)
	for b := 0; size < n; b++ {
		k := min(batch[b%len(batch)], n-size)
		var leaves []tlog.Hash
		for i := size; i < size+k; i++ {
			leaves = append(leaves, leafOf(i))
			ref.add(t, i, leafOf(i))
		}
		memEdgeAppend(t, m, size, leaves)
		size += k
	}
	for s := int64(1); s <= n; s++ {
		want, err := tlog.TreeHash(s, ref)
		require.NoError(t, err)
		got, err := tlog.TreeHash(s, hashReader{ctx, m})
		require.NoError(t, err, "size %d", s)
		require.Equal(t, want, got, "root of size %d", s)
		fr, err := frontier(ctx, m, s)
		require.NoError(t, err)
		require.Equal(t, want, fr.root(), "frontier of size %d", s)
	}
	// Proofs from the tiles verify with tlog's checks.
	for _, s := range []int64{1, 2, 15, 16, 17, 100, 256, 257, 1999, 2000} {
		root, _ := tlog.TreeHash(s, ref)
		for _, i := range []int64{0, s / 2, s - 1} {
			p, err := tlog.ProveRecord(s, i, hashReader{ctx, m})
			require.NoError(t, err)
			require.NoError(t, tlog.CheckRecord(p, s, root, i, leafOf(i)), "leaf %d of %d", i, s)
			require.Error(t, tlog.CheckRecord(p, s, root, i, leafOf(i+1)))
		}
		for _, old := range []int64{1, s / 3, s} {
			if old < 1 {
				continue
			}
			oldRoot, _ := tlog.TreeHash(old, ref)
			p, err := tlog.ProveTree(s, old, hashReader{ctx, m})
			require.NoError(t, err)
			require.NoError(t, tlog.CheckTree(p, s, root, old, oldRoot), "%d -> %d", old, s)
		}
	}
}

func TestTreeRootsRandomSizesToAMillion(t *testing.T) {
	if testing.Short() {
		t.Skip("a million leaves: not in -short")
	}
	ctx := context.Background()
	m := memTiles{}
	ref := &refTree{}
	const n = 1_000_000
	var leaves []tlog.Hash
	for i := int64(0); i < n; i++ {
		lh := leafOf(i)
		leaves = append(leaves, lh)
		ref.add(t, i, lh)
	}
	// In batches of the writer's default size.
	for size := int64(0); size < n; size += 512 {
		memEdgeAppend(t, m, size, leaves[size:min(size+512, n)])
	}
	sizes := []int64{n, n - 1, 1 << 19, 1<<19 + 1}
	for range 50 {
		r, _ := rand.Int(rand.Reader, big.NewInt(n))
		sizes = append(sizes, r.Int64()+1)
	}
	for _, s := range sizes {
		want, err := tlog.TreeHash(s, ref)
		require.NoError(t, err)
		got, err := tlog.TreeHash(s, hashReader{ctx, m})
		require.NoError(t, err)
		require.Equal(t, want, got, "root of size %d", s)
		p, err := tlog.ProveRecord(s, s-1, hashReader{ctx, m})
		require.NoError(t, err)
		require.NoError(t, tlog.CheckRecord(p, s, want, s-1, leaves[s-1]))
	}
	// Storage: bytes of tile data per leaf.
	total := 0
	for _, d := range m {
		total += len(d)
	}
	t.Logf("tile data: %.2f bytes a leaf, %d tiles", float64(total)/n, len(m))
	require.Less(t, float64(total)/n, 35.0)
}
