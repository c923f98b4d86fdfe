package audithttp_test

import (
	"net/http"
	"strings"
	"testing"

	"github.com/cleveragents/audit"
	"github.com/cleveragents/audit/audithttp"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestNewRejectsInvalidOptions(t *testing.T) {
	svc, _ := newService(t)
	for _, tc := range []struct {
		name string
		rec  audithttp.Recorder
		opts []audithttp.Option
		want []string // one line of the error each
	}{
		{"nil recorder", nil, nil, []string{"audithttp: New: nil Recorder"}},
		{"nil service", (*audit.AuditService)(nil), nil, []string{"audithttp: New: nil Recorder"}},
		{"nil option", svc, []audithttp.Option{audithttp.WithSkipPaths(), nil}, []string{"audithttp: New: option 1 is nil"}},
		{"empty event type", svc, []audithttp.Option{audithttp.WithEventType("")},
			[]string{`audithttp: WithEventType: "" is not a valid EventType (1 to 256 bytes of UTF-8 without NUL)`}},
		{"long event type", svc, []audithttp.Option{audithttp.WithEventType(strings.Repeat("e", audit.MaxFieldLen+1))},
			[]string{"audithttp: WithEventType: "}},
		{"event type with NUL", svc, []audithttp.Option{audithttp.WithEventType("a\x00b")}, []string{"audithttp: WithEventType: "}},
		{"nil actor", svc, []audithttp.Option{audithttp.WithActor(nil)}, []string{"audithttp: WithActor: nil function"}},
		{"nil logger", svc, []audithttp.Option{audithttp.WithLogger(nil)}, []string{"audithttp: WithLogger: nil logger"}},
		{"zero bound", svc, []audithttp.Option{audithttp.WithFailClosedTimeout(0)}, []string{"audithttp: WithFailClosedTimeout: 0s is not positive"}},
		{"negative bound", svc, []audithttp.Option{audithttp.WithFailClosedTimeout(-1)}, []string{"audithttp: WithFailClosedTimeout: -1ns is not positive"}},
		{"every fault named", nil, []audithttp.Option{audithttp.WithActor(nil), audithttp.WithLogger(nil)},
			[]string{"audithttp: New: nil Recorder", "audithttp: WithActor: nil function", "audithttp: WithLogger: nil logger"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var a *audithttp.Auditor
			var err error
			require.NotPanics(t, func() { a, err = audithttp.New(tc.rec, tc.opts...) })
			require.Error(t, err)
			assert.Nil(t, a)
			lines := strings.Split(err.Error(), "\n")
			require.Len(t, lines, len(tc.want), err.Error())
			for i, want := range tc.want {
				assert.True(t, strings.HasPrefix(lines[i], want), "%q does not begin with %q", lines[i], want)
				assert.Equal(t, 1, strings.Count(lines[i], "audit"), "one prefix: %q", lines[i])
			}
		})
	}

	a, err := audithttp.New(svc, audithttp.WithSkipPaths(), audithttp.WithFailClosed(false),
		audithttp.WithFailClosedTimeout(1), audithttp.WithEventType(strings.Repeat("e", audit.MaxFieldLen)),
		audithttp.WithActor(func(*http.Request) string { return "" }))
	require.NoError(t, err)
	assert.NotNil(t, a)
}
