package audit

import (
	"bytes"
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"fmt"
	"hash"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestVerifyDetectsTampering(t *testing.T) {
	tamper := []struct {
		name string
		sql  string
		id   int64 // the first bad ID Verify must name
	}{
		{"altered actor", `UPDATE $TABLE SET actor = 'mallory' WHERE id = 5`, 5},
		{"altered time", `UPDATE $TABLE SET time = '2020-01-01T00:00:00.000000000Z' WHERE id = 7`, 7},
		{"altered details", `UPDATE $TABLE SET details = '{"i":1}' WHERE id = 3`, 3},
		{"details removed", `UPDATE $TABLE SET details = NULL WHERE id = 4`, 4},
		{"altered hash", `UPDATE $TABLE SET hash = '` + strings.Repeat("0", 64) + `' WHERE id = 6`, 6},
		{"removed from the middle", `DELETE FROM $TABLE WHERE id = 6`, 7},
		{"removed from the start", `DELETE FROM $TABLE WHERE id <= 2`, 3},
		{"removed at the end", `DELETE FROM $TABLE WHERE id = 10`, 10},
		{"inserted", `INSERT INTO $TABLE (id, time, event_type, actor, prev_hash, hash)
			SELECT 11, time, event_type, actor, hash, hash FROM $TABLE WHERE id = 10`, 11},
	}
	for _, tt := range tamper {
		t.Run(tt.name, func(t *testing.T) {
			forEachBackend(t, func(t *testing.T, st *backend) {
				ctx := context.Background()
				s := st.service(t)
				recordN(t, s, 0, 10)
				_, err := s.Verify(ctx)
				require.NoError(t, err)

				st.exec(t, tt.sql)
				_, err = s.Verify(ctx)
				require.ErrorIs(t, err, ErrTampered)
				assert.Contains(t, err.Error(), fmt.Sprintf("at ID %d:", tt.id))
			})
		})
	}
}

func TestVerifyTruncationCaughtAgainstPublishedHead(t *testing.T) {
	forEachBackend(t, func(t *testing.T, st *backend) {
		ctx := context.Background()
		s := st.service(t)
		recordN(t, s, 0, 10)
		published, err := s.Verify(ctx)
		require.NoError(t, err)

		// A careful attacker removes the newest entries and rewinds the head.
		st.exec(t, `DELETE FROM $TABLE WHERE id > 8`)
		st.exec(t, `UPDATE audit_chain_heads SET last_id = 8, last_hash = (SELECT hash FROM $TABLE WHERE id = 8) WHERE $HEAD`)
		_, err = s.Verify(ctx)
		require.ErrorIs(t, err, ErrTampered, "the Merkle tree still counts the removed entries")
		// A more careful one rewinds the tree's size too.
		st.exec(t, `UPDATE `+TreeHeadTable+` SET size = 8 WHERE $HEAD`)
		rep, err := s.Verify(ctx)
		require.NoError(t, err, "consistent on its own")
		assert.NotEqual(t, published.Head, rep.Head, "but its head differs from the one published")
		assert.Equal(t, int64(8), rep.LastID)
	})
}

func TestChainKey(t *testing.T) {
	forEachBackend(t, func(t *testing.T, st *backend) {
		ctx := context.Background()
		s, err := New(append(st.opts(), WithChainKey([]byte("key one")))...)
		require.NoError(t, err)
		recordN(t, s, 0, 3)
		rep, err := s.Verify(ctx)
		require.NoError(t, err)
		require.NoError(t, s.Close())

		// The same content under plain SHA-256 hashes differently.
		plain := st.sibling(t).service(t)
		recordN(t, plain, 0, 3)
		prep, err := plain.Verify(ctx)
		require.NoError(t, err)
		assert.NotEqual(t, prep.Head, rep.Head)

		for name, opts := range map[string][]Option{
			"other key": {WithChainKey([]byte("key two"))},
			"no key":    nil,
		} {
			t.Run(name, func(t *testing.T) {
				v := st.service(t, opts...)
				_, err := v.Verify(ctx)
				require.ErrorIs(t, err, ErrTampered)
				assert.Contains(t, err.Error(), "at ID 1:")
			})
		}
		same := st.service(t, WithChainKey([]byte("key one")))
		again, err := same.Verify(ctx)
		require.NoError(t, err)
		assert.Equal(t, rep, again)
	})
}

func TestTwoTablesOneDatabaseKeepSeparateChains(t *testing.T) {
	forEachBackend(t, func(t *testing.T, st *backend) {
		ctx := context.Background()
		a := st.service(t)
		b := st.sibling(t).service(t)
		for i := 0; i < 5; i++ {
			require.NoError(t, a.Record(ctx, sampleEntry(i)))
			require.NoError(t, b.Record(ctx, sampleEntry(i)))
		}
		require.NoError(t, a.Flush(ctx))
		require.NoError(t, b.Flush(ctx))
		for _, s := range []*AuditService{a, b} {
			rep, err := s.Verify(ctx)
			require.NoError(t, err)
			assert.Equal(t, VerifyReport{Entries: 5, FirstID: 1, LastID: 5, Head: rep.Head}, rep)
		}
	})
}

// TestPerfHashMatchesReference pins the optimised hasher to the encoding
// it replaced, computed here with crypto/hmac and a streaming hash.Hash:
// plain and keyed (keys shorter than, as long as and longer than SHA-256's
// block), Details absent and bigger than the hasher's stack buffer.
func TestPerfHashMatchesReference(t *testing.T) {
	reference := func(key []byte, prev string, r *record) string {
		var m hash.Hash
		if key != nil {
			m = hmac.New(sha256.New, key)
		} else {
			m = sha256.New()
		}
		field := func(s []byte) {
			m.Write(binary.AppendUvarint(nil, uint64(len(s))))
			m.Write(s)
		}
		m.Write([]byte("audit.v1\x00"))
		for _, f := range []string{prev, r.time, r.eventType, r.actor, r.resource, r.outcome, r.requestID} {
			field([]byte(f))
		}
		if r.details == nil {
			m.Write([]byte{0})
		} else {
			m.Write([]byte{1})
			field(r.details)
		}
		return hex.EncodeToString(m.Sum(nil))
	}
	records := []*record{
		{time: "2026-01-01T00:00:00.000000000Z", eventType: "user.login", actor: "alice"},
		{time: "9999-12-31T23:59:59.999999999Z", eventType: "é", actor: strings.Repeat("a", 256), resource: "r",
			outcome: "denied", requestID: "req", details: []byte(`{"a":1}`)},
		{time: "0001-01-01T00:00:00.000000000Z", eventType: "big", actor: "bob",
			details: []byte(`{"x":"` + strings.Repeat("x", 70000) + `"}`)},
	}
	prevs := []string{"", perfHashText}
	keys := [][]byte{nil, []byte("k"), bytes.Repeat([]byte{7}, sha256.BlockSize), bytes.Repeat([]byte{9}, 200)}
	for _, key := range keys {
		for _, r := range records {
			for _, prev := range prevs {
				require.Equal(t, reference(key, prev, r), hasher{key: key}.hash(prev, r), "key of %d bytes", len(key))
			}
		}
	}
	r := records[0]
	allocs := testing.AllocsPerRun(100, func() { _ = hasher{key: []byte("k")}.hash(perfHashText, r) })
	require.LessOrEqual(t, allocs, 1.0, "hash allocates only its result")
}
