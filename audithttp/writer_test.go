package audithttp_test

import (
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestResponseWriterKeepsInterfaces(t *testing.T) {
	svc, _ := newService(t)
	h := wrap(t, svc, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.WriteString(w, "a")
		f, ok := w.(http.Flusher)
		require.True(t, ok, "http.Flusher")
		f.Flush()
		require.NoError(t, http.NewResponseController(w).Flush(), "ResponseController through Unwrap")
		n, err := io.Copy(w, strings.NewReader("bcd")) // io.ReaderFrom
		require.NoError(t, err)
		assert.Equal(t, int64(3), n)
	}))
	w := serve(h, httptest.NewRequest(http.MethodGet, "/", nil))
	assert.True(t, w.Flushed)
	assert.Equal(t, "abcd", w.Body.String())
	es := recorded(t, svc)
	require.Len(t, es, 1)
	assert.Equal(t, float64(4), es[0].Details["bytes"])
}
