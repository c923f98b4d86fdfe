package auditexport

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
)

// DefaultMaxFileSize is the size at which a [FileSink] rotates its file.
const DefaultMaxFileSize = 100 << 20

// FileOptions configure a [FileSink].
type FileOptions struct {
	// MaxSize is the size in bytes past which the file is rotated before
	// the next batch: it is renamed to PATH.N (N = 1, 2, ...: the higher,
	// the newer) and a new file begins. A batch is never split across
	// files. Defaults to DefaultMaxFileSize.
	MaxSize int64
	// MaxBackups is how many rotated files are kept; the oldest beyond
	// that are deleted. Zero keeps all.
	MaxBackups int
	// NoSync skips the fsync after each batch (faster; a power loss may
	// then lose batches that the cursor counts as delivered).
	NoSync bool
}

// FileSink writes records as JSON lines (one [Record] a line, in the
// order of its keys) to a file, rotated by size. A line half-written when
// the process died is cut off when the sink opens the file again, so
// every file holds whole lines only.
type FileSink struct {
	path string
	opts FileOptions

	mu   sync.Mutex // guards the fields below (Write and Close)
	f    *os.File
	size int64 // bytes of whole lines in f
	buf  bytes.Buffer
}

// NewFileSink opens (or creates, mode 0640) the file at path for
// appending. Its directory must exist.
func NewFileSink(path string, opts FileOptions) (*FileSink, error) {
	if path == "" {
		return nil, errors.New("auditexport: NewFileSink: empty path")
	}
	if opts.MaxSize == 0 {
		opts.MaxSize = DefaultMaxFileSize
	}
	if opts.MaxSize < 0 || opts.MaxBackups < 0 {
		return nil, fmt.Errorf("auditexport: NewFileSink %s: negative FileOptions.MaxSize or MaxBackups", path)
	}
	s := &FileSink{path: path, opts: opts}
	if err := s.open(); err != nil {
		return nil, err
	}
	return s, nil
}

// open opens the current file and cuts off a trailing partial line.
func (s *FileSink) open() error {
	f, err := os.OpenFile(s.path, os.O_RDWR|os.O_CREATE, 0o640)
	if err != nil {
		return fmt.Errorf("auditexport: open %s: %w", s.path, err)
	}
	size, err := wholeLines(f)
	if err == nil {
		err = f.Truncate(size)
	}
	if err == nil {
		_, err = f.Seek(size, io.SeekStart)
	}
	if err != nil {
		_ = f.Close()
		return fmt.Errorf("auditexport: open %s: %w", s.path, err)
	}
	s.f, s.size = f, size
	return nil
}

// wholeLines returns the length of f up to and including its last newline.
func wholeLines(f *os.File) (int64, error) {
	end, err := f.Seek(0, io.SeekEnd)
	if err != nil {
		return 0, err
	}
	var b [4096]byte
	for pos := end; pos > 0; {
		n := int64(len(b))
		if pos < n {
			n = pos
		}
		pos -= n
		if _, err := f.ReadAt(b[:n], pos); err != nil {
			return 0, err
		}
		if i := bytes.LastIndexByte(b[:n], '\n'); i >= 0 {
			return pos + int64(i) + 1, nil
		}
	}
	return 0, nil
}

// Write appends the batch as lines, rotating first if the file is full,
// and syncs it. On an error it cuts the file back to its last whole batch.
func (s *FileSink) Write(_ context.Context, batch []Record) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.f == nil {
		if err := s.open(); err != nil {
			return err
		}
	}
	s.buf.Reset()
	enc := json.NewEncoder(&s.buf)
	for i := range batch {
		if err := enc.Encode(&batch[i]); err != nil {
			return fmt.Errorf("auditexport: encode entry %d: %w", batch[i].ID, err)
		}
	}
	if s.size > 0 && s.size+int64(s.buf.Len()) > s.opts.MaxSize {
		if err := s.rotate(); err != nil {
			return err
		}
	}
	if _, err := s.f.Write(s.buf.Bytes()); err != nil {
		return s.fail(err)
	}
	if !s.opts.NoSync {
		if err := s.f.Sync(); err != nil {
			return s.fail(err)
		}
	}
	s.size += int64(s.buf.Len())
	return nil
}

// fail cuts a partly written batch off; the next Write writes it again.
func (s *FileSink) fail(err error) error {
	if terr := s.f.Truncate(s.size); terr != nil {
		_ = s.f.Close()
		s.f = nil // reopened, and cut to whole lines, by the next Write
	} else if _, serr := s.f.Seek(s.size, io.SeekStart); serr != nil {
		_ = s.f.Close()
		s.f = nil
	}
	return fmt.Errorf("auditexport: write %s: %w", s.path, err)
}

// rotate renames the file to the next PATH.N and starts a new one.
func (s *FileSink) rotate() error {
	backups, err := s.Backups()
	if err != nil {
		return err
	}
	next := 1
	if len(backups) > 0 {
		next = backupNumber(s.path, backups[len(backups)-1]) + 1
	}
	if err := s.f.Close(); err != nil {
		return fmt.Errorf("auditexport: rotate %s: %w", s.path, err)
	}
	s.f = nil
	if err := os.Rename(s.path, s.path+"."+strconv.Itoa(next)); err != nil {
		return fmt.Errorf("auditexport: rotate %s: %w", s.path, err)
	}
	if err := s.open(); err != nil {
		return err
	}
	if s.opts.MaxBackups > 0 {
		backups = append(backups, s.path+"."+strconv.Itoa(next))
		for len(backups) > s.opts.MaxBackups {
			if err := os.Remove(backups[0]); err != nil && !errors.Is(err, os.ErrNotExist) {
				return fmt.Errorf("auditexport: remove old %s: %w", backups[0], err)
			}
			backups = backups[1:]
		}
	}
	return nil
}

// Backups returns the rotated files, oldest first; the current file,
// at the sink's path, comes after them.
func (s *FileSink) Backups() ([]string, error) {
	return Backups(s.path)
}

// Backups returns the rotated files of a [FileSink] at path, oldest first.
func Backups(path string) ([]string, error) {
	matches, err := filepath.Glob(escapeGlob(path) + ".*")
	if err != nil {
		return nil, fmt.Errorf("auditexport: list backups of %s: %w", path, err)
	}
	var out []string
	for _, m := range matches {
		if backupNumber(path, m) > 0 {
			out = append(out, m)
		}
	}
	slices.SortFunc(out, func(a, b string) int { return backupNumber(path, a) - backupNumber(path, b) })
	return out, nil
}

// backupNumber returns N of PATH.N, or 0 if name is not a backup.
func backupNumber(path, name string) int {
	n, err := strconv.Atoi(strings.TrimPrefix(name, path+"."))
	if err != nil || !strings.HasPrefix(name, path+".") || n < 1 {
		return 0
	}
	return n
}

func escapeGlob(s string) string {
	r := strings.NewReplacer(`*`, `\*`, `?`, `\?`, `[`, `\[`, `\`, `\\`)
	return r.Replace(s)
}

// Close closes the file.
func (s *FileSink) Close() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.f == nil {
		return nil
	}
	err := s.f.Close()
	s.f = nil
	if err != nil {
		return fmt.Errorf("auditexport: close %s: %w", s.path, err)
	}
	return nil
}
