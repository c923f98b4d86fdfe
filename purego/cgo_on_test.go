//go:build cgo

package purego

// cgoEnabled says whether this test binary has cgo, and so whether the
// mattn/go-sqlite3 baseline can run.
const cgoEnabled = true
