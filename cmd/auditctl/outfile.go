package main

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
)

// sqliteFiles are the suffixes of the files that make up a SQLite
// database: the file itself, its write-ahead log and shared-memory index,
// and its rollback journal.
var sqliteFiles = []string{"", "-wal", "-shm", "-journal"}

// checkOut refuses an --out that export must not write: the SQLite
// database db ("" for none) or one of its files, under any spelling, even
// with force; and any other existing file without force.
func checkOut(out, db string, force bool) error {
	fi, err := os.Stat(out)
	switch {
	case err == nil:
		if fi.IsDir() {
			return usageErrorf("--out %s is a directory", out)
		}
		if name := dbFileAt(fi, db); name != "" {
			return usageErrorf("--out %s is the database file %s: export never writes over the log", out, name)
		}
		if !force {
			return usageErrorf("--out %s exists: give --force to replace it", out)
		}
		return nil
	case errors.Is(err, fs.ErrNotExist):
		if name := dbFileNamed(out, db); name != "" {
			return usageErrorf("--out %s is the database's file %s: export never writes over the log", out, name)
		}
		return nil
	default:
		return failure(fmt.Errorf("--out: %w", err))
	}
}

// dbSpellings are the paths of db: as given and with its symbolic links
// resolved (SQLite names the -wal and -shm files after either, depending on
// its version and VFS).
func dbSpellings(db string) []string {
	if db == "" {
		return nil
	}
	names := []string{db}
	if real, err := filepath.EvalSymlinks(db); err == nil && real != db {
		names = append(names, real)
	}
	return names
}

// dbFileAt returns the name of the file of db that fi is (the same file,
// through any path or link), or "".
func dbFileAt(fi os.FileInfo, db string) string {
	for _, name := range dbSpellings(db) {
		for _, suffix := range sqliteFiles {
			if st, err := os.Stat(name + suffix); err == nil && os.SameFile(fi, st) {
				return name + suffix
			}
		}
	}
	return ""
}

// dbFileNamed returns the name of the file of db that the path out, which
// does not exist, would create (a -wal file that SQLite would then read as
// the log's), or "". Names are compared ignoring case, as some file
// systems do.
func dbFileNamed(out, db string) string {
	dir, err := os.Stat(filepath.Dir(out))
	if err != nil {
		return ""
	}
	base := filepath.Base(out)
	for _, name := range dbSpellings(db) {
		d, err := os.Stat(filepath.Dir(name))
		if err != nil || !os.SameFile(dir, d) {
			continue
		}
		for _, suffix := range sqliteFiles {
			if strings.EqualFold(base, filepath.Base(name)+suffix) {
				return name + suffix
			}
		}
	}
	return ""
}

// place moves the finished export tmp to out. Without force it never
// replaces a file, not even one that appeared during the export: it links
// tmp to out, which fails if out exists, and removes tmp.
func place(tmp, out string, force bool) error {
	if !force {
		err := os.Link(tmp, out)
		switch {
		case err == nil:
			if err := os.Remove(tmp); err != nil {
				return fmt.Errorf("--out: %w", err)
			}
			return nil
		case errors.Is(err, fs.ErrExist):
			return fmt.Errorf("--out %s appeared during the export: give --force to replace it", out)
		}
		// A file system without hard links: look once more, then rename.
		if _, err := os.Lstat(out); err == nil {
			return fmt.Errorf("--out %s appeared during the export: give --force to replace it", out)
		}
	}
	if err := os.Rename(tmp, out); err != nil {
		return fmt.Errorf("--out: %w", err)
	}
	return nil
}
