package auditexport

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"os"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"
)

// Defaults of [SyslogOptions].
const (
	// DefaultFacility is 13, "log audit" (RFC 5424, 6.2.1).
	DefaultFacility = 13
	DefaultAppName  = "audit"
	// DefaultSDID is the SD-ID of the structured data element. 32473 is
	// the Private Enterprise Number that RFC 5612 reserves for
	// documentation: use your own organisation's number in production.
	DefaultSDID = "audit@32473"
	// MaxUDPMessage is the largest message sent in one UDP datagram;
	// a longer one loses the end of its MSG part (see [SyslogSink]).
	MaxUDPMessage = 65000
	// DefaultDialTimeout bounds connecting and each batch's write.
	DefaultDialTimeout = 10 * time.Second
)

// Severities of a syslog message (RFC 5424, 6.2.1).
const (
	severityNotice = 5
	severityInfo   = 6
)

// SyslogOptions configure a [SyslogSink].
type SyslogOptions struct {
	Facility int    // 0 through 23; defaults to DefaultFacility. Use -1 for 0 (kern).
	Hostname string // HOSTNAME; defaults to os.Hostname()
	AppName  string // APP-NAME; defaults to DefaultAppName
	SDID     string // SD-ID of the fields' element; defaults to DefaultSDID
	Timeout  time.Duration
}

// SyslogSink sends each record as one RFC 5424 message, over TCP with
// octet-counting framing (RFC 6587, 3.4.1: "LEN SP MSG") or over UDP, one
// datagram each (RFC 5426):
//
//	<PRI>1 TIMESTAMP HOSTNAME APP-NAME - MSGID [SD-ID id="..." time="..." event_type="..."
//	actor="..." resource="..." outcome="..." request_id="..." prev_hash="..." hash="..."] BOM JSON
//
// PRI is the facility and severity (notice for the outcomes "failure"
// and "denied", informational otherwise); TIMESTAMP is the entry's time
// to the microsecond (the most RFC 5424 allows; the exact time is in the
// time parameter); MSGID is the event type with every character outside
// printable ASCII replaced by "_", cut to 32. In PARAM-VALUEs '"', '\' and
// ']' are escaped with a backslash (RFC 5424, 6.3.3) and control
// characters are written as the six characters \u00XX, so no message
// holds a control character. MSG is the whole [Record] as JSON (Details
// included), which re-verifies the chain.
//
// TCP delivers a batch when every message is written; a connection that
// failed, or that the receiver closed, is dialled again by the next Write.
// Syslog over TCP has no acknowledgements: a receiver that crashes with a
// batch still in its socket buffers loses it, and the exporter cannot
// know (use the webhook or OTLP sink where that matters). UDP reports no loss: what
// the exporter counts as delivered over UDP is what was sent, and a
// message longer than MaxUDPMessage is cut in its MSG.
type SyslogSink struct {
	network, addr string
	opts          SyslogOptions
	conn          net.Conn
	buf           bytes.Buffer
	msg           bytes.Buffer
}

// NewSyslogSink returns a sink that sends to addr ("host:port") over
// network "tcp" or "udp". It connects on the first Write.
func NewSyslogSink(network, addr string, opts SyslogOptions) (*SyslogSink, error) {
	if network != "tcp" && network != "udp" {
		return nil, fmt.Errorf("auditexport: NewSyslogSink: network %q: want tcp or udp", network)
	}
	if _, _, err := net.SplitHostPort(addr); err != nil {
		return nil, fmt.Errorf("auditexport: NewSyslogSink: address %q: %w", addr, err)
	}
	switch {
	case opts.Facility == 0:
		opts.Facility = DefaultFacility
	case opts.Facility == -1:
		opts.Facility = 0
	case opts.Facility < 0 || opts.Facility > 23:
		return nil, fmt.Errorf("auditexport: NewSyslogSink: SyslogOptions.Facility %d is outside 0 through 23", opts.Facility)
	}
	if opts.Hostname == "" {
		opts.Hostname, _ = os.Hostname()
	}
	opts.Hostname = headerField(opts.Hostname, 255)
	if opts.AppName == "" {
		opts.AppName = DefaultAppName
	}
	opts.AppName = headerField(opts.AppName, 48)
	if opts.SDID == "" {
		opts.SDID = DefaultSDID
	}
	if !validSDName(opts.SDID) {
		return nil, fmt.Errorf("auditexport: NewSyslogSink: SyslogOptions.SDID %q: want 1 to 32 printable ASCII characters, none of '=', ' ', ']', '\"'", opts.SDID)
	}
	if opts.Timeout <= 0 {
		opts.Timeout = DefaultDialTimeout
	}
	return &SyslogSink{network: network, addr: addr, opts: opts}, nil
}

// Write sends the batch, one message per record.
func (s *SyslogSink) Write(ctx context.Context, batch []Record) error {
	if s.conn != nil && s.network == "tcp" && peerClosed(s.conn) {
		s.drop()
	}
	if s.conn == nil {
		d := net.Dialer{Timeout: s.opts.Timeout}
		conn, err := d.DialContext(ctx, s.network, s.addr)
		if err != nil {
			return fmt.Errorf("auditexport: syslog: %w", err)
		}
		s.conn = conn
	}
	deadline := time.Now().Add(s.opts.Timeout)
	if d, ok := ctx.Deadline(); ok && d.Before(deadline) {
		deadline = d
	}
	_ = s.conn.SetWriteDeadline(deadline)
	s.buf.Reset()
	for i := range batch {
		if err := s.format(&s.msg, &batch[i]); err != nil {
			return err
		}
		if s.network == "udp" {
			m := s.msg.Bytes()
			if len(m) > MaxUDPMessage {
				m = m[:MaxUDPMessage]
			}
			if _, err := s.conn.Write(m); err != nil {
				s.drop()
				return fmt.Errorf("auditexport: syslog udp %s: %w", s.addr, err)
			}
			continue
		}
		s.buf.WriteString(strconv.Itoa(s.msg.Len()))
		s.buf.WriteByte(' ')
		s.buf.Write(s.msg.Bytes())
	}
	if s.network == "tcp" {
		if _, err := s.conn.Write(s.buf.Bytes()); err != nil {
			s.drop()
			return fmt.Errorf("auditexport: syslog tcp %s: %w", s.addr, err)
		}
	}
	return nil
}

// peerClosed reports whether the receiver has closed the connection, so
// that a batch is not written into a connection that can no longer
// deliver it (the first write after a peer's close often succeeds).
func peerClosed(conn net.Conn) bool {
	_ = conn.SetReadDeadline(time.Now().Add(time.Millisecond))
	defer conn.SetReadDeadline(time.Time{}) //nolint:errcheck
	var b [1]byte
	_, err := conn.Read(b[:])
	var ne net.Error
	return !(errors.As(err, &ne) && ne.Timeout()) // a timeout: still open, nothing to read
}

func (s *SyslogSink) drop() {
	if s.conn != nil {
		_ = s.conn.Close()
		s.conn = nil
	}
}

// Close closes the connection.
func (s *SyslogSink) Close() error {
	s.drop()
	return nil
}

// format writes the RFC 5424 message of r into b.
func (s *SyslogSink) format(b *bytes.Buffer, r *Record) error {
	b.Reset()
	sev := severityInfo
	if r.Outcome == "failure" || r.Outcome == "denied" {
		sev = severityNotice
	}
	t, err := time.Parse(TimeLayout, r.Time)
	if err != nil {
		return fmt.Errorf("auditexport: entry %d: time %q: %w", r.ID, r.Time, err)
	}
	b.WriteByte('<')
	b.WriteString(strconv.Itoa(s.opts.Facility*8 + sev))
	b.WriteString(">1 ")
	b.WriteString(t.UTC().Format("2006-01-02T15:04:05.000000Z"))
	b.WriteByte(' ')
	b.WriteString(s.opts.Hostname)
	b.WriteByte(' ')
	b.WriteString(s.opts.AppName)
	b.WriteString(" - ")
	b.WriteString(headerField(r.EventType, 32))
	b.WriteString(" [")
	b.WriteString(s.opts.SDID)
	param := func(name, value string) {
		b.WriteByte(' ')
		b.WriteString(name)
		b.WriteString(`="`)
		writeParamValue(b, value)
		b.WriteByte('"')
	}
	param("id", strconv.FormatInt(r.ID, 10))
	param("time", r.Time)
	param("event_type", r.EventType)
	param("actor", r.Actor)
	param("resource", r.Resource)
	param("outcome", r.Outcome)
	param("request_id", r.RequestID)
	param("prev_hash", r.PrevHash)
	param("hash", r.Hash)
	b.WriteString("] \xef\xbb\xbf") // BOM: MSG is UTF-8
	js, err := json.Marshal(r)
	if err != nil {
		return fmt.Errorf("auditexport: encode entry %d: %w", r.ID, err)
	}
	writeJSONNoControls(b, js)
	return nil
}

// writeJSONNoControls writes js with DEL and the C1 control characters,
// which encoding/json leaves raw, escaped as \u00XX (they occur only
// inside JSON strings, where the escape means the same character).
func writeJSONNoControls(b *bytes.Buffer, js []byte) {
	for len(js) > 0 {
		c, size := utf8.DecodeRune(js)
		if c == 0x7f || (c >= 0x80 && c < 0xa0) {
			fmt.Fprintf(b, `\u%04x`, c)
		} else {
			b.Write(js[:size])
		}
		js = js[size:]
	}
}

// writeParamValue writes v as an RFC 5424 PARAM-VALUE (without quotes).
func writeParamValue(b *bytes.Buffer, v string) {
	for _, c := range v {
		switch {
		case c == '"' || c == '\\' || c == ']':
			b.WriteByte('\\')
			b.WriteRune(c)
		case c < 0x20 || c == 0x7f || (c >= 0x80 && c < 0xa0):
			fmt.Fprintf(b, `\u%04x`, c)
		default:
			b.WriteRune(c)
		}
	}
}

// headerField returns s as a header field of RFC 5424: printable ASCII
// (33 through 126), at most n characters, "-" when empty.
func headerField(s string, n int) string {
	var b strings.Builder
	for i := 0; i < len(s) && b.Len() < n; i++ {
		if c := s[i]; c >= 33 && c <= 126 {
			b.WriteByte(c)
		} else {
			b.WriteByte('_')
		}
	}
	if b.Len() == 0 {
		return "-"
	}
	return b.String()
}

// validSDName reports whether s is an SD-NAME (RFC 5424, 6.3.2).
func validSDName(s string) bool {
	if s == "" || len(s) > 32 {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c < 33 || c > 126 || c == '=' || c == ' ' || c == ']' || c == '"' {
			return false
		}
	}
	return true
}
