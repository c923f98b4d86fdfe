package main

import (
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/cleveragents/audit"
	"github.com/spf13/pflag"
)

// filterFlags are the filters that list, count, export and tail share.
type filterFlags struct {
	actor, eventType, resource, outcome, requestID string
	since, until                                   string
}

func (f *filterFlags) register(fs *pflag.FlagSet) {
	fs.StringVar(&f.actor, "actor", "", "only entries by this actor")
	fs.StringVar(&f.eventType, "type", "", "only entries of this event type, e.g. user.login")
	fs.StringVar(&f.resource, "resource", "", "only entries about this resource")
	fs.StringVar(&f.outcome, "outcome", "", "only entries with this outcome, e.g. failure")
	fs.StringVar(&f.requestID, "request-id", "", "only entries with this request ID")
	fs.StringVar(&f.since, "since", "", "only entries at or after this `time`: a duration back from now (24h, 7d) or RFC 3339")
	fs.StringVar(&f.until, "until", "", "only entries before this `time`: a duration back from now (24h, 7d) or RFC 3339")
}

// filter returns the audit.Filter of the flags, with durations measured
// back from now.
func (f *filterFlags) filter(now time.Time) (audit.Filter, error) {
	af := audit.Filter{
		Actor:     f.actor,
		EventType: f.eventType,
		Resource:  f.resource,
		Outcome:   f.outcome,
		RequestID: f.requestID,
	}
	var err error
	if f.since != "" {
		if af.Since, err = parseWhen(f.since, now); err != nil {
			return af, usageErrorf("--since: %w", err)
		}
	}
	if f.until != "" {
		if af.Until, err = parseWhen(f.until, now); err != nil {
			return af, usageErrorf("--until: %w", err)
		}
	}
	return af, nil
}

// parseWhen reads a point in time: a duration back from now ("24h", "90m",
// "7d"), an RFC 3339 time, or a date (midnight UTC).
func parseWhen(s string, now time.Time) (time.Time, error) {
	if d, ok, err := parseAge(s); ok {
		if err != nil {
			return time.Time{}, err
		}
		return now.Add(-d), nil
	}
	if t, err := time.Parse(time.RFC3339Nano, s); err == nil {
		return t.UTC(), nil
	}
	if t, err := time.Parse(time.DateOnly, s); err == nil {
		return t, nil
	}
	return time.Time{}, fmt.Errorf("%q is neither a duration (24h, 90m, 7d) nor an RFC 3339 time (2024-05-01T12:00:00Z) nor a date (2024-05-01)", s)
}

// parseAge reads a non-negative duration in Go's syntax, or a whole number
// of days ("7d"); ok says whether s looks like a duration at all.
func parseAge(s string) (d time.Duration, ok bool, err error) {
	if days, found := strings.CutSuffix(s, "d"); found {
		n, perr := strconv.ParseUint(days, 10, 32)
		if perr != nil {
			return 0, false, nil
		}
		if n > uint64(maxAge/(24*time.Hour)) {
			return 0, true, fmt.Errorf("%q is too long ago", s)
		}
		return time.Duration(n) * 24 * time.Hour, true, nil
	}
	d, perr := time.ParseDuration(s)
	if perr != nil {
		return 0, false, nil
	}
	if d < 0 {
		return 0, true, fmt.Errorf("%q: a duration back from now must not be negative", s)
	}
	return d, true, nil
}

// maxAge is the longest duration back from now: about 292 years, the most
// a time.Duration holds.
const maxAge = time.Duration(1<<63 - 1)
