package audit

import (
	"context"
	"crypto/rand"
	"errors"
	"os"
	"strconv"
	"testing"
	"time"

	"github.com/cleveragents/audit/internal/testutil"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"golang.org/x/mod/sumdb/note"
)

// The attacks of the verifiable-log issue, each by someone who can write
// the database but holds neither the chain key nor the signer, each after a
// checkpoint was taken and published: verification against the checkpoint
// must fail. And the legitimate changes that must pass.

const (
	attackBefore = 100 // entries when the checkpoint is taken
	attackAfter  = 20  // entries appended after it
)

// attackLog returns a log of attackBefore+attackAfter entries on st with a
// checkpoint taken after attackBefore of them, and the options that open it.
func attackLog(t *testing.T, st *backend, keyed bool) (opts []Option, checkpoint []byte, v note.Verifier) {
	t.Helper()
	signer, v := testKeys(t, "audit.test")
	opts = []Option{WithSigner(signer)}
	if keyed {
		opts = append(opts, WithChainKey([]byte("the chain key")))
	}
	s := st.service(t, opts...)
	recordN(t, s, 0, attackBefore)
	c, err := s.Checkpoint(context.Background())
	require.NoError(t, err)
	recordN(t, s, attackBefore, attackAfter)
	require.NoError(t, s.Close())
	return opts, c.Note, v
}

// verifyAll runs every verification a fresh service can do against the
// checkpoint and returns the full one's error (VerifyCheckpoint, what
// auditctl verify --checkpoint runs).
func verifyAll(t *testing.T, st *backend, opts []Option, checkpoint []byte, v note.Verifier) error {
	t.Helper()
	s := st.service(t, opts...)
	_, err := s.VerifyCheckpoint(context.Background(), checkpoint, v)
	return err
}

func TestAttacksFailAgainstACheckpoint(t *testing.T) {
	type attack struct {
		name   string
		keyed  bool
		sqlite bool // SQLite only
		do     func(t *testing.T, st *backend, opts []Option)
	}
	attacks := []attack{
		{name: "edit an entry", keyed: true, do: func(t *testing.T, st *backend, _ []Option) {
			st.exec(t, "UPDATE $TABLE SET actor = 'mallory' WHERE id = 50")
		}},
		{name: "edit an entry after the checkpoint", keyed: true, do: func(t *testing.T, st *backend, _ []Option) {
			st.exec(t, "UPDATE $TABLE SET actor = 'mallory' WHERE id = 110")
		}},
		{name: "insert one", keyed: true, do: func(t *testing.T, st *backend, _ []Option) {
			st.exec(t, "INSERT INTO $TABLE (id, time, event_type, actor, resource, outcome, request_id, details, prev_hash, hash) "+
				"SELECT 1000, time, event_type, 'mallory', resource, outcome, request_id, details, prev_hash, hash FROM $TABLE WHERE id = 50")
		}},
		{name: "delete one from the middle", keyed: true, do: func(t *testing.T, st *backend, _ []Option) {
			st.exec(t, "DELETE FROM $TABLE WHERE id = 60")
		}},
		{name: "cut the oldest, head row edited", keyed: true, do: func(t *testing.T, st *backend, _ []Option) {
			st.exec(t, "DELETE FROM $TABLE WHERE id <= 10")
			st.exec(t, "UPDATE "+ChainTable+" SET pruned_id = 10, pruned_hash = (SELECT prev_hash FROM $TABLE WHERE id = 11) WHERE $HEAD")
		}},
		{name: "cut the oldest, head row edited, no key", do: func(t *testing.T, st *backend, _ []Option) {
			st.exec(t, "DELETE FROM $TABLE WHERE id <= 10")
			st.exec(t, "UPDATE "+ChainTable+" SET pruned_id = 10, pruned_hash = (SELECT prev_hash FROM $TABLE WHERE id = 11) WHERE $HEAD")
		}},
		{name: "cut the oldest, head row dropped", keyed: true, do: func(t *testing.T, st *backend, _ []Option) {
			st.exec(t, "DELETE FROM $TABLE WHERE id <= 10")
			st.exec(t, "DELETE FROM "+ChainTable+" WHERE $HEAD")
		}},
		{name: "cut the oldest, both head rows dropped", keyed: true, do: func(t *testing.T, st *backend, _ []Option) {
			st.exec(t, "DELETE FROM $TABLE WHERE id <= 10")
			st.exec(t, "DELETE FROM "+ChainTable+" WHERE $HEAD")
			st.exec(t, "DELETE FROM "+TreeHeadTable+" WHERE $HEAD")
			st.exec(t, "DELETE FROM "+TreeTileTable+" WHERE $HEAD")
			st.exec(t, "DELETE FROM "+TreeEdgeTable+" WHERE $HEAD")
		}},
		{name: "truncate the newest, head rewritten", keyed: true, do: func(t *testing.T, st *backend, _ []Option) {
			st.exec(t, "DELETE FROM $TABLE WHERE id > 90")
			st.exec(t, "UPDATE "+ChainTable+" SET last_id = 90, last_hash = (SELECT hash FROM $TABLE WHERE id = 90) WHERE $HEAD")
		}},
		{name: "truncate the newest, head and tree size rewritten", keyed: true, do: func(t *testing.T, st *backend, _ []Option) {
			st.exec(t, "DELETE FROM $TABLE WHERE id > 90")
			st.exec(t, "UPDATE "+ChainTable+" SET last_id = 90, last_hash = (SELECT hash FROM $TABLE WHERE id = 90) WHERE $HEAD")
			st.exec(t, "UPDATE "+TreeHeadTable+" SET size = 90 WHERE $HEAD")
		}},
		{name: "replace the file with another log of the same size", keyed: true, sqlite: true, do: func(t *testing.T, st *backend, opts []Option) {
			other := freshSQLite(t)
			s := other.service(t, opts...)
			recordN(t, s, 5000, attackBefore+attackAfter)
			require.NoError(t, s.Close())
			data, err := os.ReadFile(other.path)
			require.NoError(t, err)
			for _, suffix := range []string{"-wal", "-shm"} {
				_ = os.Remove(st.path + suffix)
			}
			require.NoError(t, os.WriteFile(st.path, data, 0o644))
		}},
		{name: "rewrite the chain and rebuild the tree for forged content", do: func(t *testing.T, st *backend, _ []Option) {
			forgeFrom(t, st, 50)
			st.exec(t, "DELETE FROM "+TreeHeadTable+" WHERE $HEAD")
			st.exec(t, "DELETE FROM "+TreeTileTable+" WHERE $HEAD")
			st.exec(t, "DELETE FROM "+TreeEdgeTable+" WHERE $HEAD")
			// A service opening it builds a tree consistent with the forgery.
			s := st.service(t)
			_, err := s.Verify(context.Background())
			require.NoError(t, err, "the forgery is consistent: only the checkpoint catches it")
			require.NoError(t, s.Close())
		}},
		// Without a chain key, entries after the last checkpoint can be
		// rewritten undetected (the README says so); under a key they cannot.
		{name: "rewrite the newest entries and their tree tiles, keyed log", keyed: true, do: func(t *testing.T, st *backend, _ []Option) {
			forgeFrom(t, st, 110) // after the checkpoint: rewrite the leaves too
			s := st.service(t)
			sess, err := s.st.session(context.Background())
			require.NoError(t, err)
			tx, err := sess.sqlDB.Begin()
			require.NoError(t, err)
			e, err := loadEdge(context.Background(), dbTiles{tx, &sess.q.tree, 0}, 109)
			require.NoError(t, err)
			for _, h := range hashesFrom(t, st, 110) {
				lh, _ := leafHash(h)
				e.append(lh)
			}
			require.NoError(t, writeEdge(context.Background(), tx, &sess.q.tree, e))
			require.NoError(t, tx.Commit())
			require.NoError(t, s.Close())
		}},
	}
	forEachBackend(t, func(t *testing.T, st0 *backend) {
		for _, a := range attacks {
			t.Run(a.name, func(t *testing.T) {
				if a.sqlite && st0.kind != "sqlite" {
					t.Skip("SQLite files only")
				}
				st := freshLike(t, st0)
				opts, cp, v := attackLog(t, st, a.keyed)
				a.do(t, st, opts)
				err := verifyAll(t, st, opts, cp, v)
				require.Error(t, err)
				assert.True(t, errors.Is(err, ErrTampered) || errors.Is(err, ErrCheckpoint), "%v", err)
				t.Log(err)
			})
		}
		t.Run("a checkpoint signed by another key", func(t *testing.T) {
			st := freshLike(t, st0)
			opts, _, v := attackLog(t, st, true)
			forger, _ := note.NewSigner(mustForgedKey(t, v.Name()))
			s := st.service(t, append(opts[1:], WithSigner(forger))...)
			forged, err := s.Checkpoint(context.Background())
			require.NoError(t, err)
			_, err = s.VerifyCheckpoint(context.Background(), forged.Note, v)
			require.ErrorIs(t, err, ErrCheckpoint)
			_, err = s.VerifySince(context.Background(), forged.Note, v)
			require.ErrorIs(t, err, ErrCheckpoint)
		})
	})
}

func mustForgedKey(t *testing.T, name string) string {
	skey, _, err := note.GenerateKey(rand.Reader, name)
	require.NoError(t, err)
	return skey
}

// freshLike returns a new empty log on st's backend.
func freshLike(t *testing.T, st *backend) *backend {
	if st.kind == "sqlite" {
		return freshSQLite(t)
	}
	return freshPostgres(t)
}

// forgeFrom rewrites entry id's actor and recomputes the plain SHA-256
// chain from it to the head, as an attacker without a key can.
func forgeFrom(t *testing.T, st *backend, id int64) {
	t.Helper()
	s := st.service(t)
	sess, err := s.st.session(context.Background())
	require.NoError(t, err)
	rows, err := sess.sqlDB.Query(sess.q.verifyScan, id-1, 100000)
	require.NoError(t, err)
	type row struct {
		id int64
		r  record
	}
	var all []row
	var prev string
	for rows.Next() {
		rid, r, p, _, err := scanRow(rows)
		require.NoError(t, err)
		if len(all) == 0 {
			prev = p
			r.actor = "mallory"
		}
		all = append(all, row{rid, r})
	}
	require.NoError(t, rows.Close())
	for _, x := range all {
		h := s.chain.hash(prev, &x.r)
		_, err := sess.sqlDB.Exec("UPDATE "+sess.q.table+" SET actor = "+sess.d.ph(1)+", prev_hash = "+sess.d.ph(2)+", hash = "+sess.d.ph(3)+" WHERE id = "+sess.d.ph(4), x.r.actor, prev, h, x.id)
		require.NoError(t, err)
		prev = h
	}
	st.exec(t, "UPDATE "+ChainTable+" SET last_hash = '"+prev+"' WHERE $HEAD")
	require.NoError(t, s.Close())
}

// hashesFrom returns the Hashes of the entries from id on.
func hashesFrom(t *testing.T, st *backend, id int64) []string {
	rows, err := st.raw.Query(st.sql("SELECT hash FROM $TABLE WHERE id >= " + strconv.FormatInt(id, 10) + " ORDER BY id"))
	require.NoError(t, err)
	defer rows.Close()
	var out []string
	for rows.Next() {
		var h string
		require.NoError(t, rows.Scan(&h))
		out = append(out, h)
	}
	return out
}

func TestLegitimateChangesPassAgainstACheckpoint(t *testing.T) {
	ctx := context.Background()
	forEachBackend(t, func(t *testing.T, st0 *backend) {
		t.Run("appends", func(t *testing.T) {
			st := freshLike(t, st0)
			opts, cp, v := attackLog(t, st, true)
			s := st.service(t, opts...)
			recordN(t, s, 1000, 77)
			_, err := s.VerifySince(ctx, cp, v)
			require.NoError(t, err)
			_, err = s.VerifyCheckpoint(ctx, cp, v)
			require.NoError(t, err)
		})
		for _, keyed := range []bool{true, false} {
			t.Run("Prune keyed="+strconv.FormatBool(keyed), func(t *testing.T) {
				st := freshLike(t, st0)
				opts, cp, v := attackLog(t, st, keyed)
				s := st.service(t, opts...)
				n, err := s.Prune(ctx, sampleEntry(30).Time) // entries 1..30
				require.NoError(t, err)
				require.Equal(t, int64(30), n)
				rep, err := s.Verify(ctx)
				require.NoError(t, err)
				assert.Equal(t, int64(31), rep.FirstID)
				_, err = s.VerifyCheckpoint(ctx, cp, v)
				require.NoError(t, err)
				c2, err := s.Checkpoint(ctx)
				require.NoError(t, err)
				assert.Equal(t, int64(attackBefore+attackAfter), c2.Size, "pruning keeps the leaves")
				p, err := s.ConsistencyProof(ctx, attackBefore, c2.Size)
				require.NoError(t, err)
				old, err := ParseCheckpoint(cp, v)
				require.NoError(t, err)
				require.NoError(t, VerifyConsistency(old, c2, p))
				// Prune past the checkpoint, then append.
				_, err = s.Prune(ctx, sampleEntry(110).Time)
				require.NoError(t, err)
				recordN(t, s, 2000, 5)
				_, err = s.VerifySince(ctx, cp, v)
				require.NoError(t, err)
				_, err = s.VerifyCheckpoint(ctx, cp, v)
				require.NoError(t, err)
				_, err = s.Verify(ctx)
				require.NoError(t, err)
			})
		}
		t.Run("retention", func(t *testing.T) {
			st := freshLike(t, st0)
			opts, cp, v := attackLog(t, st, true)
			now := sampleEntry(40).Time
			s := st.service(t, append(opts, WithRetention(time.Second), WithClock(func() time.Time { return now }))...)
			testutil.WaitFor(t, 10*time.Second, func() bool {
				n, err := s.Count(ctx, Filter{})
				return err == nil && n == attackBefore+attackAfter-39
			}, "retention prunes the entries older than a second")
			_, err := s.Verify(ctx)
			require.NoError(t, err)
			_, err = s.VerifyCheckpoint(ctx, cp, v)
			require.NoError(t, err)
		})
	})
}

// TestThreeProcessesKeepOneTree: three processes write one table at once;
// the tree has no fork, its root is tlog's over the entries, and a
// checkpoint taken before still verifies.
func TestThreeProcessesKeepOneTree(t *testing.T) {
	if testing.Short() {
		t.Skip("starts processes")
	}
	forEachBackend(t, func(t *testing.T, st *backend) {
		const children, each = 3, 1000
		ctx := context.Background()
		signer, v := testKeys(t, "audit.test")
		s := st.service(t, WithSigner(signer))
		recordN(t, s, 0, 10)
		cp, err := s.Checkpoint(ctx)
		require.NoError(t, err)

		runRecordChildren(t, st, children, each)
		c2, err := s.Checkpoint(ctx)
		require.NoError(t, err)
		require.Equal(t, int64(10+children*each), c2.Size)
		assert.Equal(t, rootOf(t, leavesOf(t, s)), c2.Root)
		_, err = s.VerifyCheckpoint(ctx, cp.Note, v)
		require.NoError(t, err)
		_, err = s.VerifySince(ctx, c2.Note, v)
		require.NoError(t, err)
	})
}

// TestFileReplacementKeepsTheTree: the library continues the chain in a new
// file when the old one is deleted (watch.go), and carries the tree, so a
// checkpoint of the old file still verifies on the new one.
func TestFileReplacementKeepsTheTree(t *testing.T) {
	ctx := context.Background()
	signer, v := testKeys(t, "audit.test")
	path := testutil.TempDB(t)
	opts := []Option{WithSQLite(path), WithSigner(signer), WithChainKey([]byte("k"))}
	s := newServiceAt(t, opts...)
	recordN(t, s, 0, 40)
	cp, err := s.Checkpoint(ctx)
	require.NoError(t, err)
	require.NoError(t, os.Remove(path))
	recordN(t, s, 100, 20)
	require.Equal(t, uint64(1), s.Stats().Failures, "the replacement was seen")
	c2, err := s.Checkpoint(ctx)
	require.NoError(t, err)
	assert.Equal(t, int64(60), c2.Size)
	require.NoError(t, s.Close())

	s2 := newServiceAt(t, opts...)
	rep, err := s2.VerifyCheckpoint(ctx, cp.Note, v)
	require.NoError(t, err)
	assert.Equal(t, int64(20), rep.Entries)
	_, err = s2.VerifySince(ctx, cp.Note, v)
	require.NoError(t, err)
	p, err := s2.ConsistencyProof(ctx, cp.Size, c2.Size)
	require.NoError(t, err)
	require.NoError(t, VerifyConsistency(cp, c2, p))
	_, err = s2.Verify(ctx)
	require.NoError(t, err)
}
