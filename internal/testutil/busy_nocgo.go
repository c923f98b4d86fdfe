//go:build !cgo

package testutil

import "strings"

// IsBusy reports whether err is SQLite's "database is locked" or "table is
// locked". Without cgo mattn/go-sqlite3 has no error codes (and cannot open
// a database), so its text is all there is to go by.
func IsBusy(err error) bool {
	if err == nil {
		return false
	}
	msg := err.Error()
	return strings.Contains(msg, "database is locked") || strings.Contains(msg, "table is locked")
}
