package audit

import (
	"bytes"
	"encoding/json"
	"math"
	"slices"
	"strconv"
	"sync"
	"unicode/utf8"
)

// The fast path of Record's json.Marshal(Details): Details whose values
// are only strings, numbers of Go's built-in types, bools, nils, and maps
// and slices of these are written here, byte for byte as json.Marshal
// writes them (keys sorted, HTML-escaped, numbers formatted alike), without
// reflection. Anything else, a struct, a pointer, a json.Marshaler, a named
// type, a float that JSON cannot hold, or nesting deeper than
// fastJSONDepth, is left to json.Marshal: appendDetails reports false and
// the caller marshals the whole map. FuzzDetailsJSONMatchesMarshal checks
// the two agree.

// fastJSONDepth is the deepest nesting the fast path writes; a deeper map
// is marshalled by encoding/json, which also finds cycles.
const fastJSONDepth = 32

// appendDetails appends the JSON of d to b, or reports false if d holds a
// value that only json.Marshal writes.
func appendDetails(b []byte, d map[string]any) ([]byte, bool) {
	return appendJSONMap(b, d, 0)
}

func appendJSONMap(b []byte, m map[string]any, depth int) ([]byte, bool) {
	if m == nil {
		return append(b, "null"...), true
	}
	if depth >= fastJSONDepth {
		return b, false
	}
	var buf [16]string
	keys := buf[:0]
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys) // json.Marshal sorts string keys byte-wise too
	b = append(b, '{')
	for i, k := range keys {
		if i > 0 {
			b = append(b, ',')
		}
		b = appendJSONString(b, k)
		b = append(b, ':')
		var ok bool
		if b, ok = appendJSONValue(b, m[k], depth+1); !ok {
			return b, false
		}
	}
	return append(b, '}'), true
}

func appendJSONValue(b []byte, v any, depth int) ([]byte, bool) {
	switch v := v.(type) {
	case nil:
		return append(b, "null"...), true
	case string:
		return appendJSONString(b, v), true
	case bool:
		return strconv.AppendBool(b, v), true
	case float64:
		if math.IsInf(v, 0) || math.IsNaN(v) {
			return b, false // json.Marshal's error
		}
		return appendJSONFloat(b, v, 64), true
	case float32:
		f := float64(v)
		if math.IsInf(f, 0) || math.IsNaN(f) {
			return b, false
		}
		return appendJSONFloat(b, f, 32), true
	case int:
		return strconv.AppendInt(b, int64(v), 10), true
	case int64:
		return strconv.AppendInt(b, v, 10), true
	case int32:
		return strconv.AppendInt(b, int64(v), 10), true
	case int16:
		return strconv.AppendInt(b, int64(v), 10), true
	case int8:
		return strconv.AppendInt(b, int64(v), 10), true
	case uint:
		return strconv.AppendUint(b, uint64(v), 10), true
	case uint64:
		return strconv.AppendUint(b, v, 10), true
	case uint32:
		return strconv.AppendUint(b, uint64(v), 10), true
	case uint16:
		return strconv.AppendUint(b, uint64(v), 10), true
	case map[string]any:
		return appendJSONMap(b, v, depth)
	case []any:
		if v == nil {
			return append(b, "null"...), true
		}
		if depth >= fastJSONDepth {
			return b, false
		}
		b = append(b, '[')
		for i, e := range v {
			if i > 0 {
				b = append(b, ',')
			}
			var ok bool
			if b, ok = appendJSONValue(b, e, depth+1); !ok {
				return b, false
			}
		}
		return append(b, ']'), true
	case []string:
		if v == nil {
			return append(b, "null"...), true
		}
		b = append(b, '[')
		for i, e := range v {
			if i > 0 {
				b = append(b, ',')
			}
			b = appendJSONString(b, e)
		}
		return append(b, ']'), true
	}
	// The rest, uint8 and uintptr among them (rare in Details), is
	// json.Marshal's. ([]byte, unlike []string, is base64 there.)
	return b, false
}

// appendJSONFloat is encoding/json's floatEncoder, for a float of the
// given size that is neither NaN nor infinite: the shortest decimal that
// reads back as the same float, in exponent form below 1e-6 and from 1e21
// on, the exponent without leading zeros (e-7, not e-07).
func appendJSONFloat(b []byte, f float64, bits int) []byte {
	abs := math.Abs(f)
	format := byte('f')
	if abs != 0 {
		if bits == 64 && (abs < 1e-6 || abs >= 1e21) || bits == 32 && (float32(abs) < 1e-6 || float32(abs) >= 1e21) {
			format = 'e'
		}
	}
	b = strconv.AppendFloat(b, f, format, -1, bits)
	if format == 'e' {
		if n := len(b); n >= 4 && b[n-4] == 'e' && b[n-3] == '-' && b[n-2] == '0' {
			b[n-2] = b[n-1]
			b = b[:n-1]
		}
	}
	return b
}

// appendJSONString is encoding/json's appendString with HTML escaping, as
// json.Marshal writes strings: ", \ and the control characters escaped
// (\b \f \n \r \t by name), <, > and & as \u003c \u003e \u0026, U+2028
// and U+2029 escaped, and each byte of invalid UTF-8 as \ufffd.
func appendJSONString(b []byte, s string) []byte {
	const hex = "0123456789abcdef"
	b = append(b, '"')
	start := 0
	for i := 0; i < len(s); {
		if c := s[i]; c < utf8.RuneSelf {
			if c >= 0x20 && c != '"' && c != '\\' && c != '<' && c != '>' && c != '&' {
				i++
				continue
			}
			b = append(b, s[start:i]...)
			switch c {
			case '\\', '"':
				b = append(b, '\\', c)
			case '\b':
				b = append(b, '\\', 'b')
			case '\f':
				b = append(b, '\\', 'f')
			case '\n':
				b = append(b, '\\', 'n')
			case '\r':
				b = append(b, '\\', 'r')
			case '\t':
				b = append(b, '\\', 't')
			default:
				b = append(b, '\\', 'u', '0', '0', hex[c>>4], hex[c&0xF])
			}
			i++
			start = i
			continue
		}
		r, size := utf8.DecodeRuneInString(s[i:])
		if r == utf8.RuneError && size == 1 {
			b = append(b, s[start:i]...)
			b = append(b, `\ufffd`...)
			i += size
			start = i
			continue
		}
		if r == '\u2028' || r == '\u2029' {
			b = append(b, s[start:i]...)
			b = append(b, '\\', 'u', '2', '0', '2', hex[r&0xF])
			i += size
			start = i
			continue
		}
		i += size
	}
	b = append(b, s[start:]...)
	return append(b, '"')
}

// marshalJSON is json.Marshal(d), written by appendDetails where it can.
// The JSON is built in a pooled buffer and copied out at its size, which
// is what the queue then holds.
func marshalJSON(d map[string]any) ([]byte, error) {
	p := jsonScratch.Get().(*[]byte)
	b, ok := appendDetails((*p)[:0], d)
	var out []byte
	if ok {
		out = bytes.Clone(b)
	}
	if cap(b) <= maxScratchJSON {
		*p = b
		jsonScratch.Put(p)
	}
	if !ok {
		return json.Marshal(d)
	}
	return out, nil
}

// jsonScratch holds the buffers marshalJSON writes into before it copies
// the JSON out at its size; one bigger than maxScratchJSON is not kept.
var jsonScratch = sync.Pool{New: func() any { b := make([]byte, 0, 1024); return &b }}

const maxScratchJSON = 64 << 10
