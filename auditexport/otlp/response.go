package otlp

import (
	"encoding/json"

	"github.com/cleveragents/audit/auditexport"
	"google.golang.org/protobuf/encoding/protowire"
)

// jsonOf returns r's JSON, as the other sinks write it.
func jsonOf(r *auditexport.Record) (string, error) {
	b, err := json.Marshal(r)
	if err != nil {
		return "", err
	}
	return string(b), nil
}

// rejectedIn returns partial_success.rejected_log_records of an
// ExportLogsServiceResponse (field 1, message; in it field 1, int64),
// read with protowire so that no collector package is needed. An answer
// that does not parse rejects nothing.
func rejectedIn(b []byte) int64 {
	for len(b) > 0 {
		num, typ, n := protowire.ConsumeTag(b)
		if n < 0 {
			return 0
		}
		b = b[n:]
		if num == 1 && typ == protowire.BytesType {
			inner, n := protowire.ConsumeBytes(b)
			if n < 0 {
				return 0
			}
			for len(inner) > 0 {
				num, typ, m := protowire.ConsumeTag(inner)
				if m < 0 {
					return 0
				}
				inner = inner[m:]
				if num == 1 && typ == protowire.VarintType {
					v, m := protowire.ConsumeVarint(inner)
					if m < 0 {
						return 0
					}
					return int64(v)
				}
				m = protowire.ConsumeFieldValue(num, typ, inner)
				if m < 0 {
					return 0
				}
				inner = inner[m:]
			}
			return 0
		}
		n = protowire.ConsumeFieldValue(num, typ, b)
		if n < 0 {
			return 0
		}
		b = b[n:]
	}
	return 0
}
