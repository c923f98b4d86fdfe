//go:build unix

package audit

import "syscall"

// realQuiesce writes out the dirty pages of the cases before (sync(2)),
// outside the timing: each case starts with no writeback of another's
// files pending, which would slow the fsyncs of whichever case ran next.
func realQuiesce() { syscall.Sync() }
