//go:build !cgo

package audit

// sqliteCgo says that this build cannot open SQLite databases: without
// cgo, mattn/go-sqlite3 is a stub whose every open fails (sqliteExplain
// then says what to do).
const sqliteCgo = false

// sqliteBusy reports whether err is SQLite's "database is locked" or
// "table is locked". Built without cgo, mattn/go-sqlite3 cannot open a
// database at all (the open fails saying that it needs cgo), so only a
// SQLite driver passed through WithDialector or WithDB is left.
func sqliteBusy(err error) bool { return driverBusy(err) }
