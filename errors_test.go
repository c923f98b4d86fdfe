package audit

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/cleveragents/audit/internal/testutil"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// Every error a user sees carries the "audit:" prefix once, names its
// operation, and still unwraps to its sentinel.
func TestErrorsCarryThePrefixOnce(t *testing.T) {
	s, path := newService(t)
	ctx := context.Background()
	recordAll(t, s, sampleEntry(1), sampleEntry(2))

	_, getErr := s.Get(ctx, 99)
	_, listErr := s.List(ctx, Filter{Limit: -1})
	_, countErr := s.Count(ctx, Filter{Actor: "\x00"})
	recErr := s.Record(ctx, Entry{EventType: "x"})
	testutil.RawDB(t, path).Exec(`UPDATE audit_entries SET actor = 'mallory' WHERE id = 2`)
	_, verifyErr := s.Verify(ctx)

	for _, c := range []struct {
		err      error
		sentinel error
		text     string
	}{
		{getErr, ErrNotFound, "audit: get 99: entry not found"},
		{listErr, ErrInvalidFilter, "audit: list: invalid filter: Limit -1"},
		{countErr, ErrInvalidFilter, "audit: count: invalid filter: Actor"},
		{recErr, ErrInvalidEntry, "audit: record: invalid entry: Actor is required"},
		{verifyErr, ErrTampered, "audit: verify: chain verification failed at ID 2: "},
	} {
		require.Error(t, c.err)
		assert.ErrorIs(t, c.err, c.sentinel)
		assert.True(t, strings.HasPrefix(c.err.Error(), c.text), "%q does not begin with %q", c.err, c.text)
		assert.Equal(t, 1, strings.Count(c.err.Error(), "audit:"), "%q", c.err)
		var op *OpError
		assert.True(t, errors.As(c.err, &op), "%v is an *OpError", c.err)
	}

	require.NoError(t, s.Close())
	for name, err := range map[string]error{
		"record": s.Record(ctx, sampleEntry(3)),
		"flush":  s.Flush(ctx),
		"ping":   s.Ping(ctx),
	} {
		assert.ErrorIs(t, err, ErrClosed, name)
		assert.Equal(t, "audit: "+name+": service closed", err.Error())
	}
}

// A nil context is an error, never a panic, and leaves the service working
// (a panic inside database/sql once left an internal lock held).
func TestNilContextIsAnError(t *testing.T) {
	s, _ := newService(t)
	var nilCtx context.Context
	calls := map[string]func() error{
		"record":   func() error { return s.Record(nilCtx, sampleEntry(1)) },
		"flush":    func() error { return s.Flush(nilCtx) },
		"get":      func() error { _, err := s.Get(nilCtx, 1); return err },
		"list":     func() error { _, err := s.List(nilCtx, Filter{}); return err },
		"count":    func() error { _, err := s.Count(nilCtx, Filter{}); return err },
		"prune":    func() error { _, err := s.Prune(nilCtx, time.Now()); return err },
		"verify":   func() error { _, err := s.Verify(nilCtx); return err },
		"ping":     func() error { return s.Ping(nilCtx) },
		"shutdown": func() error { return s.Shutdown(nilCtx) },
	}
	for name, call := range calls {
		err := call()
		require.Error(t, err, name)
		assert.Contains(t, err.Error(), "audit: "+name+": nil Context", name)
	}
	// Still working: record, flush, read back, shut down.
	ctx := context.Background()
	recordAll(t, s, sampleEntry(1))
	n, err := s.Count(ctx, Filter{})
	require.NoError(t, err)
	assert.Equal(t, int64(1), n)
	require.NoError(t, s.Close())
}
