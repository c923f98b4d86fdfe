package main

import (
	"bufio"
	"regexp"
	"strconv"
	"strings"
)

// result is one benchmark's line: its metrics by unit ("ns/op",
// "entries/s", "x-raw", ...).
type result map[string]float64

// results are the benchmarks by name, without the -GOMAXPROCS suffix, and
// the figures the tests logged. A benchmark that ran more than once
// (-count) keeps its last line.
type results struct {
	bench  map[string]result
	logged map[string]float64 // "heap-growth-MiB" -> 0.02
}

var (
	benchLine = regexp.MustCompile(`^(Benchmark\S+?)(?:-\d+)?\s+(\d+)\s+(.+)$`)
	loggedRE  = regexp.MustCompile(`\b(heap-growth-MiB) (-?[0-9.]+)\b`)
)

// parse reads go test output.
func parse(output string) results {
	res := results{bench: map[string]result{}, logged: map[string]float64{}}
	sc := bufio.NewScanner(strings.NewReader(output))
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		if m := loggedRE.FindStringSubmatch(line); m != nil {
			if v, err := strconv.ParseFloat(m[2], 64); err == nil {
				res.logged[m[1]] = v
			}
			continue
		}
		m := benchLine.FindStringSubmatch(strings.TrimSpace(line))
		if m == nil {
			continue
		}
		fields := strings.Fields(m[3])
		r := result{}
		for i := 0; i+1 < len(fields); i += 2 {
			v, err := strconv.ParseFloat(fields[i], 64)
			if err != nil {
				break
			}
			r[fields[i+1]] = v
		}
		if _, ok := r["ns/op"]; ok {
			res.bench[m[1]] = r
		}
	}
	return res
}
