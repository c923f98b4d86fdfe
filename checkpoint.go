package audit

import (
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"database/sql"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"strconv"
	"strings"
	"sync"
	"time"

	"golang.org/x/mod/sumdb/note"
	"golang.org/x/mod/sumdb/tlog"
)

// ErrCheckpoint is returned, wrapped with the reason, for a checkpoint that
// cannot be used: malformed, signed by no trusted key, or of another log.
var ErrCheckpoint = errors.New("audit: checkpoint does not verify")

// Defaults of automatic checkpoints (see [WithCheckpointEvery]).
const (
	DefaultCheckpointEntries  = 4096        // a checkpoint after this many new entries...
	DefaultCheckpointInterval = time.Minute // ...or this long after the last one, if the tree grew
	// publishTimeout bounds one signing, storing and publishing.
	publishTimeout = 30 * time.Second
)

// A Checkpoint is a signed statement of a log's Merkle tree: its size and
// root. Its text is the C2SP tlog-checkpoint body (the origin line, the tree
// size in decimal, the root hash in standard base64, each on its own line)
// and Note is that text signed as a golang.org/x/mod/sumdb/note note.
type Checkpoint struct {
	Origin string    // identifies the log: the signer's name, "/", the table
	Size   int64     // leaves in the tree
	Root   tlog.Hash // the tree's root hash
	Note   []byte    // the signed note; nil when not signed
}

// Text returns the checkpoint's body, the text that its note signs.
func (c Checkpoint) Text() string {
	return c.Origin + "\n" + strconv.FormatInt(c.Size, 10) + "\n" + base64.StdEncoding.EncodeToString(c.Root[:]) + "\n"
}

// ParseCheckpoint opens a signed checkpoint note, checks its signature
// under v and parses its body. Errors wrap ErrCheckpoint.
func ParseCheckpoint(msg []byte, v note.Verifier) (Checkpoint, error) {
	n, err := note.Open(msg, note.VerifierList(v))
	if err != nil {
		return Checkpoint{}, fmt.Errorf("%w: signature under %s: %w", ErrCheckpoint, v.Name(), err)
	}
	c, err := parseCheckpointText(n.Text)
	if err != nil {
		return Checkpoint{}, err
	}
	c.Note = append([]byte(nil), msg...)
	return c, nil
}

// ParseUnverifiedCheckpoint parses a checkpoint note without checking its
// signature, for tools that only need its size (to build a proof that the
// reader then checks).
func ParseUnverifiedCheckpoint(msg []byte) (Checkpoint, error) {
	_, err := note.Open(msg, nil)
	var un *note.UnverifiedNoteError
	if !errors.As(err, &un) {
		return Checkpoint{}, fmt.Errorf("%w: %w", ErrCheckpoint, err)
	}
	c, err := parseCheckpointText(un.Note.Text)
	if err != nil {
		return Checkpoint{}, err
	}
	c.Note = append([]byte(nil), msg...)
	return c, nil
}

func parseCheckpointText(text string) (Checkpoint, error) {
	lines := strings.SplitN(text, "\n", 4)
	if len(lines) < 4 || lines[0] == "" {
		return Checkpoint{}, fmt.Errorf("%w: the body is not origin, size and root on three lines", ErrCheckpoint)
	}
	size, err := strconv.ParseInt(lines[1], 10, 64)
	if err != nil || size < 0 || strconv.FormatInt(size, 10) != lines[1] {
		return Checkpoint{}, fmt.Errorf("%w: tree size %q is not a decimal number", ErrCheckpoint, lines[1])
	}
	root, err := base64.StdEncoding.DecodeString(lines[2])
	if err != nil || len(root) != tlog.HashSize {
		return Checkpoint{}, fmt.Errorf("%w: root %q is not a base64 hash of 32 bytes", ErrCheckpoint, lines[2])
	}
	return Checkpoint{Origin: lines[0], Size: size, Root: tlog.Hash(root)}, nil
}

// A CheckpointSink publishes checkpoints: to a file another machine
// collects, a witness, a transparency service. The service calls it from
// one goroutine of its own, never from Record, and counts and logs its
// errors.
type CheckpointSink interface {
	PublishCheckpoint(ctx context.Context, c Checkpoint) error
}

// FileSink is a CheckpointSink that appends every checkpoint's note to a
// file, followed by an empty line, and syncs it. It never rewrites what is
// there: give the file to a collector, or make it append-only.
type FileSink struct {
	mu   sync.Mutex // serialises appends
	path string
}

// NewFileSink returns a FileSink that appends to path, creating the file
// (mode 0644) if missing.
func NewFileSink(path string) *FileSink { return &FileSink{path: path} }

// PublishCheckpoint appends c's note to the file.
func (f *FileSink) PublishCheckpoint(_ context.Context, c Checkpoint) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	file, err := os.OpenFile(f.path, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o644)
	if err != nil {
		return fmt.Errorf("checkpoint file: %w", err)
	}
	_, err = file.Write(append(append([]byte(nil), c.Note...), '\n'))
	if err == nil {
		err = file.Sync()
	}
	if cerr := file.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("checkpoint file %s: %w", f.path, err)
	}
	return nil
}

// SplitCheckpoints splits what a FileSink wrote into its notes, oldest
// first: each note is its body, an empty line and its signature lines, and
// the sink ends each with an empty line.
func SplitCheckpoints(data []byte) [][]byte {
	var out [][]byte
	var cur strings.Builder
	inSigs := false
	for _, line := range strings.SplitAfter(string(data), "\n") {
		switch {
		case line == "\n" && !inSigs && cur.Len() > 0:
			inSigs = true
			cur.WriteString(line)
		case line == "\n" && inSigs, line == "" && inSigs:
			out = append(out, []byte(cur.String()))
			cur.Reset()
			inSigs = false
		case line == "\n" || line == "":
			// stray empty line between notes
		default:
			cur.WriteString(line)
		}
	}
	if inSigs && cur.Len() > 0 {
		out = append(out, []byte(cur.String()))
	}
	return out
}

// Checkpoint signs a checkpoint of the log's tree as it is now with the
// signer of [WithSigner], keeps it in CheckpointTable and returns it. It
// does not hand the checkpoint to the sink: automatic checkpoints do.
func (s *AuditService) Checkpoint(ctx context.Context) (Checkpoint, error) {
	if s.cfg.tree.signer == nil {
		return Checkpoint{}, errors.New("audit: checkpoint: no signer (see WithSigner)")
	}
	return s.SignCheckpoint(ctx, s.cfg.tree.signer)
}

// SignCheckpoint is Checkpoint with the given signer, for tools that hold
// a signer key but did not open the service with it. The origin line is
// the signer's name, "/", and the table's name.
func (s *AuditService) SignCheckpoint(ctx context.Context, signer note.Signer) (Checkpoint, error) {
	if signer == nil {
		return Checkpoint{}, errors.New("audit: checkpoint: nil signer")
	}
	sess, done, err := s.use(ctx, "checkpoint")
	if err != nil {
		return Checkpoint{}, err
	}
	defer done()
	c, err := s.signCheckpoint(ctx, sess, signer)
	if err != nil {
		return Checkpoint{}, fmt.Errorf("audit: checkpoint: %w", err)
	}
	return c, nil
}

// signCheckpoint reads the tree's size and root in one read transaction,
// signs them and stores the checkpoint.
func (s *AuditService) signCheckpoint(ctx context.Context, sess *session, signer note.Signer) (Checkpoint, error) {
	c, err := s.currentTree(ctx, sess)
	if err != nil {
		return c, err
	}
	c.Origin = signer.Name() + "/" + sess.q.key
	if c.Note, err = note.Sign(&note.Note{Text: c.Text()}, signer); err != nil {
		return c, fmt.Errorf("sign: %w", err)
	}
	ts := &sess.q.tree
	if _, err := sess.sqlDB.ExecContext(ctx, ts.putCP, ts.key, c.Size, string(c.Note)); err != nil {
		return c, fmt.Errorf("store checkpoint: %w", err)
	}
	return c, nil
}

// currentTree returns the size and root of the stored tree.
func (s *AuditService) currentTree(ctx context.Context, sess *session) (Checkpoint, error) {
	tx, err := sess.sqlDB.BeginTx(ctx, readTxOptions(sess))
	if err != nil {
		return Checkpoint{}, fmt.Errorf("begin: %w", err)
	}
	defer tx.Rollback() //nolint:errcheck // read-only
	h, ok, err := readTreeHead(ctx, tx, &sess.q.tree)
	if err != nil {
		return Checkpoint{}, err
	}
	if !ok {
		return Checkpoint{}, errors.New("the log has no tree head")
	}
	root, err := treeRoot(ctx, tx, &sess.q.tree, h)
	if err != nil {
		return Checkpoint{}, err
	}
	return Checkpoint{Size: h.size, Root: root}, nil
}

// LastCheckpoint returns the largest checkpoint kept in CheckpointTable,
// unverified (check it with ParseCheckpoint), and false if there is none.
func (s *AuditService) LastCheckpoint(ctx context.Context) ([]byte, bool, error) {
	sess, done, err := s.use(ctx, "last checkpoint")
	if err != nil {
		return nil, false, err
	}
	defer done()
	var size int64
	var text string
	err = sess.sqlDB.QueryRowContext(ctx, sess.q.tree.lastCP, sess.q.tree.key).Scan(&size, &text)
	if err != nil {
		if errors.Is(err, sql.ErrNoRows) {
			return nil, false, nil
		}
		return nil, false, fmt.Errorf("audit: last checkpoint: %w", err)
	}
	return []byte(text), true, nil
}

// pruneCheckpoint is the authenticated prune checkpoint kept in the tree
// head: the last pruned entry, the tree size at the prune, and an HMAC under
// the chain key and/or a note signed by the signer over them.
type pruneCheckpoint struct {
	id        int64
	hash      string
	size      int64
	mac, note string
}

// pruneText is what a prune checkpoint authenticates.
func pruneText(table string, id int64, hash string, size int64) string {
	return "audit prune checkpoint v1\n" + table + "\n" + strconv.FormatInt(id, 10) + "\n" + hash + "\n" + strconv.FormatInt(size, 10) + "\n"
}

// authPrune keeps (id, hash) as the authenticated prune checkpoint, in tx,
// with the tree's size now. Prune's hook (and the tree head's creation).
func (s *AuditService) authPrune(ctx context.Context, tx execer, sess *session, id int64, hash string) error {
	if err := sess.refuseWrite(); err != nil {
		return err // a prune under another key could not be authenticated
	}
	ts := &sess.q.tree
	h, ok, err := readTreeHead(ctx, tx, ts)
	if err != nil || !ok {
		return err
	}
	p := pruneCheckpoint{id: id, hash: hash, size: h.size}
	if p.mac, p.note, err = s.signPrune(ts.key, p); err != nil {
		return err
	}
	if _, err := tx.ExecContext(ctx, ts.setPrune, p.id, p.hash, p.size, p.mac, p.note, ts.key); err != nil {
		return fmt.Errorf("keep the prune checkpoint: %w", err)
	}
	return nil
}

// signPrune returns p's HMAC under the chain key and its note signed by
// the signer, each empty without them.
func (s *AuditService) signPrune(table string, p pruneCheckpoint) (mac, signed string, err error) {
	text := pruneText(table, p.id, p.hash, p.size)
	if s.cfg.chainKey != nil {
		m := hmac.New(sha256.New, s.cfg.chainKey)
		m.Write([]byte(text))
		mac = hex.EncodeToString(m.Sum(nil))
	}
	if s.cfg.tree.signer != nil {
		b, err := note.Sign(&note.Note{Text: text}, s.cfg.tree.signer)
		if err != nil {
			return "", "", fmt.Errorf("sign the prune checkpoint: %w", err)
		}
		signed = string(b)
	}
	return mac, signed, nil
}

// checkPrune is Verify's hook: it returns ErrTampered when entries are
// missing from the start of the log (the chain head's prune checkpoint is
// past ID 0) and no authentic prune checkpoint accounts for them, or when
// the tree holds more leaves than the chain has entries (the newest were
// removed and the head rewritten). v, when not nil, checks the signed
// prune note; without it, a signer's note is checked by signing again
// (Ed25519 signatures are deterministic).
func (s *AuditService) checkPrune(ctx context.Context, q execer, sess *session, head chainHead, v note.Verifier) error {
	ts := &sess.q.tree
	h, ok, err := readTreeHead(ctx, q, ts)
	if err != nil {
		return err
	}
	keyed := s.cfg.chainKey != nil || s.cfg.tree.signer != nil || v != nil
	if !ok {
		if head.prunedID > 0 && keyed {
			return fmt.Errorf("%w at ID %d: entries before it are missing and the log has no tree head to account for them", ErrTampered, head.prunedID+1)
		}
		return nil
	}
	if n := head.lastID - h.base; h.size > n {
		return fmt.Errorf("%w at ID %d: the tree holds %d entries but the chain ends at entry %d: the newest entries were removed", ErrTampered, head.lastID+1, h.size, head.lastID)
	}
	if head.prunedID == 0 {
		return nil
	}
	p := h.prune
	why := ""
	switch {
	case p.id != head.prunedID || p.hash != head.prunedHash:
		why = fmt.Sprintf("the chain head says entries through %d were pruned, the authenticated prune checkpoint says %d", head.prunedID, p.id)
	case p.size > h.size || p.id > h.base+p.size:
		why = "the prune checkpoint is past the tree"
	default:
		why = s.checkPruneAuth(ts.key, p, v)
	}
	if why != "" {
		return fmt.Errorf("%w at ID %d: entries before it are missing and no authentic prune checkpoint accounts for them: %s", ErrTampered, head.prunedID+1, why)
	}
	return nil
}

// checkPruneAuth returns why p is not authentic, or "".
func (s *AuditService) checkPruneAuth(table string, p pruneCheckpoint, v note.Verifier) string {
	mac, signed, err := s.signPrune(table, p)
	if err != nil {
		return err.Error()
	}
	if s.cfg.chainKey != nil && !hmac.Equal([]byte(mac), []byte(p.mac)) {
		return "its HMAC does not verify under the chain key"
	}
	text := pruneText(table, p.id, p.hash, p.size)
	switch {
	case v != nil:
		n, err := note.Open([]byte(p.note), note.VerifierList(v))
		if err != nil || n.Text != text {
			return "its signature does not verify under " + v.Name()
		}
	case s.cfg.tree.signer != nil && signed != p.note:
		return "its signature is not the signer's"
	}
	return ""
}
