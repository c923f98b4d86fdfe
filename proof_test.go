package audit

import (
	"context"
	"crypto/rand"
	"errors"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/cleveragents/audit/internal/testutil"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"golang.org/x/mod/sumdb/note"
	"golang.org/x/mod/sumdb/tlog"
)

// testKeys returns a new signer and its verifier.
func testKeys(tb testing.TB, name string) (note.Signer, note.Verifier) {
	tb.Helper()
	skey, vkey, err := note.GenerateKey(rand.Reader, name)
	require.NoError(tb, err)
	signer, err := note.NewSigner(skey)
	require.NoError(tb, err)
	verifier, err := note.NewVerifier(vkey)
	require.NoError(tb, err)
	return signer, verifier
}

// leavesOf returns the leaf hashes of all entries of s, in ID order.
func leavesOf(tb testing.TB, s *AuditService) []tlog.Hash {
	tb.Helper()
	var out []tlog.Hash
	var after int64
	for {
		page, err := s.List(context.Background(), Filter{AfterID: after, Limit: MaxListLimit})
		require.NoError(tb, err)
		if len(page) == 0 {
			return out
		}
		for _, e := range page {
			lh, err := leafHash(e.Hash)
			require.NoError(tb, err)
			out = append(out, lh)
			after = e.ID
		}
	}
}

func rootOf(tb testing.TB, leaves []tlog.Hash) tlog.Hash {
	tb.Helper()
	ref := &refTree{}
	for i, lh := range leaves {
		ref.add(tb, int64(i), lh)
	}
	h, err := tlog.TreeHash(int64(len(leaves)), ref)
	require.NoError(tb, err)
	return h
}

func TestTreeFollowsTheChain(t *testing.T) {
	forEachBackend(t, func(t *testing.T, st *backend) {
		ctx := context.Background()
		signer, verifier := testKeys(t, "audit.test")
		s := st.service(t, WithSigner(signer), WithBatchSize(37))
		recordN(t, s, 0, 1)
		c1, err := s.Checkpoint(ctx)
		require.NoError(t, err)
		assert.Equal(t, int64(1), c1.Size)
		recordN(t, s, 1, 300)
		c2, err := s.Checkpoint(ctx)
		require.NoError(t, err)

		leaves := leavesOf(t, s)
		require.Len(t, leaves, 301)
		assert.Equal(t, rootOf(t, leaves), c2.Root, "the tree's root is tlog's over the entries' Hashes")
		assert.Equal(t, "audit.test/"+st.table, c2.Origin)

		parsed, err := ParseCheckpoint(c2.Note, verifier)
		require.NoError(t, err)
		assert.Equal(t, c2.Size, parsed.Size)
		assert.Equal(t, c2.Root, parsed.Root)

		for _, id := range []int64{1, 2, 150, 300, 301} {
			p, err := s.InclusionProof(ctx, id, c2.Size)
			require.NoError(t, err)
			require.NoError(t, VerifyInclusion(p, c2), "entry %d", id)
			require.NoError(t, tlog.CheckRecord(p.Proof, c2.Size, c2.Root, id-1, leaves[id-1]))
			p.Hash = leavesHex(t, s, id%301+1)
			require.ErrorIs(t, VerifyInclusion(p, c2), ErrProof)
		}
		r, err := s.Receipt(ctx, 42, c2.Note)
		require.NoError(t, err)
		require.NoError(t, VerifyReceipt(r, verifier))
		r.Entry.ID = 43
		require.ErrorIs(t, VerifyReceipt(r, verifier), ErrProof)

		cp, err := s.ConsistencyProof(ctx, c1.Size, c2.Size)
		require.NoError(t, err)
		require.NoError(t, VerifyConsistency(c1, c2, cp))
		require.NoError(t, tlog.CheckTree(cp, c2.Size, c2.Root, c1.Size, c1.Root))
		bad := c1
		bad.Root[0] ^= 1
		require.ErrorIs(t, VerifyConsistency(bad, c2, cp), ErrProof)

		recordN(t, s, 301, 50)
		rep, err := s.VerifySince(ctx, c2.Note, verifier)
		require.NoError(t, err)
		assert.Equal(t, int64(50), rep.Entries, "only the entries after the checkpoint are read")
		rep, err = s.VerifyCheckpoint(ctx, c2.Note, verifier)
		require.NoError(t, err)
		assert.Equal(t, int64(351), rep.Entries)
		_, err = s.Verify(ctx)
		require.NoError(t, err)

		_, other := testKeys(t, "audit.test")
		_, err = s.VerifySince(ctx, c2.Note, other)
		require.ErrorIs(t, err, ErrCheckpoint, "a checkpoint signed by another key")
	})
}

func leavesHex(tb testing.TB, s *AuditService, id int64) string {
	tb.Helper()
	e, err := s.Get(context.Background(), id)
	require.NoError(tb, err)
	return e.Hash
}

func TestTreeBuiltForAnOlderLog(t *testing.T) {
	forEachBackend(t, func(t *testing.T, st *backend) {
		ctx := context.Background()
		s := st.service(t)
		recordN(t, s, 0, treeBuildChunk+123)
		require.NoError(t, s.Close())
		// As the log was before the tree existed.
		st.exec(t, "DELETE FROM "+TreeTileTable+" WHERE $HEAD")
		st.exec(t, "DELETE FROM "+TreeEdgeTable+" WHERE $HEAD")
		st.exec(t, "DELETE FROM "+TreeHeadTable+" WHERE $HEAD")

		signer, verifier := testKeys(t, "audit.test")
		s2 := st.service(t, WithSigner(signer))
		c, err := s2.Checkpoint(ctx)
		require.NoError(t, err)
		assert.Equal(t, int64(treeBuildChunk+123), c.Size)
		assert.Equal(t, rootOf(t, leavesOf(t, s2)), c.Root)
		_, err = s2.VerifyCheckpoint(ctx, c.Note, verifier)
		require.NoError(t, err)
	})
}

func TestKeyMismatchRefusesToWrite(t *testing.T) {
	ctx := context.Background()
	for _, tc := range []struct {
		name       string
		created    []Option
		opened     []Option
		wantInText string
	}{
		{"no key on a keyed log", []Option{WithChainKey([]byte("k1"))}, nil, "this service has no chain key"},
		{"another key", []Option{WithChainKey([]byte("k1"))}, []Option{WithChainKey([]byte("k2"))}, "created under the chain key with fingerprint"},
		{"a key on a plain log", nil, []Option{WithChainKey([]byte("k1"))}, "created without a chain key"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			st := freshSQLite(t)
			s := st.service(t, tc.created...)
			recordN(t, s, 0, 3)
			require.NoError(t, s.Close())

			sync := st.service(t, append(tc.opened, WithAsync(false))...)
			err := sync.Record(ctx, sampleEntry(3))
			require.ErrorIs(t, err, ErrKeyMismatch)
			assert.Contains(t, err.Error(), tc.wantInText)
			assert.Equal(t, 1, sync.Stats().Queued, "the entry stays queued")
			err = sync.Flush(ctx)
			require.ErrorIs(t, err, ErrKeyMismatch)
			n, err := sync.Count(ctx, Filter{})
			require.NoError(t, err)
			assert.Equal(t, int64(3), n, "nothing was written")
			shut, cancel := context.WithTimeout(ctx, 100*time.Millisecond)
			defer cancel()
			_ = sync.Shutdown(shut)
		})
	}
	t.Run("the same key writes", func(t *testing.T) {
		st := freshSQLite(t)
		s := st.service(t, WithChainKey([]byte("k1")))
		recordN(t, s, 0, 3)
		require.NoError(t, s.Close())
		s2 := st.service(t, WithChainKey([]byte("k1")), WithAsync(false))
		require.NoError(t, s2.Record(ctx, sampleEntry(3)))
		_, err := s2.Verify(ctx)
		require.NoError(t, err)
	})
}

func TestFileSinkAppendsCheckpoints(t *testing.T) {
	signer, verifier := testKeys(t, "audit.test")
	path := filepath.Join(t.TempDir(), "checkpoints")
	s, _ := newService(t, WithSigner(signer), WithCheckpointSink(NewFileSink(path)), WithCheckpointEvery(10, time.Hour))
	for round := range 3 {
		recordN(t, s, round*10, 10)
		testutil.WaitFor(t, 10*time.Second, func() bool {
			data, _ := os.ReadFile(path)
			return len(SplitCheckpoints(data)) == round+1
		}, "a checkpoint after every 10 entries")
	}
	require.NoError(t, s.Close())
	data, err := os.ReadFile(path)
	require.NoError(t, err)
	notes := SplitCheckpoints(data)
	require.Len(t, notes, 3, "no checkpoint at Shutdown: the tree did not grow")
	var prev Checkpoint
	for i, n := range notes {
		c, err := ParseCheckpoint(n, verifier)
		require.NoError(t, err, "note %d", i)
		assert.Equal(t, int64(10*(i+1)), c.Size)
		if i > 0 {
			assert.Greater(t, c.Size, prev.Size)
		}
		prev = c
	}
}

func TestOptionsOfTheTree(t *testing.T) {
	signer, _ := testKeys(t, "audit.test")
	for _, tc := range []struct {
		opts []Option
		want string
	}{
		{[]Option{WithSigner(nil)}, "WithSigner"},
		{[]Option{WithCheckpointSink(NewFileSink("x"))}, "WithCheckpointSink: needs WithSigner"},
		{[]Option{WithSigner(signer), WithCheckpointEvery(0, time.Second)}, "WithCheckpointEvery"},
	} {
		_, err := New(tc.opts...)
		require.Error(t, err)
		assert.Contains(t, err.Error(), tc.want)
	}
	s, _ := newService(t)
	_, err := s.Checkpoint(context.Background())
	require.Error(t, err)
	assert.Contains(t, err.Error(), "WithSigner")
	assert.False(t, errors.Is(err, ErrTampered))
}
