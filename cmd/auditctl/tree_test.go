package main

import (
	"crypto/rand"
	"encoding/base64"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/cleveragents/audit"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"golang.org/x/mod/sumdb/note"
	"golang.org/x/mod/sumdb/tlog"
)

func TestTreeCommands(t *testing.T) {
	dir := t.TempDir()
	db := makeDB(t, 30)
	signerFile := filepath.Join(dir, "signer.key")

	r := runCLI(t, "", "keygen", "--name", "audit.test", "--signer", signerFile)
	require.Equal(t, 0, r.code, r)
	vkey := strings.TrimSpace(r.stdout)
	_, err := note.NewVerifier(vkey)
	require.NoError(t, err, "keygen prints a verifier key")
	fi, err := os.Stat(signerFile)
	require.NoError(t, err)
	assert.Equal(t, os.FileMode(0o600), fi.Mode().Perm())
	r = runCLI(t, "", "keygen", "--name", "audit.test", "--signer", signerFile)
	assert.Equal(t, 1, r.code, "never overwrites a key: %s", r)

	r = runCLI(t, "", "--db", db, "checkpoint", "--signer", signerFile)
	require.Equal(t, 0, r.code, r)
	cpFile := filepath.Join(dir, "checkpoint")
	require.NoError(t, os.WriteFile(cpFile, []byte(r.stdout), 0o644))
	v, _ := note.NewVerifier(vkey)
	cp, err := audit.ParseCheckpoint([]byte(r.stdout), v)
	require.NoError(t, err)
	assert.Equal(t, int64(30), cp.Size)

	// More entries after the checkpoint: verify passes.
	svc, err := audit.New(audit.WithSQLite(db))
	require.NoError(t, err)
	for i := 31; i <= 35; i++ {
		require.NoError(t, svc.Record(t.Context(), entryFor(i)))
	}
	require.NoError(t, svc.Close())
	vkeyFile := filepath.Join(dir, "verifier.key")
	require.NoError(t, os.WriteFile(vkeyFile, []byte(vkey+"\n"), 0o644))
	for _, key := range []string{vkey, vkeyFile} {
		r = runCLI(t, "", "--db", db, "verify", "--checkpoint", cpFile, "--verifier", key)
		require.Equal(t, 0, r.code, r)
		assert.Contains(t, r.stdout, "signature:   OK")
		assert.Contains(t, r.stdout, "consistency: OK")
		assert.Contains(t, r.stdout, "inclusion:   OK")
		assert.Contains(t, r.stdout, "OK: the chain verifies")
	}

	// prove: one base64 hash per line, a proof that tlog checks.
	r = runCLI(t, "", "--db", db, "prove", "--id", "7", "--checkpoint", cpFile)
	require.Equal(t, 0, r.code, r)
	var proof tlog.RecordProof
	for _, line := range strings.Split(strings.TrimSpace(r.stdout), "\n") {
		b, err := base64.StdEncoding.DecodeString(line)
		require.NoError(t, err)
		proof = append(proof, tlog.Hash(b))
	}
	svc, err = audit.New(audit.WithSQLite(db))
	require.NoError(t, err)
	e, err := svc.Get(t.Context(), 7)
	require.NoError(t, err)
	require.NoError(t, svc.Close())
	require.NoError(t, audit.VerifyInclusion(audit.InclusionProof{ID: 7, Hash: e.Hash, Index: 6, TreeSize: cp.Size, Proof: proof}, cp))

	// Another key's verifier: the signature check fails, named.
	_, otherV, err := note.GenerateKey(rand.Reader, "audit.test")
	require.NoError(t, err)
	r = runCLI(t, "", "--db", db, "verify", "--checkpoint", cpFile, "--verifier", otherV)
	assert.Equal(t, 1, r.code, r)
	assert.Contains(t, r.stdout, "CHECKPOINT FAILED: signature")

	// An entry the checkpoint covers is edited: inclusion fails, with its ID.
	execSQL(t, db, `UPDATE audit_entries SET actor = 'mallory' WHERE id = 12`)
	r = runCLI(t, "", "--db", db, "verify", "--checkpoint", cpFile, "--verifier", vkey)
	assert.Equal(t, 1, r.code, r)
	assert.Contains(t, r.stdout, "CHECKPOINT FAILED")
	assert.Contains(t, r.stderr, "ID 12")

	r = runCLI(t, "", "--db", db, "verify", "--checkpoint", cpFile)
	assert.Equal(t, 2, r.code, "--checkpoint needs --verifier: %s", r)
}
