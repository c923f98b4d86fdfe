// Command bench runs the performance suite of package audit (perf_test.go)
// and reports it against the goals of its performance issue: a table of
// every ratio with ✓ or ✗ on stdout and in docs/benchmarks.md, and a chart
// of the throughputs beside their baselines in docs/benchmarks.png.
//
// It is a module of its own, so that the library's users never see its
// plotting dependencies. Run it from anywhere in the repository (the
// go.work at its root ties the modules together):
//
//	go run ./tools/bench                  # a few minutes on 2 cores
//	go run ./tools/bench -benchtime 5s    # steadier figures
//	go run ./tools/bench -in saved.txt    # re-render from saved go test output
//
// With AUDIT_TEST_POSTGRES_DSN set it also runs the realistic ingest on
// that PostgreSQL server (give it one with fsync on) and reports its
// goals; without it, they are reported as not run.
//
// Every ratio comes from one benchmark run, where the baseline ran just
// before the library, so that it holds on any machine; the absolute
// figures do not. Other load on the machine (parallel builds, tests) moves
// them all: run it on a quiet machine. The first run builds the 1M-entry
// logs of the query, prune and verify benchmarks (the sample one in about
// 30 s, the realistic ones by Record in about a minute; see
// perf_fixture_test.go), later runs reuse them.
//
// The files: main.go (flags, the library's root), suite.go (the go test
// runs), parse.go (their output), goals.go (the goals and how each is
// judged), report.go (the table and docs/benchmarks.md), chart.go
// (docs/benchmarks.png).
package main

import (
	"flag"
	"fmt"
	"log"
	"os"
	"path/filepath"
	"strings"
)

func main() {
	log.SetFlags(0)
	log.SetPrefix("bench: ")
	benchtime := flag.String("benchtime", "2s", "go test -benchtime for the throughput benchmarks")
	in := flag.String("in", "", "read go test output from this file instead of running the suite")
	save := flag.String("save", "", "also write the go test output to this file")
	out := flag.String("out", "docs", "directory, relative to the library's root, for benchmarks.md and benchmarks.png")
	flag.Parse()

	root, err := libraryRoot()
	if err != nil {
		log.Fatal(err)
	}
	env := environment()
	var output string
	if *in != "" {
		b, err := os.ReadFile(*in)
		if err != nil {
			log.Fatal(err)
		}
		output = string(b)
		env.source = *in
	} else {
		env.loadBefore = loadAverage()
		if output, err = runSuite(root, *benchtime); err != nil {
			log.Fatal(err)
		}
		env.loadAfter = loadAverage()
	}
	if *save != "" {
		if err := os.WriteFile(*save, []byte(output), 0o644); err != nil {
			log.Fatal(err)
		}
	}

	res := parse(output)
	rows := evaluate(res)
	table := markdownTable(rows)
	fmt.Print(table)

	dir := filepath.Join(root, *out)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		log.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "benchmarks.md"), []byte(report(rows, table, env)), 0o644); err != nil {
		log.Fatal(err)
	}
	if err := renderChart(filepath.Join(dir, "benchmarks.png"), rows); err != nil {
		log.Fatal(err)
	}
	fmt.Printf("\nwrote %s and %s\n", filepath.Join(*out, "benchmarks.md"), filepath.Join(*out, "benchmarks.png"))
	for _, r := range rows {
		// A goal that needs a server is not run without one; with one
		// (and a run, not -in), a missing figure is an error as any.
		if !r.measured && (r.needs == "" || *in == "" && os.Getenv(postgresDSNEnv) != "") {
			log.Fatalf("%s: no measurement in the output", r.goal.what)
		}
	}
}

// libraryModule is the module whose benchmarks the suite runs.
const libraryModule = "github.com/cleveragents/audit"

// libraryRoot returns the directory of the library's go.mod: the first
// directory, from the working directory up, whose go.mod declares
// libraryModule. The tool is a module of its own (tools/bench), so the
// module of the working directory is not necessarily the library's.
func libraryRoot() (string, error) {
	wd, err := os.Getwd()
	if err != nil {
		return "", err
	}
	for dir := wd; ; dir = filepath.Dir(dir) {
		if modulePath(filepath.Join(dir, "go.mod")) == libraryModule {
			return dir, nil
		}
		if filepath.Dir(dir) == dir {
			return "", fmt.Errorf("no go.mod of %s in %s or above it: run it inside a checkout of the library", libraryModule, wd)
		}
	}
}

// modulePath returns the module path a go.mod declares, or "" if the file
// is missing or declares none.
func modulePath(gomod string) string {
	b, err := os.ReadFile(gomod)
	if err != nil {
		return ""
	}
	for _, line := range strings.Split(string(b), "\n") {
		if rest, ok := strings.CutPrefix(strings.TrimSpace(line), "module"); ok && rest != "" && (rest[0] == ' ' || rest[0] == '\t') {
			return strings.Trim(strings.TrimSpace(rest), `"`)
		}
	}
	return ""
}
