package audit

import (
	"errors"
	"strings"
)

// SQLite's primary result codes for a database locked by another
// connection (SQLITE_BUSY) and a table locked inside one (SQLITE_LOCKED).
// An extended code (SQLITE_BUSY_SNAPSHOT is 517) keeps its primary code in
// the low byte.
const (
	sqliteCodeBusy   = 5
	sqliteCodeLocked = 6
)

// driverBusy reports whether err is SQLite's "database is locked" or
// "table is locked" from a SQLite driver that the library does not import,
// passed in through WithDialector or WithDB: the pure-Go drivers (see
// purego/ and the README's "SQLite without cgo"). It recognises
//   - an error whose Code() int is SQLITE_BUSY or SQLITE_LOCKED, primary or
//     extended: modernc.org/sqlite's *Error, and so glebarez/sqlite's;
//   - else SQLite's own words for those codes, which every driver's message
//     carries (ncruces/go-sqlite3's Code returns a type of its own, so only
//     its text is common).
func driverBusy(err error) bool {
	if err == nil {
		return false
	}
	var coded interface{ Code() int }
	if errors.As(err, &coded) {
		switch coded.Code() & 0xff {
		case sqliteCodeBusy, sqliteCodeLocked:
			return true
		}
	}
	msg := err.Error()
	return strings.Contains(msg, "database is locked") || strings.Contains(msg, "table is locked") ||
		strings.Contains(msg, "SQLITE_BUSY") || strings.Contains(msg, "SQLITE_LOCKED")
}
