package audit

import (
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"strings"
	"testing"

	"github.com/cleveragents/audit/internal/testutil"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// keyedHash computes the redacted form of a value's canonical JSON
// independently of the code under test.
func keyedHash(key []byte, canonicalJSON string) string {
	m := hmac.New(sha256.New, key)
	m.Write([]byte(canonicalJSON))
	return "hmac-sha256:" + hex.EncodeToString(m.Sum(nil))
}

// recordAndGet records e, waits for the commit and reads it back.
func recordAndGet(tb testing.TB, s *AuditService, e Entry) Entry {
	tb.Helper()
	ctx := context.Background()
	recordAll(tb, s, e)
	got, err := s.List(ctx, Filter{Desc: true, Limit: 1})
	require.NoError(tb, err)
	require.Len(tb, got, 1)
	return got[0]
}

// withDetails returns a sample entry with the given Details.
func withDetails(d map[string]any) Entry {
	e := sampleEntry(1)
	e.Details = d
	return e
}

func TestRedactKeys(t *testing.T) {
	key := []byte("redaction key")

	t.Run("values at any depth, in maps and arrays of objects", func(t *testing.T) {
		s, _ := newService(t, WithRedactKeys(key, "password", "token"))
		got := recordAndGet(t, s, withDetails(map[string]any{
			"password": "top",
			"user": map[string]any{
				"name":        "alice",
				"credentials": map[string]any{"password": "nested", "hint": "pet"},
			},
			"sessions": []any{
				map[string]any{"token": "t1", "id": 1},
				map[string]any{"token": "t2", "id": 2},
				"plain string",
			},
			"matrix": []any{[]any{map[string]any{"token": "deep"}}},
			"count":  3,
		}))
		assert.Equal(t, map[string]any{
			"password": keyedHash(key, `"top"`),
			"user": map[string]any{
				"name":        "alice",
				"credentials": map[string]any{"password": keyedHash(key, `"nested"`), "hint": "pet"},
			},
			"sessions": []any{
				map[string]any{"token": keyedHash(key, `"t1"`), "id": float64(1)},
				map[string]any{"token": keyedHash(key, `"t2"`), "id": float64(2)},
				"plain string",
			},
			"matrix": []any{[]any{map[string]any{"token": keyedHash(key, `"deep"`)}}},
			"count":  float64(3),
		}, got.Details)
	})

	t.Run("keys match case-insensitively and exactly", func(t *testing.T) {
		s, _ := newService(t, WithRedactKeys(key, "Password", "API_KEY"))
		got := recordAndGet(t, s, withDetails(map[string]any{
			"password":  "a",
			"PASSWORD":  "b",
			"PassWord":  "c",
			"api_key":   "d",
			"Api_Key":   "e",
			"passwords": "not a match",
			"pass":      "not a match",
			"x": map[string]any{
				"API_KEY": "f",
			},
		}))
		for k, v := range map[string]string{"password": "a", "PASSWORD": "b", "PassWord": "c", "api_key": "d", "Api_Key": "e"} {
			assert.Equal(t, keyedHash(key, `"`+v+`"`), got.Details[k], k)
		}
		assert.Equal(t, "not a match", got.Details["passwords"])
		assert.Equal(t, "not a match", got.Details["pass"])
		assert.Equal(t, keyedHash(key, `"f"`), got.Details["x"].(map[string]any)["API_KEY"])
	})

	t.Run("an object or array value is redacted whole", func(t *testing.T) {
		s, _ := newService(t, WithRedactKeys(key, "secret"))
		got := recordAndGet(t, s, withDetails(map[string]any{
			"secret": map[string]any{"password": "inner", "n": 1.5},
			"list":   []any{map[string]any{"secret": []any{"a", 2, true, nil}}},
		}))
		assert.Equal(t, keyedHash(key, `{"n":1.5,"password":"inner"}`), got.Details["secret"])
		assert.Equal(t, keyedHash(key, `["a",2,true,null]`), got.Details["list"].([]any)[0].(map[string]any)["secret"])
	})

	t.Run("the canonical JSON of the value is hashed", func(t *testing.T) {
		s, _ := newService(t, WithRedactKeys(key, "password"))
		want := keyedHash(key, `{"a":2,"b":1}`)
		for _, v := range []any{
			json.RawMessage(`{"b":1,"a":2}`),
			json.RawMessage(`{"a":2,"b":1}`),
			json.RawMessage(` { "b" : 1 ,
				"a" : 2 } `),
			map[string]any{"b": 1, "a": 2},
			map[string]int{"a": 2, "b": 1},
			struct {
				B int `json:"b"`
				A int `json:"a"`
			}{1, 2},
		} {
			got := recordAndGet(t, s, withDetails(map[string]any{"password": v}))
			assert.Equal(t, want, got.Details["password"], "%#v", v)
		}
	})

	t.Run("equal numbers of different Go types hash equally", func(t *testing.T) {
		s, _ := newService(t, WithRedactKeys(key, "pin"))
		want := keyedHash(key, `100`)
		for _, v := range []any{100, int64(100), uint8(100), float64(100), float32(100)} {
			got := recordAndGet(t, s, withDetails(map[string]any{"pin": v}))
			assert.Equal(t, want, got.Details["pin"], "%T", v)
		}
	})

	t.Run("the caller's Details are left alone", func(t *testing.T) {
		s, _ := newService(t, WithRedactKeys(key, "password"))
		inner := map[string]any{"password": "nested"}
		d := map[string]any{"password": "top", "inner": inner}
		recordAndGet(t, s, withDetails(d))
		assert.Equal(t, "top", d["password"])
		assert.Equal(t, "nested", inner["password"])
	})

	t.Run("equal secrets give equal hashes, other keys other hashes", func(t *testing.T) {
		s1, _ := newService(t, WithRedactKeys(key, "password"))
		s2, _ := newService(t, WithRedactKeys([]byte("another key"), "password"))
		a := recordAndGet(t, s1, withDetails(map[string]any{"password": "hunter2", "who": "a"}))
		b := recordAndGet(t, s1, withDetails(map[string]any{"password": "hunter2", "who": "b"}))
		c := recordAndGet(t, s1, withDetails(map[string]any{"password": "hunter3"}))
		d := recordAndGet(t, s2, withDetails(map[string]any{"password": "hunter2"}))
		assert.Equal(t, a.Details["password"], b.Details["password"], "correlatable")
		assert.NotEqual(t, a.Details["password"], c.Details["password"])
		assert.NotEqual(t, a.Details["password"], d.Details["password"], "keyed")
		assert.Equal(t, keyedHash([]byte("another key"), `"hunter2"`), d.Details["password"])
	})

	t.Run("the redacted form is hmac-sha256 and 64 hex digits", func(t *testing.T) {
		s, _ := newService(t, WithRedactKeys(key, "password"))
		for _, v := range []any{"x", "", 0, 12345678901234567, -1.25, true, nil, []any{}, map[string]any{}} {
			got := recordAndGet(t, s, withDetails(map[string]any{"password": v}))
			h, ok := got.Details["password"].(string)
			require.True(t, ok, "%#v", v)
			assert.Regexp(t, `^hmac-sha256:[0-9a-f]{64}$`, h, "%#v", v)
			canon, err := json.Marshal(v)
			require.NoError(t, err)
			assert.Equal(t, keyedHash(key, string(canon)), h, "%#v", v)
		}
	})

	t.Run("redacted before storage and hashing: the secret is never stored and the chain verifies", func(t *testing.T) {
		s, path := newService(t, WithRedactKeys(key, "password"))
		ctx := context.Background()
		for i := range 5 {
			e := sampleEntry(i)
			e.Details["password"] = "TOPSECRET-" + strings.Repeat("x", i)
			require.NoError(t, s.Record(ctx, e))
		}
		require.NoError(t, s.Flush(ctx))
		rep, err := s.Verify(ctx)
		require.NoError(t, err)
		assert.Equal(t, int64(5), rep.Entries)

		var n int
		require.NoError(t, testutil.RawDB(t, path).QueryRow(
			`SELECT COUNT(*) FROM audit_entries WHERE details LIKE '%TOPSECRET%'`).Scan(&n))
		assert.Zero(t, n, "no stored row holds the secret")
		var stored string
		require.NoError(t, testutil.RawDB(t, path).QueryRow(`SELECT details FROM audit_entries WHERE id = 1`).Scan(&stored))
		assert.Contains(t, stored, keyedHash(key, `"TOPSECRET-"`))
	})

	t.Run("without the option nothing is redacted", func(t *testing.T) {
		s, _ := newService(t)
		got := recordAndGet(t, s, withDetails(map[string]any{"password": "visible"}))
		assert.Equal(t, "visible", got.Details["password"])
	})

	t.Run("invalid options name WithRedactKeys", func(t *testing.T) {
		for name, opt := range map[string]Option{
			"nil key":   WithRedactKeys(nil, "password"),
			"empty key": WithRedactKeys([]byte{}, "password"),
			"no keys":   WithRedactKeys(key),
		} {
			_, err := New(WithSQLite(testutil.TempDB(t)), opt)
			require.Error(t, err, name)
			assert.Contains(t, err.Error(), "WithRedactKeys", name)
		}
	})
}
