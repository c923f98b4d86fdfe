package main

import (
	"encoding/json"
	"fmt"
	"net/http"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/cleveragents/audit/audithttp"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// processTimeout bounds every wait on a process: the build, the start, the
// shutdown, an auditctl run.
const processTimeout = 2 * time.Minute

// TestWalkthrough runs the README's walk-through against the built
// binaries: it starts the service, makes the README's requests, stops it
// with SIGTERM, and reads the audit log back with auditctl.
func TestWalkthrough(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs binaries; skipped with -short")
	}
	dir := t.TempDir()
	serviceBin := goBuild(t, dir, "httpservice", ".")
	auditctlBin := goBuild(t, dir, "auditctl", "../../cmd/auditctl")
	dbPath := filepath.Join(dir, "httpservice.db")

	svc := startService(t, serviceBin, "-addr", "127.0.0.1:0", "-db", dbPath)
	c := &client{t: t, base: svc.url, http: &http.Client{Timeout: processTimeout}}

	// The README's curl requests, in order. An empty reqID lets the
	// middleware make one up; the response carries it either way.
	createAlice := c.do("POST", "/accounts", "alice", "",
		`{"owner":"alice","email":"alice@example.com","password":"correct horse battery staple"}`)
	require.Equal(t, http.StatusCreated, createAlice.status, createAlice.body)
	createBob := c.do("POST", "/accounts", "bob", "", `{"owner":"bob","email":"bob@example.com"}`)
	require.Equal(t, http.StatusCreated, createBob.status, createBob.body)
	var alice, bob Account
	require.NoError(t, json.Unmarshal([]byte(createAlice.body), &alice))
	require.NoError(t, json.Unmarshal([]byte(createBob.body), &bob))
	require.Equal(t, int64(1), alice.ID)
	require.Equal(t, int64(2), bob.ID)
	assert.NotContains(t, createAlice.body, "password", "the hash is never served")

	update := c.do("PATCH", "/accounts/1", "alice", "", `{"email":"alice@example.org","balance_delta":10000}`)
	require.Equal(t, http.StatusOK, update.status, update.body)
	assert.Contains(t, update.body, `"balance":10000`)

	transfer := c.do("POST", "/transfer", "alice", "", `{"from":1,"to":2,"amount":2500}`)
	require.Equal(t, http.StatusOK, transfer.status, transfer.body)

	overdraft := c.do("POST", "/transfer", "bob", "overdraft-1", `{"from":2,"to":1,"amount":50000}`)
	require.Equal(t, http.StatusConflict, overdraft.status, overdraft.body)
	assert.Equal(t, "overdraft-1", overdraft.reqID, "the middleware keeps the client's X-Request-ID")

	del := c.do("DELETE", "/accounts/2", "bob", "", "")
	require.Equal(t, http.StatusNoContent, del.status, del.body)

	get := c.do("GET", "/accounts/1", "carol", "", "")
	require.Equal(t, http.StatusOK, get.status, get.body)
	assert.Contains(t, get.body, `"balance":7500`, "the rolled-back transfer left alice's balance alone")

	health := c.do("GET", "/healthz", "", "", "")
	require.Equal(t, http.StatusOK, health.status, health.body)
	assert.Empty(t, health.reqID, "/healthz is skipped by the middleware")

	requests := []response{createAlice, createBob, update, transfer, overdraft, del, get}
	for _, r := range requests {
		require.NotEmpty(t, r.reqID, "%s %s: no X-Request-ID on the response", r.method, r.path)
	}

	svc.stop(t)
	assert.Contains(t, svc.output(), "stopped: 13 audit entries written")

	// The log, as the README reads it.
	list := runCmd(t, auditctlBin, "--db", dbPath, "list", "--json", "--limit", "0")
	require.Equal(t, 0, list.code, list)
	entries := parseEntries(t, list.stdout)

	byRequest := map[string][]logEntry{}
	for _, e := range entries {
		byRequest[e.RequestID] = append(byRequest[e.RequestID], e)
	}
	assert.Len(t, byRequest, len(requests), "entries only of these requests: %v", entries)
	assert.Len(t, entries, len(requests)+6, "one http.request per request, 6 model changes: %v", entries)

	t.Run("every request has one http.request entry with its actor, request ID and outcome", func(t *testing.T) {
		for _, r := range requests {
			var found []logEntry
			for _, e := range byRequest[r.reqID] {
				if e.EventType == audithttp.DefaultEventType {
					found = append(found, e)
				}
			}
			if !assert.Len(t, found, 1, "%s %s", r.method, r.path) {
				continue
			}
			e := found[0]
			assert.Equal(t, r.user, e.Actor, "%s %s", r.method, r.path)
			assert.Equal(t, r.path, e.Resource)
			assert.Equal(t, r.method, e.Details["method"], "%s %s", r.method, r.path)
			assert.Equal(t, audithttp.OutcomeOf(r.status), e.Outcome, "%s %s", r.method, r.path)
			assert.EqualValues(t, r.status, e.Details["status"], "%s %s", r.method, r.path)
			// The middleware records after the handler returns: the
			// request's model changes, made during it, are dated before
			// it. (Their IDs need not be smaller: the plugin writes them
			// inside the business transactions, and the log chains them
			// once it finds them committed.)
			for _, other := range byRequest[r.reqID] {
				assert.False(t, other.Time.After(e.Time), "%s %s: the http.request entry is the request's last", r.method, r.path)
			}
		}
	})

	t.Run("the failed transfer recorded its request with Outcome for 409 and no model change", func(t *testing.T) {
		got := byRequest["overdraft-1"]
		require.Len(t, got, 1, "the rolled-back updates were dropped: %v", got)
		assert.Equal(t, audithttp.DefaultEventType, got[0].EventType)
		assert.Equal(t, audithttp.OutcomeOf(http.StatusConflict), got[0].Outcome)
		assert.Equal(t, audithttp.OutcomeClientError, got[0].Outcome)
		assert.Equal(t, "bob", got[0].Actor)
	})

	t.Run("model changes carry the actor and request ID of their request", func(t *testing.T) {
		type change struct{ eventType, resource, actor string }
		want := map[string][]change{
			createAlice.reqID: {{"accounts.create", "accounts/1", "alice"}},
			createBob.reqID:   {{"accounts.create", "accounts/2", "bob"}},
			update.reqID:      {{"accounts.update", "accounts/1", "alice"}},
			transfer.reqID:    {{"accounts.update", "accounts/1", "alice"}, {"accounts.update", "accounts/2", "alice"}},
			del.reqID:         {{"accounts.delete", "accounts/2", "bob"}},
			overdraft.reqID:   nil,
			get.reqID:         nil,
		}
		for reqID, changes := range want {
			var got []change
			for _, e := range byRequest[reqID] {
				if strings.HasPrefix(e.EventType, "accounts.") {
					got = append(got, change{e.EventType, e.Resource, e.Actor})
				}
			}
			assert.Equal(t, changes, got, "request %s", reqID)
		}
	})

	t.Run("Details show the changes, with the tagged fields redacted or left out", func(t *testing.T) {
		created := modelEntry(t, byRequest[createAlice.reqID], "accounts.create")
		after := object(t, created.Details, "after")
		assert.Equal(t, "alice@example.com", after["email"])
		assert.Equal(t, "[redacted]", after["password_hash"], `audit:"redact"`)
		assert.NotContains(t, after, "updated_at", `audit:"-"`)

		updated := modelEntry(t, byRequest[update.reqID], "accounts.update")
		assert.Equal(t, []any{"balance", "email"}, updated.Details["changed"])
		assert.EqualValues(t, 0, object(t, updated.Details, "before")["balance"])
		assert.EqualValues(t, 10000, object(t, updated.Details, "after")["balance"])

		deleted := modelEntry(t, byRequest[del.reqID], "accounts.delete")
		assert.EqualValues(t, 2500, object(t, deleted.Details, "before")["balance"])
	})

	t.Run("auditctl verify", func(t *testing.T) {
		verify := runCmd(t, auditctlBin, "--db", dbPath, "verify")
		require.Equal(t, 0, verify.code, verify)
		assert.Contains(t, verify.stdout, fmt.Sprintf("entries:  %d", len(entries)))
		assert.Contains(t, verify.stdout, "OK: the chain verifies")
	})
}
