package gormaudit

import (
	"bytes"
	"crypto/hmac"
	"crypto/sha256"
	"database/sql/driver"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"reflect"
	"strings"

	"github.com/cleveragents/audit"
	"gorm.io/gorm"
	"gorm.io/gorm/clause"
	"gorm.io/gorm/schema"
)

// redactedPlaceholder stands for a redacted value when the plugin has no
// HMAC key.
const redactedPlaceholder = "[redacted]"

// row is one version of a row as Details show it.
type row struct {
	key    string            // the primary key's canonical JSON: identifies the row
	pk     []any             // the primary key's values, as the model holds them
	pkText string            // the primary key as Resource shows it; "" for none
	values map[string]any    // by column, tagged fields left out or redacted
	canon  map[string]string // by column, the canonical JSON before redaction
}

// resource returns "<table>/<primary key>", or the table alone when the
// row has no key.
func (r row) resource(table string) string {
	if r.pkText == "" {
		return table
	}
	return table + "/" + r.pkText
}

// structRow reads the columns of v, a value of the statement's model type.
// It reports false for any other value, or, unless keyless, for one whose
// primary key is zero while the model has one (a row that was not
// written). keyless takes such a row as it is, without a key.
func (p *Plugin) structRow(db *gorm.DB, v reflect.Value, keyless bool) (row, bool) {
	s := db.Statement.Schema
	if s == nil || v.Kind() != reflect.Struct || v.Type() != s.ModelType {
		return row{}, false
	}
	ctx := db.Statement.Context
	r := row{values: map[string]any{}, canon: map[string]string{}}
	for _, f := range s.Fields {
		if f.DBName == "" || !f.Readable {
			continue
		}
		fv, _ := f.ValueOf(ctx, v)
		p.setColumn(&r, f.DBName, fieldPolicy(f), fv)
	}
	if len(s.PrimaryFields) > 0 {
		zero := true
		for _, f := range s.PrimaryFields {
			fv, isZero := f.ValueOf(ctx, v)
			zero = zero && isZero
			r.pk = append(r.pk, fv)
		}
		if zero {
			r.pk = nil
			return r, keyless
		}
		setKey(&r)
	}
	return r, true
}

// mapRow reads a map created with db.Model(...).Create(map): its keys are
// field or column names, and GORM adds "@id" for an auto-incremented key.
func (p *Plugin) mapRow(db *gorm.DB, m reflect.Value) row {
	s := db.Statement.Schema
	r := row{values: map[string]any{}, canon: map[string]string{}}
	var pkField *schema.Field
	if s != nil && len(s.PrimaryFields) == 1 {
		pkField = s.PrimaryFields[0]
	}
	var pk any
	iter := m.MapRange()
	for iter.Next() {
		k, ok := iter.Key().Interface().(string)
		if !ok {
			continue
		}
		v := iter.Value().Interface()
		if expr, ok := v.(clause.Expression); ok {
			v = p.exprText(db, expr)
		}
		col, pol := k, columnPolicy(s, k)
		if k == "@id" {
			if pkField == nil {
				continue
			}
			col = pkField.DBName
		} else if s != nil {
			if f := s.LookUpField(k); f != nil {
				col, pol = f.DBName, fieldPolicy(f)
				if col == "" {
					continue // a relation, not a column
				}
			}
		}
		if pkField != nil && col == pkField.DBName {
			pk = v
		}
		p.setColumn(&r, col, pol, v)
	}
	if pk != nil {
		r.pk = []any{pk}
		setKey(&r)
	}
	return r
}

// setColumn puts a column's value into r as its policy says.
func (p *Plugin) setColumn(r *row, col string, pol policy, v any) {
	if pol == omit {
		return
	}
	nv, canon := normalize(v)
	r.canon[col] = canon
	if pol == redact {
		nv = p.redacted(canon)
	}
	r.values[col] = nv
}

// policy is how Details show a column's values.
type policy int

const (
	keep   policy = iota // as stored
	omit                 // not at all
	redact               // as a keyed hash, or "[redacted]"
)

// fieldPolicy returns the policy of a model's field: `audit:"-"` omits it;
// `audit:"redact"`, `json:"-"` (whatever the audit tag but "-") and a
// column name that says it holds a secret redact it, the last unless
// `audit:"clear"` opts it in.
func fieldPolicy(f *schema.Field) policy {
	tag := f.Tag.Get("audit")
	switch {
	case tag == "-":
		return omit
	case tag == "redact", f.Tag.Get("json") == "-":
		return redact
	case tag == "clear":
		return keep
	case secretName(f.DBName):
		return redact
	}
	return keep
}

// columnPolicy returns the policy of a column of the statement's model
// (by field or column name), or of a column of a table without a model,
// which only its name can redact.
func columnPolicy(s *schema.Schema, col string) policy {
	if s != nil {
		if f := s.LookUpField(col); f != nil {
			return fieldPolicy(f)
		}
	}
	if secretName(col) {
		return redact
	}
	return keep
}

// Words that mark a column name as holding a secret: anywhere in the
// name, or as a whole word of it (between underscores), for the short
// ones that occur inside harmless words ("footprint", "seeded").
var (
	secretParts = []string{"password", "passwd", "passphrase", "secret", "token", "apikey", "api_key",
		"privatekey", "private_key", "credential", "signing_key", "encryption_key"}
	secretWords = map[string]bool{"pwd": true, "otp": true, "totp": true, "hotp": true, "mfa": true,
		"2fa": true, "seed": true, "pin": true, "cvv": true, "salt": true}
)

// secretName reports whether a column name says that it holds a secret.
func secretName(col string) bool {
	c := strings.ToLower(col)
	for _, part := range secretParts {
		if strings.Contains(c, part) {
			return true
		}
	}
	for _, w := range strings.FieldsFunc(c, func(r rune) bool { return r == '_' || r == '-' || r == '.' || r == ' ' }) {
		if secretWords[w] {
			return true
		}
	}
	return false
}

// setKey derives the key and text of r's primary key, r.pk.
func setKey(r *row) {
	texts := make([]string, len(r.pk))
	canons := make([]string, len(r.pk))
	for i, v := range r.pk {
		nv, canon := normalize(v)
		canons[i] = canon
		if str, ok := nv.(string); ok {
			texts[i] = str
		} else {
			texts[i] = canon
		}
	}
	r.key = "[" + strings.Join(canons, ",") + "]"
	r.pkText = strings.Join(texts, ",")
}

// redacted returns the keyed hash of a value's canonical JSON, in the
// form of the root package's WithRedactKeys, or "[redacted]" without a
// key.
func (p *Plugin) redacted(canon string) string {
	if p.cfg.redactKey == nil {
		return redactedPlaceholder
	}
	m := hmac.New(sha256.New, p.cfg.redactKey)
	m.Write([]byte(canon))
	return audit.RedactedPrefix + hex.EncodeToString(m.Sum(nil))
}

// normalize returns v as Details hold it, a JSON value (what a field's
// driver.Valuer gives, for types such as sql.NullString and
// gorm.DeletedAt), and its canonical JSON: the JSON of that value with
// object keys sorted, the text that the root package hashes when it
// redacts. A value that does not marshal appears as its fmt text.
func normalize(v any) (any, string) {
	v = driverValue(v)
	b, err := json.Marshal(v)
	if err != nil {
		b, _ = json.Marshal(fmt.Sprint(v))
	}
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.UseNumber() // numbers keep their text
	var out any
	if err := dec.Decode(&out); err != nil {
		return string(b), string(b)
	}
	canon, err := json.Marshal(out)
	if err != nil {
		return out, string(b)
	}
	return out, string(canon)
}

// driverValue dereferences pointers and returns what a driver.Valuer
// gives, so that Details hold what the database holds.
func driverValue(v any) any {
	for i := 0; i < 8; i++ { // a few levels: *sql.NullString, **T
		if v == nil {
			return nil
		}
		rv := reflect.ValueOf(v)
		if rv.Kind() == reflect.Pointer && rv.IsNil() {
			return nil
		}
		if valuer, ok := v.(driver.Valuer); ok {
			dv, err := valuer.Value()
			if err != nil {
				return v
			}
			return dv
		}
		if rv.Kind() != reflect.Pointer {
			return v
		}
		v = rv.Elem().Interface()
	}
	return v
}
