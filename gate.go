package audit

import "sync"

// A gate counts the callers inside it until it is closed: after close no
// caller gets in, and idle is closed once the last one inside has left.
// The intake's senders pass one (so that Shutdown lets the writer drain
// only once every accepted entry is on the queue), and so do a session's
// users (so that the session is closed only once nobody uses it).
type gate struct {
	mu     sync.Mutex    // protects the fields below; a caller's check of closed and its entry are one step under it
	n      int           // callers inside
	closed chan struct{} // closed by close
	idle   chan struct{} // closed once closed is, and n is zero
}

func newGate() gate {
	return gate{closed: make(chan struct{}), idle: make(chan struct{})}
}

// enter lets a caller in, unless the gate is closed; one that got in must
// leave.
func (g *gate) enter() bool {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.isClosed() {
		return false
	}
	g.n++
	return true
}

func (g *gate) leave() {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.n--
	if g.n == 0 && g.isClosed() {
		close(g.idle)
	}
}

// close closes the gate, and reports whether this call did (the first).
func (g *gate) close() bool {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.isClosed() {
		return false
	}
	close(g.closed)
	if g.n == 0 {
		close(g.idle)
	}
	return true
}

func (g *gate) isClosed() bool {
	select {
	case <-g.closed:
		return true
	default:
		return false
	}
}
