package audit

import (
	"bytes"
	"encoding/json"
	"strconv"
)

// decodeDetails reads stored Details JSON so that re-encoding it with
// encoding/json gives the stored digits back. A number is a float64 when
// json.Marshal of that float64 writes exactly the stored text (1, 2.5,
// 1e+21: what a round trip of a float64 gives); any other number, such as
// an integer above 2^53 that a float64 would round, stays a [json.Number]
// holding the stored digits.
func decodeDetails(b []byte) (map[string]any, error) {
	d := json.NewDecoder(bytes.NewReader(b))
	d.UseNumber()
	var m map[string]any
	if err := d.Decode(&m); err != nil {
		return nil, err
	}
	for k, v := range m {
		m[k] = exactNumbers(v)
	}
	return m, nil
}

// exactNumbers replaces, in v, each json.Number that a float64 holds
// exactly by that float64.
func exactNumbers(v any) any {
	switch v := v.(type) {
	case json.Number:
		if f, err := strconv.ParseFloat(string(v), 64); err == nil && string(appendJSONFloat(nil, f, 64)) == string(v) {
			return f
		}
		return v
	case map[string]any:
		for k, x := range v {
			v[k] = exactNumbers(x)
		}
	case []any:
		for i, x := range v {
			v[i] = exactNumbers(x)
		}
	}
	return v
}
