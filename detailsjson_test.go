package audit

import (
	"encoding/binary"
	"encoding/json"
	"math"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// checkDetailsJSON asserts that marshalJSON(d) is json.Marshal(d): the
// same bytes, or an error where json.Marshal has one. It returns whether
// the fast path (appendDetails) wrote it.
func checkDetailsJSON(t testing.TB, d map[string]any) bool {
	t.Helper()
	want, wantErr := json.Marshal(d)
	got, err := marshalJSON(d)
	if wantErr != nil {
		require.Error(t, err, "json.Marshal refuses %#v", d)
		assert.Equal(t, wantErr.Error(), err.Error())
	} else {
		require.NoError(t, err, "%#v", d)
		require.Equal(t, string(want), string(got), "%#v", d)
	}
	fast, ok := appendDetails(nil, d)
	if ok {
		require.NoError(t, wantErr, "the fast path wrote %q where json.Marshal refuses %#v", fast, d)
		require.Equal(t, string(want), string(fast), "%#v", d)
	}
	return ok
}

type namedString string

type jsonStruct struct {
	B int `json:"b"`
	A int `json:"a"`
}

type marshaler struct{}

func (marshaler) MarshalJSON() ([]byte, error) { return []byte(` { "z" : 1 , "a":"<"} `), nil }

func TestDetailsJSONMatchesMarshal(t *testing.T) {
	nested := map[string]any{"x": 1}
	for i := 0; i < fastJSONDepth+3; i++ {
		nested = map[string]any{"n": nested, "l": []any{i}}
	}
	big := map[string]any{}
	for i := 0; i < 40; i++ { // more keys than the fast path's stack array
		big[strings.Repeat("k", i%7)+string(rune('a'+i%26))+string(rune('0'+i/26))] = i
	}
	cases := []struct {
		name string
		d    map[string]any
		fast bool // the fast path writes it
	}{
		{"realistic", realEntries(7, 1)[0].Details, true},
		{"sorted keys", map[string]any{"b": 1, "a": 2, "B": 3, "": 4, "ä": 5, "a\x00": 6}, true},
		{"many keys", big, true},
		{"html and quotes", map[string]any{"<k>": `a<b>c&d"e\f`, "&": "</script>"}, true},
		{"control characters", map[string]any{"c": "\x00\x01\b\f\n\r\t\x1f\x7f"}, true},
		{"line separators", map[string]any{"s": "a\u2028b\u2029c\u2027"}, true},
		{"invalid utf-8", map[string]any{"s": "a\xffb\xc3", "\xfe": "x", "t": "\xed\xa0\x80"}, true},
		{"unicode", map[string]any{"s": "日本語 🎉 é"}, true},
		{"floats", map[string]any{"a": 0.0, "b": math.Copysign(0, -1), "c": 1e21, "d": 999999999999999999999.0, "e": 1e-6, "f": 9.99e-7,
			"g": math.MaxFloat64, "h": math.SmallestNonzeroFloat64, "i": 0.1, "j": -123.456, "k": 1e20}, true},
		{"float32", map[string]any{"a": float32(0.1), "b": float32(1e21), "c": float32(1e-7), "d": float32(math.MaxFloat32), "e": float32(-2.5)}, true},
		{"integers", map[string]any{"a": int(-1), "b": int64(math.MinInt64), "c": int32(7), "d": int16(-8), "e": int8(9),
			"f": uint(10), "g": uint64(math.MaxUint64), "h": uint32(11), "i": uint16(12)}, true},
		{"bools and nulls", map[string]any{"t": true, "f": false, "n": nil}, true},
		{"containers", map[string]any{"m": map[string]any{"z": []any{1.5, "s", nil, []string{"a", "<"}}}, "e": []any{}, "es": []string{},
			"nm": map[string]any(nil), "ns": []any(nil), "nss": []string(nil), "em": map[string]any{}}, true},
		{"nesting at the fast path's limit", func() map[string]any {
			d := map[string]any{}
			for i := 1; i < fastJSONDepth; i++ {
				d = map[string]any{"n": d}
			}
			return d
		}(), true},
		{"nesting past it", nested, false},
		{"NaN", map[string]any{"a": math.NaN()}, false},
		{"infinity", map[string]any{"a": math.Inf(-1)}, false},
		{"float32 infinity", map[string]any{"a": float32(math.Inf(1))}, false},
		{"named string", map[string]any{"a": namedString("<x>")}, false},
		{"struct", map[string]any{"a": jsonStruct{1, 2}}, false},
		{"pointer", map[string]any{"a": new(int)}, false},
		{"bytes", map[string]any{"a": []byte("hi")}, false},
		{"uint8", map[string]any{"a": uint8(3)}, false},
		{"json.Number", map[string]any{"a": json.Number("12345678901234567890")}, false},
		{"marshaler", map[string]any{"a": marshaler{}}, false},
		{"raw message", map[string]any{"a": json.RawMessage(`{"b" : 1}`)}, false},
		{"deep inside a slice", map[string]any{"a": []any{1, map[string]any{"b": jsonStruct{}}}}, false},
		{"unsupported type", map[string]any{"a": make(chan int)}, false},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			assert.Equal(t, c.fast, checkDetailsJSON(t, c.d), "written by the fast path")
		})
	}
}

// FuzzDetailsJSONMatchesMarshal builds Details from the fuzzer's bytes,
// of every type the fast path writes and some it leaves to json.Marshal,
// and checks that what Record stores is json.Marshal's JSON.
func FuzzDetailsJSONMatchesMarshal(f *testing.F) {
	f.Add([]byte("\x01\x05hello\x02\x00\x00\x00\x00\x00\x00\xf0\x7f"))
	f.Add([]byte("\x06\x03a<b\x07\x02\x01\x01x\x00"))
	f.Add([]byte("\x08\x04\xff\xfe\xe2\x80\xa8"))
	f.Fuzz(func(t *testing.T, data []byte) {
		r := &fuzzReader{data: data}
		d := map[string]any{}
		for n := 0; r.more() && n < 16; n++ {
			d[r.str()] = r.value(0)
		}
		checkDetailsJSON(t, d)
	})
}

type fuzzReader struct{ data []byte }

func (r *fuzzReader) more() bool { return len(r.data) > 0 }

func (r *fuzzReader) byte() byte {
	if len(r.data) == 0 {
		return 0
	}
	b := r.data[0]
	r.data = r.data[1:]
	return b
}

func (r *fuzzReader) bytes(n int) []byte {
	n = min(n, len(r.data))
	b := r.data[:n]
	r.data = r.data[n:]
	return b
}

func (r *fuzzReader) u64() uint64 {
	var b [8]byte
	copy(b[:], r.bytes(8))
	return binary.LittleEndian.Uint64(b[:])
}

func (r *fuzzReader) str() string { return string(r.bytes(int(r.byte() % 24))) }

func (r *fuzzReader) value(depth int) any {
	switch k := r.byte() % 20; {
	case k == 0:
		return nil
	case k == 1:
		return r.str()
	case k == 2:
		return math.Float64frombits(r.u64())
	case k == 3:
		return float64(int64(r.u64())) / float64(uint64(1)<<(r.byte()%64))
	case k == 4:
		return math.Float32frombits(uint32(r.u64()))
	case k == 5:
		return int64(r.u64())
	case k == 6:
		return r.byte()&1 == 1
	case k == 7 && depth < 40:
		m := map[string]any{}
		for n := int(r.byte() % 5); n > 0; n-- {
			m[r.str()] = r.value(depth + 1)
		}
		return m
	case k == 8 && depth < 40:
		s := []any{}
		for n := int(r.byte() % 5); n > 0; n-- {
			s = append(s, r.value(depth+1))
		}
		return s
	case k == 9:
		return []string{r.str(), r.str()}
	case k == 10:
		return uint64(r.u64())
	case k == 11:
		return int(int32(r.u64()))
	case k == 12:
		return namedString(r.str())
	case k == 13:
		return jsonStruct{int(r.byte()), int(r.byte())}
	case k == 14:
		return json.Number(r.str())
	case k == 15:
		return uint8(r.byte())
	case k == 16:
		return map[string]any(nil)
	case k == 17:
		return []byte(r.str())
	case k == 18:
		return float32(math.Float64frombits(r.u64()))
	default:
		return uint16(r.u64())
	}
}

// BenchmarkDetailsJSON is Record's encoding of realistic Details: the fast
// path beside json.Marshal, the baseline it must beat.
func BenchmarkDetailsJSON(b *testing.B) {
	entries := realEntries(3, 1024)
	b.Run("json.Marshal", func(b *testing.B) {
		b.ReportAllocs()
		for i := 0; b.Loop(); i++ {
			if _, err := json.Marshal(entries[i%len(entries)].Details); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("audit", func(b *testing.B) {
		b.ReportAllocs()
		for i := 0; b.Loop(); i++ {
			if _, err := marshalJSON(entries[i%len(entries)].Details); err != nil {
				b.Fatal(err)
			}
		}
	})
}

// TestRecordUsesTheFastPath checks that Record's encoding (marshalDetails)
// goes through appendDetails: json.Marshal allocates for every key and
// value of realistic Details, the fast path once for its result (a few
// more when the race detector empties the pool).
func TestRecordUsesTheFastPath(t *testing.T) {
	s := &AuditService{} // no redaction: the cfg marshalDetails reads is zero
	d := realEntries(5, 1)[0].Details
	viaRecord := testing.AllocsPerRun(100, func() {
		if _, err := s.marshalDetails(d); err != nil {
			t.Fatal(err)
		}
	})
	viaMarshal := testing.AllocsPerRun(100, func() {
		if _, err := json.Marshal(d); err != nil {
			t.Fatal(err)
		}
	})
	assert.Less(t, viaRecord, viaMarshal/2, "allocations a call: marshalDetails %v, json.Marshal %v", viaRecord, viaMarshal)
}
