//go:build cgo

package audit

import (
	"errors"

	"github.com/mattn/go-sqlite3"
)

// sqliteCgo says that this build can open SQLite databases.
const sqliteCgo = true

// sqliteBusy reports whether err is SQLite's "database is locked" or
// "table is locked": from mattn/go-sqlite3 (WithSQLite), or from a pure-Go
// driver passed through WithDialector or WithDB.
func sqliteBusy(err error) bool {
	var se sqlite3.Error
	if errors.As(err, &se) {
		return se.Code == sqlite3.ErrBusy || se.Code == sqlite3.ErrLocked
	}
	return driverBusy(err)
}
