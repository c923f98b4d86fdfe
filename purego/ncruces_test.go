//go:build ncruces

package purego

import (
	"github.com/ncruces/go-sqlite3/gormlite"
	"gorm.io/gorm"
)

// With -tags ncruces the whole suite, and the benchmark beside mattn, runs
// on ncruces/go-sqlite3 (SQLite compiled to Wasm, translated to Go) through
// its gormlite dialector, for the comparison the README reports. Its driver
// registers itself as "sqlite3", as mattn/go-sqlite3 does, which the
// library always links in: a program holding both panics at start-up
// unless built with
//
//	-ldflags=-X=github.com/ncruces/go-sqlite3/driver.driverName=
//
// (gormlite opens its connections without the registered name).
func init() {
	pureDriver = driver{name: "ncruces", open: func(path string) gorm.Dialector {
		return gormlite.Open("file:" + path + "?_pragma=busy_timeout(5000)&_pragma=synchronous(FULL)")
	}}
}
