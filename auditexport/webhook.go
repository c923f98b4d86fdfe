package auditexport

import (
	"bytes"
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"time"
)

// Headers of a webhook request.
const (
	// IdempotencyKeyHeader carries the batch's key: "audit-FIRST-LAST",
	// its first and last IDs. A batch sent again (a retry, or a restart
	// before the cursor moved) with the same entries has the same key.
	IdempotencyKeyHeader = "Idempotency-Key"
	// SignatureHeader carries "sha256=" and the lowercase hex of
	// HMAC-SHA256(secret, body), as GitHub's X-Hub-Signature-256 does.
	SignatureHeader = "X-Audit-Signature-256"
	// NDJSONContentType is the body's type: one [Record] a line.
	NDJSONContentType = "application/x-ndjson"
	// DefaultWebhookTimeout bounds one request.
	DefaultWebhookTimeout = 30 * time.Second
)

// WebhookOptions configure a [WebhookSink].
type WebhookOptions struct {
	// Client sends the requests. Defaults to a client with a timeout of
	// DefaultWebhookTimeout.
	Client *http.Client
	// Header is added to every request (e.g. Authorization).
	Header http.Header
}

// WebhookSink POSTs each batch to a URL as NDJSON, with an
// [IdempotencyKeyHeader] and a [SignatureHeader]. Any 2xx answer
// delivers the batch; anything else, or no answer, is an error, and the
// exporter sends the batch again.
type WebhookSink struct {
	url    string
	secret []byte
	opts   WebhookOptions
	buf    bytes.Buffer
}

// NewWebhookSink returns a sink that posts to rawURL (http or https),
// signing each body with secret (required: at least 16 bytes).
func NewWebhookSink(rawURL string, secret []byte, opts WebhookOptions) (*WebhookSink, error) {
	u, err := url.Parse(rawURL)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return nil, fmt.Errorf("auditexport: NewWebhookSink: URL %q is not an http or https URL", rawURL)
	}
	if len(secret) < 16 {
		return nil, fmt.Errorf("auditexport: NewWebhookSink: secret is %d bytes; at least 16 are needed", len(secret))
	}
	if opts.Client == nil {
		opts.Client = &http.Client{Timeout: DefaultWebhookTimeout}
	}
	return &WebhookSink{url: rawURL, secret: bytes.Clone(secret), opts: opts}, nil
}

// Sign returns the value of [SignatureHeader] for body under secret; a
// receiver compares it with hmac.Equal.
func Sign(secret, body []byte) string {
	m := hmac.New(sha256.New, secret)
	m.Write(body)
	return "sha256=" + hex.EncodeToString(m.Sum(nil))
}

// Write posts the batch.
func (s *WebhookSink) Write(ctx context.Context, batch []Record) error {
	if len(batch) == 0 {
		return nil
	}
	s.buf.Reset()
	enc := json.NewEncoder(&s.buf)
	for i := range batch {
		if err := enc.Encode(&batch[i]); err != nil {
			return fmt.Errorf("auditexport: encode entry %d: %w", batch[i].ID, err)
		}
	}
	body := s.buf.Bytes()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, s.url, bytes.NewReader(body))
	if err != nil {
		return fmt.Errorf("auditexport: webhook: %w", err)
	}
	for k, vs := range s.opts.Header {
		req.Header[k] = vs
	}
	req.Header.Set("Content-Type", NDJSONContentType)
	req.Header.Set(IdempotencyKeyHeader, "audit-"+strconv.FormatInt(batch[0].ID, 10)+"-"+strconv.FormatInt(batch[len(batch)-1].ID, 10))
	req.Header.Set(SignatureHeader, Sign(s.secret, body))
	resp, err := s.opts.Client.Do(req)
	if err != nil {
		return fmt.Errorf("auditexport: webhook: %w", err)
	}
	defer resp.Body.Close()
	msg, _ := io.ReadAll(io.LimitReader(resp.Body, 512))
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 1<<20)) // let the connection be reused
	if resp.StatusCode/100 != 2 {
		return fmt.Errorf("auditexport: webhook %s: %w", s.url, &StatusError{Code: resp.StatusCode, Body: string(msg)})
	}
	return nil
}

// StatusError is a webhook's answer other than 2xx.
type StatusError struct {
	Code int
	Body string // the start of the answer's body
}

func (e *StatusError) Error() string {
	return fmt.Sprintf("answered %d %s: %q", e.Code, http.StatusText(e.Code), e.Body)
}

// Close releases idle connections.
func (s *WebhookSink) Close() error {
	s.opts.Client.CloseIdleConnections()
	return nil
}
