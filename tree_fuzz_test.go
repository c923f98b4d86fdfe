package audit

import (
	"bytes"
	"context"
	"database/sql"
	"encoding/base64"
	"os"
	"path/filepath"
	"sync"
	"testing"

	"github.com/cleveragents/audit/internal/testutil"
	"github.com/stretchr/testify/require"
	"golang.org/x/mod/sumdb/note"
)

// tamperTemplate is a log built once per process: 40 entries under a chain
// key and a signer, with a checkpoint after 30. Each fuzz input tampers
// with a copy.
var tamperTemplate struct {
	once     sync.Once
	dir      string
	opts     []Option
	note     []byte
	verifier note.Verifier
	err      error
}

func tamperLog(t *testing.T) (path string, opts []Option, cp []byte, v note.Verifier) {
	tt := &tamperTemplate
	tt.once.Do(func() {
		dir, err := os.MkdirTemp("", "audit-tamper-")
		if err != nil {
			tt.err = err
			return
		}
		tt.dir = dir
		signer, v := testKeys(t, "audit.fuzz")
		tt.verifier = v
		tt.opts = []Option{WithSigner(signer), WithChainKey([]byte("fuzz key")), WithLogger(testutil.Discard())}
		s, err := New(append([]Option{WithSQLite(filepath.Join(dir, "audit.db"))}, tt.opts...)...)
		if err != nil {
			tt.err = err
			return
		}
		defer s.Close()
		ctx := context.Background()
		for i := range 40 {
			if err := s.Record(ctx, sampleEntry(i)); err != nil {
				tt.err = err
				return
			}
			if i == 29 {
				if err := s.Flush(ctx); err != nil {
					tt.err = err
					return
				}
				c, err := s.Checkpoint(ctx)
				if err != nil {
					tt.err = err
					return
				}
				tt.note = c.Note
			}
		}
		tt.err = s.Flush(ctx)
	})
	require.NoError(t, tt.err)
	dst := filepath.Join(t.TempDir(), "audit.db")
	data, err := os.ReadFile(filepath.Join(tt.dir, "audit.db"))
	require.NoError(t, err)
	require.NoError(t, os.WriteFile(dst, data, 0o600))
	return dst, tt.opts, append([]byte(nil), tt.note...), tt.verifier
}

// tamperColumns are the stored columns of an entry that a byte can change
// in.
var tamperColumns = []string{"time", "event_type", "actor", "resource", "outcome", "request_id", "details", "prev_hash", "hash"}

// FuzzTamperOneByte changes one byte of a stored entry, a stored tree hash
// or the checkpoint, and requires VerifyCheckpoint to fail.
func FuzzTamperOneByte(f *testing.F) {
	f.Add(uint8(0), uint16(5), uint16(3), uint8(1))
	f.Add(uint8(0), uint16(35), uint16(70), uint8(0x20))
	f.Add(uint8(1), uint16(0), uint16(0), uint8(1))
	f.Add(uint8(1), uint16(2), uint16(31), uint8(0x80))
	f.Add(uint8(2), uint16(0), uint16(10), uint8(1))
	f.Add(uint8(2), uint16(0), uint16(200), uint8(4))
	f.Fuzz(func(t *testing.T, target uint8, which, pos uint16, delta uint8) {
		if delta == 0 {
			delta = 1
		}
		path, opts, cp, v := tamperLog(t)
		db, err := sql.Open("sqlite3", path)
		require.NoError(t, err)
		defer db.Close()
		switch target % 3 {
		case 0: // an entry's column
			id := int64(which)%40 + 1
			col := tamperColumns[int(pos)%len(tamperColumns)]
			var val []byte
			require.NoError(t, db.QueryRow("SELECT CAST("+col+" AS BLOB) FROM audit_entries WHERE id = ?", id).Scan(&val))
			if len(val) == 0 {
				return
			}
			val[int(pos)/len(tamperColumns)%len(val)] ^= delta
			_, err = db.Exec("UPDATE audit_entries SET "+col+" = ? WHERE id = ?", string(val), id)
			require.NoError(t, err)
		case 1: // a tree hash, in a full tile or one not full yet
			const all = "SELECT 't' AS tab, level, n, data FROM " + TreeTileTable + " UNION ALL SELECT 'e', level, n, data FROM " + TreeEdgeTable + " WHERE LENGTH(data) > 0"
			var tiles int
			require.NoError(t, db.QueryRow("SELECT COUNT(*) FROM ("+all+")").Scan(&tiles))
			var tab string
			var level, n int64
			var data []byte
			require.NoError(t, db.QueryRow("SELECT tab, level, n, data FROM ("+all+") ORDER BY tab, level, n LIMIT 1 OFFSET ?", int(which)%tiles).Scan(&tab, &level, &n, &data))
			data[int(pos)%len(data)] ^= delta
			table := TreeTileTable
			if tab == "e" {
				table = TreeEdgeTable
			}
			_, err = db.Exec("UPDATE "+table+" SET data = ? WHERE level = ? AND n = ?", data, level, n)
			require.NoError(t, err)
		case 2: // the checkpoint
			orig := append([]byte(nil), cp...)
			cp[int(pos)%len(cp)] ^= delta
			if sameNote(orig, cp, v) {
				// The byte was in the unused low bits of the signature's
				// last base64 digit: the note says and signs the same.
				return
			}
		}
		require.NoError(t, db.Close())
		s, err := New(append([]Option{WithSQLite(path)}, opts...)...)
		require.NoError(t, err)
		defer s.Close()
		_, err = s.VerifyCheckpoint(context.Background(), cp, v)
		require.Error(t, err, "target %d which %d pos %d delta %d", target%3, which, pos, delta)
	})
}

// sameNote reports whether b opens, under v, to the same text and the same
// signature bytes as a: then a change from a to b changed no content.
func sameNote(a, b []byte, v note.Verifier) bool {
	na, err := note.Open(a, note.VerifierList(v))
	if err != nil {
		return false
	}
	nb, err := note.Open(b, note.VerifierList(v))
	if err != nil || na.Text != nb.Text || len(na.Sigs) != len(nb.Sigs) {
		return false
	}
	for i := range na.Sigs {
		sa, erra := base64.StdEncoding.DecodeString(na.Sigs[i].Base64)
		sb, errb := base64.StdEncoding.DecodeString(nb.Sigs[i].Base64)
		if erra != nil || errb != nil || !bytes.Equal(sa, sb) || na.Sigs[i].Name != nb.Sigs[i].Name || na.Sigs[i].Hash != nb.Sigs[i].Hash {
			return false
		}
	}
	return true
}
