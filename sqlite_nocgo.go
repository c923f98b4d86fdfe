//go:build !cgo

package audit

import "strings"

// sqliteCgo says that this build cannot open SQLite databases: without
// cgo, mattn/go-sqlite3 is a stub whose every open fails (sqliteExplain
// then says what to do).
const sqliteCgo = false

// sqliteBusy reports whether err is SQLite's "database is locked" or
// "table is locked". Built without cgo, mattn/go-sqlite3 cannot open a
// database at all (the open fails saying that it needs cgo), so only a
// SQLite driver passed through WithDialector or WithDB is left: its error
// text is all that is common.
func sqliteBusy(err error) bool {
	if err == nil {
		return false
	}
	msg := err.Error()
	return strings.Contains(msg, "database is locked") || strings.Contains(msg, "table is locked") ||
		strings.Contains(msg, "SQLITE_BUSY") || strings.Contains(msg, "SQLITE_LOCKED")
}
