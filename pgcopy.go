package audit

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"math"
	"reflect"
	"sync"
)

// The batch's COPY on PostgreSQL through pgx, where the driver is pgx's
// (gorm.io/driver/postgres's is): COPY ... FROM STDIN in the binary format
// costs the server less a row than the unnest INSERT (insertColumns), and
// the writer's encoding of it is a few appends an entry, where pgx's of
// the arrays is about 3 µs. The package does not import pgx: it reaches
// pgconn's CopyFrom through the driver connection's methods by name
// (pgCopyOf), and any other driver keeps the unnest INSERT.

// pgCopyFunc runs a COPY ... FROM STDIN of the data r on the driver
// connection dc and returns the rows it copied.
type pgCopyFunc func(ctx context.Context, dc any, r io.Reader, query string) (int64, error)

// pgCopies caches pgCopyOf's answer per driver connection type.
var pgCopies sync.Map // reflect.Type -> pgCopyFunc (nil: the driver has none)

var (
	ctxType    = reflect.TypeFor[context.Context]()
	readerType = reflect.TypeFor[io.Reader]()
	errType    = reflect.TypeFor[error]()
)

// pgCopyOf returns the COPY of the driver connection dc, or nil when dc
// is not pgx's: its Conn() gives a connection whose PgConn() has
// CopyFrom(context.Context, io.Reader, string) (CommandTag, error), and
// the CommandTag has RowsAffected() int64 (pgx v5's stdlib.Conn,
// pgx.Conn, pgconn.PgConn and pgconn.CommandTag).
func pgCopyOf(dc any) pgCopyFunc {
	t := reflect.TypeOf(dc)
	if f, ok := pgCopies.Load(t); ok {
		return f.(pgCopyFunc)
	}
	f := pgCopyOfType(t)
	pgCopies.Store(t, f)
	return f
}

func pgCopyOfType(t reflect.Type) pgCopyFunc {
	getter := func(t reflect.Type, name string) (reflect.Method, bool) {
		m, ok := t.MethodByName(name)
		return m, ok && m.Type.NumIn() == 1 && m.Type.NumOut() == 1
	}
	conn, ok := getter(t, "Conn")
	if !ok || conn.Type.Out(0).Kind() != reflect.Pointer {
		return nil
	}
	pg, ok := getter(conn.Type.Out(0), "PgConn")
	if !ok {
		return nil
	}
	cf, ok := pg.Type.Out(0).MethodByName("CopyFrom")
	if !ok {
		return nil
	}
	ft := cf.Type // the receiver first
	if ft.NumIn() != 4 || ft.In(1) != ctxType || ft.In(2) != readerType || ft.In(3).Kind() != reflect.String ||
		ft.NumOut() != 2 || ft.Out(1) != errType {
		return nil
	}
	rows, ok := ft.Out(0).MethodByName("RowsAffected")
	if !ok || rows.Type.NumIn() != 1 || rows.Type.NumOut() != 1 || rows.Type.Out(0).Kind() != reflect.Int64 {
		return nil
	}
	return func(ctx context.Context, dc any, r io.Reader, query string) (int64, error) {
		c := conn.Func.Call([]reflect.Value{reflect.ValueOf(dc)})[0]
		if c.IsNil() {
			return 0, fmt.Errorf("the driver connection has no pgx connection")
		}
		p := pg.Func.Call([]reflect.Value{c})[0]
		out := cf.Func.Call([]reflect.Value{p, reflect.ValueOf(&ctx).Elem(), reflect.ValueOf(&r).Elem(), reflect.ValueOf(query).Convert(ft.In(3))})
		if err, _ := out[1].Interface().(error); err != nil {
			return 0, err
		}
		return rows.Func.Call([]reflect.Value{out[0]})[0].Int(), nil
	}
}

// pgCopyHeader begins COPY's binary format: the signature, no flags and
// no header extension.
var pgCopyHeader = []byte("PGCOPY\n\xff\r\n\x00\x00\x00\x00\x00\x00\x00\x00\x00")

// appendCopyText appends a text field of COPY's binary format.
func appendCopyText(b []byte, s string) []byte {
	b = binary.BigEndian.AppendUint32(b, uint32(len(s)))
	return append(b, s...)
}

// appendCopyRow appends the row of r, chained as id with prev and hash,
// in COPY's binary format, its fields in the order of columns.
func appendCopyRow(b []byte, id int64, r *record, prev, hash string) []byte {
	b = binary.BigEndian.AppendUint16(b, 10)
	b = binary.BigEndian.AppendUint32(b, 8)
	b = binary.BigEndian.AppendUint64(b, uint64(id))
	for _, s := range [...]string{r.time, r.eventType, r.actor, r.resource, r.outcome, r.requestID} {
		b = appendCopyText(b, s)
	}
	if r.details == nil {
		b = binary.BigEndian.AppendUint32(b, math.MaxUint32) // -1: NULL
	} else {
		b = binary.BigEndian.AppendUint32(b, uint32(len(r.details)))
		b = append(b, r.details...)
	}
	b = appendCopyText(b, prev)
	return appendCopyText(b, hash)
}

// copier is a write transaction that may COPY rows into a table.
type copier interface {
	execer
	// canCopy reports whether the driver has COPY.
	canCopy() bool
	// copyFrom runs query, a COPY ... FROM STDIN, with data, and returns
	// the rows copied.
	copyFrom(ctx context.Context, query string, data []byte) (int64, error)
}

// appendCopy is appendColumns by COPY: one COPY per set of entries
// (appendSets).
func (s *AuditService) appendCopy(ctx context.Context, sess *session, tx copier, recs []*record, more refill, firstID int64, firstPrev string) error {
	buf := s.copyBuf[:0]
	defer func() {
		if cap(buf) <= maxKeptCopyBuf {
			s.copyBuf = buf[:0]
		}
	}()
	return s.appendSets(ctx, sess, tx, recs, more, firstID, firstPrev, func(set []*record, first int64, prev string, hashes []string) error {
		buf = append(buf[:0], pgCopyHeader...)
		for i, r := range set {
			buf = appendCopyRow(buf, first+int64(i), r, prev, hashes[i])
			prev = hashes[i]
		}
		buf = binary.BigEndian.AppendUint16(buf, math.MaxUint16) // the trailer: -1
		n, err := tx.copyFrom(ctx, sess.q.copyIn, buf)
		if err != nil {
			switch sqlState(err) {
			case "22P03", "42804": // invalid_binary_representation, datatype_mismatch
				// A column of another type than the library's (an INTEGER
				// id, say) that an INSERT's cast would take: this
				// session inserts from now on, beginning with the run
				// again of this transaction.
				sess.noCopy.Store(true)
				return fmt.Errorf("copy %d entries: %w: %w", len(set), errCopyRefused, err)
			}
			return fmt.Errorf("copy %d entries: %w", len(set), err)
		}
		if n != int64(len(set)) {
			return fmt.Errorf("copy %d entries: the server copied %d", len(set), n)
		}
		s.stats.copied.Add(uint64(n))
		return nil
	})
}

// errCopyRefused marks a COPY that the table's column types refused:
// the write transaction runs again at once, with an INSERT (the dialect's
// retryNow).
var errCopyRefused = errors.New("the table's columns refused COPY's binary format")

// maxKeptCopyBuf is the largest COPY buffer the writer keeps for its next
// batch.
const maxKeptCopyBuf = 8 << 20

func (t pgTxn) canCopy() bool {
	ok := false
	_ = t.conn.Raw(func(dc any) error {
		ok = pgCopyOf(dc) != nil
		return nil
	})
	return ok
}

func (t pgTxn) copyFrom(ctx context.Context, query string, data []byte) (int64, error) {
	var n int64
	err := t.conn.Raw(func(dc any) error {
		f := pgCopyOf(dc)
		if f == nil {
			return errors.New("the driver has no COPY")
		}
		var err error
		n, err = f(ctx, dc, bytes.NewReader(data), query)
		return err
	})
	return n, err
}
