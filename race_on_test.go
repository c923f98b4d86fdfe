//go:build race

package audit

// perfRace reports whether the race detector is on: the tests that push a
// million entries through the library skip under it, and .ci/run runs them
// in a separate step without it.
const perfRace = true
