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
// It reports false for any other value, or for one whose primary key is
// zero while the model has one (a row that was not written).
func (p *Plugin) structRow(db *gorm.DB, v reflect.Value) (row, bool) {
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
		p.setColumn(&r, f.DBName, f.Tag.Get("audit"), fv)
	}
	if len(s.PrimaryFields) > 0 {
		zero := true
		for _, f := range s.PrimaryFields {
			fv, isZero := f.ValueOf(ctx, v)
			zero = zero && isZero
			r.pk = append(r.pk, fv)
		}
		if zero {
			return row{}, false
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
			v = exprText(db, expr)
		}
		col, tag := k, ""
		if k == "@id" {
			if pkField == nil {
				continue
			}
			col = pkField.DBName
		} else if s != nil {
			if f := s.LookUpField(k); f != nil {
				col, tag = f.DBName, f.Tag.Get("audit")
				if col == "" {
					continue // a relation, not a column
				}
			}
		}
		if pkField != nil && col == pkField.DBName {
			pk = v
		}
		p.setColumn(&r, col, tag, v)
	}
	if pk != nil {
		r.pk = []any{pk}
		setKey(&r)
	}
	return r
}

// setColumn puts a column's value into r as its tag says.
func (p *Plugin) setColumn(r *row, col, tag string, v any) {
	if tag == "-" {
		return
	}
	nv, canon := normalize(v)
	r.canon[col] = canon
	if tag == "redact" {
		nv = p.redacted(canon)
	}
	r.values[col] = nv
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
// form of the root package's WithRedactKeys.
func (p *Plugin) redacted(canon string) string {
	if p.cfg.redactKey == nil {
		return redactedPlaceholder
	}
	m := hmac.New(sha256.New, p.cfg.redactKey)
	m.Write([]byte(canon))
	return "hmac-sha256:" + hex.EncodeToString(m.Sum(nil))
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
