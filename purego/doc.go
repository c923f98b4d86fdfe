// Package purego holds the proof that the audit library runs on a pure-Go
// SQLite driver, so that a program using it builds with CGO_ENABLED=0: its
// tests run the library's public behaviour on github.com/glebarez/sqlite
// (modernc.org/sqlite underneath) through audit.WithDialector, and its
// benchmarks measure that driver against mattn/go-sqlite3 in the same run.
//
// It is a module of its own so that users of the library never get a
// second SQLite driver in their module graph. Its one export is the DSN
// that the README's "SQLite without cgo" section recommends.
package purego

// DSN returns the data source name of the SQLite file at path for
// glebarez/sqlite and modernc.org/sqlite, with the settings that
// audit.WithSQLite gives mattn/go-sqlite3: a busy timeout of 5 s and
// synchronous=FULL on every connection of the pool. The library switches
// the file to WAL itself.
func DSN(path string) string {
	return path + "?_pragma=busy_timeout(5000)&_pragma=synchronous(FULL)"
}
