package audithttp

import (
	"bufio"
	"io"
	"net"
	"net/http"
)

// responseWriter notes the status and counts the body bytes of a response.
// It keeps the optional interfaces that handlers use working: Flush and
// Hijack directly (for handlers that type-assert http.Flusher or
// http.Hijacker), io.ReaderFrom (so sendfile still applies), and the rest
// through Unwrap, which http.ResponseController follows.
type responseWriter struct {
	http.ResponseWriter
	status   int   // the final status written; 0 before
	bytes    int64 // body bytes written
	hijacked bool
}

// WriteHeader notes the first final status. Informational statuses (1xx
// but 101) may precede it and are passed through.
func (w *responseWriter) WriteHeader(code int) {
	if w.status == 0 && (code >= 200 || code == http.StatusSwitchingProtocols) {
		w.status = code
	}
	w.ResponseWriter.WriteHeader(code)
}

func (w *responseWriter) Write(b []byte) (int, error) {
	if w.status == 0 {
		w.status = http.StatusOK
	}
	n, err := w.ResponseWriter.Write(b)
	w.bytes += int64(n)
	return n, err
}

// ReadFrom copies src to the response through the underlying writer's
// io.ReaderFrom when it has one.
func (w *responseWriter) ReadFrom(src io.Reader) (int64, error) {
	if w.status == 0 {
		w.status = http.StatusOK
	}
	n, err := io.Copy(w.ResponseWriter, src)
	w.bytes += n
	return n, err
}

// Flush sends any buffered data to the client, if the underlying writer
// can flush.
func (w *responseWriter) Flush() {
	if err := http.NewResponseController(w.ResponseWriter).Flush(); err == nil && w.status == 0 {
		w.status = http.StatusOK
	}
}

// Hijack lets the handler take over the connection, if the underlying
// writer allows it.
func (w *responseWriter) Hijack() (net.Conn, *bufio.ReadWriter, error) {
	conn, rw, err := http.NewResponseController(w.ResponseWriter).Hijack()
	if err == nil {
		w.hijacked = true
	}
	return conn, rw, err
}

// Unwrap returns the underlying writer, for http.ResponseController.
func (w *responseWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }

// The interfaces handlers type-assert keep working through the wrapper.
var (
	_ http.Flusher  = (*responseWriter)(nil)
	_ http.Hijacker = (*responseWriter)(nil)
	_ io.ReaderFrom = (*responseWriter)(nil)
)
