package main

import (
	"fmt"
	"os"
	"os/exec"
	"runtime"
	"strconv"
	"strings"
	"time"
)

// markdownTable renders rows as a Markdown table.
func markdownTable(rows []row) string {
	var b strings.Builder
	b.WriteString("| Goal | audit | baseline | ratio | goal | |\n|---|---:|---:|---:|---|:-:|\n")
	for _, r := range rows {
		if r.notRun() {
			fmt.Fprintf(&b, "| %s | not run | — | — | %s (needs %s) | |\n", r.what, limitText(r.goal), r.needs)
			continue
		}
		if !r.measured {
			fmt.Fprintf(&b, "| %s | — | — | — | %s | ? |\n", r.what, limitText(r.goal))
			continue
		}
		mark := "✗"
		if r.met {
			mark = "✓"
		}
		switch r.kind {
		case info:
			fmt.Fprintf(&b, "| %s | %s %s | %s %s | %.2f× | — | |\n", r.what,
				thousands(1e9/r.lib), r.unit, thousands(1e9/r.base), r.unit, r.ratio)
		case faster:
			note := ""
			if r.note != "" {
				note = " (" + r.note + ")"
			}
			fmt.Fprintf(&b, "| %s | %s %s | %s %s | %.2f× | %s%s | %s |\n", r.what,
				thousands(1e9/r.lib), r.unit, thousands(1e9/r.base), r.unit, r.ratio, limitText(r.goal), note, mark)
		case cheaper:
			fmt.Fprintf(&b, "| %s | %s | %s | %.2f× | %s | %s |\n", r.what,
				duration(r.lib), duration(r.base), r.ratio, limitText(r.goal), mark)
		case heapMiB:
			fmt.Fprintf(&b, "| %s | %.2f MiB | — | — | %s | %s |\n", r.what, r.lib, limitText(r.goal), mark)
		case stallMS:
			fmt.Fprintf(&b, "| %s | %.0f ms | — | — | %s (%s) | %s |\n", r.what, r.lib, limitText(r.goal), r.note, mark)
		}
	}
	return b.String()
}

func limitText(g goal) string {
	switch g.kind {
	case info:
		return "—"
	case faster:
		return fmt.Sprintf("≥ %g×", g.limit)
	case cheaper:
		return fmt.Sprintf("≤ %g×", g.limit)
	case heapMiB:
		return fmt.Sprintf("≤ %g MiB", g.limit)
	default:
		return fmt.Sprintf("≤ %g ms", g.limit)
	}
}

// thousands formats v rounded, with thin groups of three digits.
func thousands(v float64) string {
	s := strconv.FormatFloat(v, 'f', 0, 64)
	for i := len(s) - 3; i > 0; i -= 3 {
		s = s[:i] + "," + s[i:]
	}
	return s
}

// duration formats ns per call.
func duration(ns float64) string {
	switch {
	case ns >= 1e6:
		return fmt.Sprintf("%.2f ms", ns/1e6)
	case ns >= 1e3:
		return fmt.Sprintf("%.2f µs", ns/1e3)
	}
	return fmt.Sprintf("%.0f ns", ns)
}

// env describes where the figures come from.
type runEnv struct {
	when                  time.Time
	goVersion, cpu        string
	cpus                  int
	loadBefore, loadAfter string
	source                string // the -in file, when not run
}

func environment() runEnv {
	e := runEnv{when: time.Now().UTC(), cpus: runtime.NumCPU()}
	if out, err := exec.Command("go", "version").Output(); err == nil {
		e.goVersion = strings.TrimSpace(string(out))
	}
	if b, err := os.ReadFile("/proc/cpuinfo"); err == nil {
		for _, line := range strings.Split(string(b), "\n") {
			if name, ok := strings.CutPrefix(line, "model name"); ok {
				e.cpu = strings.TrimSpace(strings.TrimPrefix(strings.TrimSpace(name), ":"))
				break
			}
		}
	}
	return e
}

// loadAverage returns the 1, 5 and 15 minute load averages, where the
// system tells them.
func loadAverage() string {
	b, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return ""
	}
	f := strings.Fields(string(b))
	if len(f) < 3 {
		return ""
	}
	return strings.Join(f[:3], " ")
}

// report is docs/benchmarks.md.
func report(rows []row, table string, e runEnv) string {
	var b strings.Builder
	b.WriteString("# Benchmarks\n\n")
	b.WriteString("The performance goals of the library, each measured as a ratio to its baseline in the same run ")
	b.WriteString("(`go run ./tools/bench`; the benchmarks are in `perf_test.go` and, for the realistic rows, ")
	b.WriteString("`realistic_bench_test.go`, which say what each one does). ")
	b.WriteString("Absolute figures depend on the machine; the ratios are what the goals are about.\n\n")
	b.WriteString("![Throughput of the library beside its baselines](benchmarks.png)\n\n")
	b.WriteString(table)
	met, all := 0, 0
	for _, r := range rows {
		if r.kind != info && !r.notRun() {
			all++
			if r.met {
				met++
			}
		}
	}
	fmt.Fprintf(&b, "\n%d of %d goals run met.\n\n", met, all)
	for _, r := range rows {
		if r.measured && !r.met && r.why != "" {
			fmt.Fprintf(&b, "**%s: not met.** %s\n\n", r.short, r.why)
		}
	}
	b.WriteString("## Where these figures come from\n\n")
	if e.source != "" {
		fmt.Fprintf(&b, "- rendered from saved output: `%s`\n", e.source)
	} else {
		fmt.Fprintf(&b, "- run: %s\n", e.when.Format("2006-01-02 15:04 UTC"))
	}
	if e.goVersion != "" {
		fmt.Fprintf(&b, "- %s\n", e.goVersion)
	}
	if e.cpu != "" {
		fmt.Fprintf(&b, "- %d × %s\n", e.cpus, e.cpu)
	}
	if e.loadBefore != "" {
		fmt.Fprintf(&b, "- load average before the run: %s", e.loadBefore)
		if e.loadAfter != "" {
			fmt.Fprintf(&b, "; after: %s", e.loadAfter)
		}
		b.WriteString(" (other work on the machine slows the library's writer and its baselines unevenly)\n")
	}
	b.WriteString("- SQLite through mattn/go-sqlite3 with the library's settings: WAL, synchronous=FULL, six indexes\n")
	b.WriteString("- PostgreSQL (the rows that say so): the server of " + postgresDSNEnv + ", through pgx; the benchmarks drop each case's tables and CHECKPOINT between cases\n")
	return b.String()
}
