package audit

import (
	"errors"
	"fmt"
	"testing"

	"github.com/stretchr/testify/assert"
)

// codedError has the shape of modernc.org/sqlite's *Error (and so
// glebarez/sqlite's): a message and a Code() int that may be extended.
type codedError struct {
	msg  string
	code int
}

func (e *codedError) Error() string { return e.msg }
func (e *codedError) Code() int     { return e.code }

// A pure-Go driver's busy errors are retried like mattn's: by their code
// when they have a Code() int, by SQLite's words otherwise, wrapped or not.
func TestSQLiteBusyRecognisesPureGoDrivers(t *testing.T) {
	for _, c := range []struct {
		name string
		err  error
		busy bool
	}{
		{"SQLITE_BUSY by code", &codedError{"database is locked (5) (SQLITE_BUSY)", 5}, true},
		{"SQLITE_LOCKED by code", &codedError{"database table is locked (6)", 6}, true},
		{"SQLITE_BUSY_SNAPSHOT, extended", &codedError{"x", 517}, true},
		{"SQLITE_BUSY_RECOVERY, extended", &codedError{"x", 261}, true},
		{"SQLITE_LOCKED_SHAREDCACHE, extended", &codedError{"x", 262}, true},
		{"wrapped by code", fmt.Errorf("begin immediate: %w", &codedError{"x", 5}), true},
		{"joined by code", errors.Join(errors.New("other"), &codedError{"x", 5}), true},
		{"SQLITE_CONSTRAINT", &codedError{"UNIQUE constraint failed", 19}, false},
		{"SQLITE_IOERR_BLOCKED (5<<8|10) is not busy", &codedError{"disk I/O error", 5<<8 | 10}, false},
		{"SQLITE_READONLY", &codedError{"attempt to write a readonly database", 8}, false},
		// ncruces/go-sqlite3's Code returns its own type: only the text.
		{"ncruces busy text", fmt.Errorf("begin: %w", errors.New("sqlite3: database is locked")), true},
		{"ncruces locked text", errors.New("sqlite3: database table is locked"), true},
		{"other text", errors.New("sqlite3: no such table: x"), false},
		{"nil", nil, false},
	} {
		t.Run(c.name, func(t *testing.T) {
			assert.Equal(t, c.busy, sqliteBusy(c.err))
		})
	}
}
