//go:build cgo

package testutil

import (
	"errors"

	"github.com/mattn/go-sqlite3"
)

// IsBusy reports whether err is SQLite's "database is locked" or "table is
// locked".
func IsBusy(err error) bool {
	var se sqlite3.Error
	return errors.As(err, &se) && (se.Code == sqlite3.ErrBusy || se.Code == sqlite3.ErrLocked)
}
