package main

import (
	"fmt"
	"image/png"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// sampleOutput is go test output of the suite, as runSuite collects it.
const sampleOutput = `goos: linux
goarch: amd64
pkg: github.com/cleveragents/audit
cpu: Intel(R) Xeon(R) Processor
BenchmarkIngest/raw_sql-2         	  263278	     16000 ns/op	     62500 entries/s
BenchmarkIngest/naive/callers=16-2         	    3753	   1071372 ns/op	       933.4 entries/s
BenchmarkIngest/async/callers=16-2         	  175305	     20000 ns/op	     50000 entries/s	        53.57 x-naive	         0.8000 x-raw
BenchmarkIngest/writer_only-2          	  150000	     17000 ns/op	     58824 entries/s	         0.9412 x-raw
BenchmarkIngest/naive/callers=64-2         	    2257	   1384132 ns/op	       722.5 entries/s
BenchmarkIngest/sync/callers=64-2          	   50521	    101774 ns/op	      9826 entries/s	        13.60 x-naive
BenchmarkRecordCall/marshal+send-2         	  666206	      1744 ns/op	    573259 calls/s	     168 B/op	       6 allocs/op
BenchmarkRecordCall/record-2               	  439677	      2633 ns/op	    379798 calls/s	         1.527 cost-x-base	     328 B/op	       8 allocs/op
BenchmarkRecordCall/marshal+send/parallel-2         	 1000000	      1261 ns/op	    792817 calls/s	     168 B/op	       6 allocs/op
BenchmarkRecordCall/record/parallel-2               	 1007234	      1205 ns/op	    830146 calls/s	         0.9758 cost-x-base	     328 B/op	       8 allocs/op
BenchmarkQuery/get/sql-2         	   35086	     36555 ns/op	     27356 ops/s	    3230 B/op	      88 allocs/op
BenchmarkQuery/get/audit-2       	   33484	     33841 ns/op	         0.9257 cost-x-sql	     29550 ops/s	    3167 B/op	      88 allocs/op
BenchmarkQuery/list/sql-2        	     543	   2392576 ns/op	       418.0 ops/s	  233073 B/op	    4457 allocs/op
BenchmarkQuery/list/audit-2      	     492	   2314651 ns/op	         0.9674 cost-x-sql	       432.0 ops/s	  203150 B/op	    4559 allocs/op
BenchmarkQuery/count/sql-2       	     441	   2497549 ns/op	       400.4 ops/s	     680 B/op	      17 allocs/op
BenchmarkQuery/count/audit-2     	     348	   4000000 ns/op	         1.602 cost-x-sql	       250 ops/s	     808 B/op	      22 allocs/op
PASS
ok  	github.com/cleveragents/audit	32.224s
BenchmarkPruneStall-2   	       1	7374000000 ns/op	       191.8 max-stall-ms	       191.8 p99-stall-ms	         4.646 quiet-max-ms	         3.610 quiet-p99-ms	     13561 pruned/s	        68.00 records-during
PASS
=== RUN   TestPerfRefusedRecordsHeap
    perf_test.go:889: heap-growth-MiB -0.03 (HeapAlloc 1760008 -> 1731920 bytes over 1000000 refused Records)
--- PASS: TestPerfRefusedRecordsHeap (3.41s)
PASS
BenchmarkRealisticIngest/hand-2         	       1	     47000 ns/op	       681.2 db-bytes/entry	     21277 entries/s	      3132 wa-bytes/entry
BenchmarkRealisticIngest/naive/callers=16-2         	       1	   1800000 ns/op	       576.5 db-bytes/entry	       555.6 entries/s	     46506 wa-bytes/entry
BenchmarkRealisticIngest/async/callers=16-2         	       1	     40000 ns/op	       712.9 db-bytes/entry	     25000 entries/s	      1800 wa-bytes/entry	         1.150 x-hand	        46.53 x-naive	         1.120 cost-x-notree
--- BENCH: BenchmarkRealisticIngest/async/callers=16-2
    realistic_bench_test.go:140: x-hand per round: 1.23 1.15 1.10
BenchmarkRealisticIngest/async-notree/callers=16-2         	       1	     37000 ns/op	       700.1 db-bytes/entry	     27027 entries/s	      1750 wa-bytes/entry
BenchmarkRealisticIngest/naive/callers=64-2         	       1	   1700000 ns/op	       580.6 db-bytes/entry	       588.2 entries/s	     50864 wa-bytes/entry
BenchmarkRealisticIngest/sync/callers=64-2          	       1	    240000 ns/op	       722.5 db-bytes/entry	      4167 entries/s	      9961 wa-bytes/entry	         7.500 x-naive
BenchmarkRealisticIngestPostgres/hand-2         	       1	     18721 ns/op	     53416 entries/s
BenchmarkRealisticIngestPostgres/async/callers=16-2         	       1	     21982 ns/op	         1.096 cores	        27.80 cpu-us/entry	     45492 entries/s	         0.8533 x-hand	         8.123 x-naive
BenchmarkRealisticIngestPostgres/naive/callers=64-2         	       1	    173229 ns/op	         1.894 cores	       388.1 cpu-us/entry	      5773 entries/s	       124.4 go-cpu-us/entry	       263.8 server-cpu-us/entry
BenchmarkRealisticIngestPostgres/sync/callers=64-2          	       1	     57568 ns/op	         1.076 cores	        55.62 cpu-us/entry	     17371 entries/s	        23.12 go-cpu-us/entry	        31.88 server-cpu-us/entry	         2.948 x-naive	         1.026 x-ceiling
BenchmarkRealisticIngestPostgres/async-batch64/callers=16-2 	       1	     59085 ns/op	         1.055 cores	        63.75 cpu-us/entry	     16925 entries/s	        30.00 go-cpu-us/entry	        33.75 server-cpu-us/entry	         2.932 x-naive
BenchmarkRealisticQuery/entries=200000/get/sql-2         	       1	     30000 ns/op
BenchmarkRealisticQuery/entries=200000/get/audit-2       	       1	     24000 ns/op	         0.8100 cost-x-sql
BenchmarkRealisticQuery/entries=200000/list/sql-2        	       1	    200000 ns/op
BenchmarkRealisticQuery/entries=200000/list/audit-2      	       1	    220000 ns/op	         1.600 cost-x-sql
BenchmarkRealisticQuery/entries=200000/count/sql-2       	       1	    300000 ns/op
BenchmarkRealisticQuery/entries=200000/count/audit-2     	       1	    310000 ns/op	         1.030 cost-x-sql
BenchmarkRealisticQuery/entries=1000000/get/sql-2         	       1	     32000 ns/op
BenchmarkRealisticQuery/entries=1000000/get/audit-2       	       1	     25000 ns/op	         0.7800 cost-x-sql
BenchmarkRealisticQuery/entries=1000000/list/sql-2        	       1	    700000 ns/op
BenchmarkRealisticQuery/entries=1000000/list/audit-2      	       1	    710000 ns/op	         1.010 cost-x-sql
BenchmarkRealisticQuery/entries=1000000/count/sql-2       	       1	   6000000 ns/op
BenchmarkRealisticQuery/entries=1000000/count/audit-2     	       1	   6600000 ns/op	         1.100 cost-x-sql
BenchmarkRealisticPruneStall/entries=1000000-2         	       1	     74000 ns/op	       140.3 max-stall-ms	        27.05 p99-stall-ms	      3.000 quiet-max-ms	         1.855 quiet-p99-ms	      2705 records-during	     13468 pruned/s
--- BENCH: BenchmarkRealisticPruneStall/entries=1000000-2
    realistic_scale_bench_test.go:52: max-stall-ms per round: 140.3 131.0 152.6
BenchmarkRealisticVerify/entries=1000000/verify/hand-2         	       1	      3000 ns/op
BenchmarkRealisticVerify/entries=1000000/verify/audit-2        	       1	      2400 ns/op	         0.4500 x-hand
PASS
`

func TestParseAndEvaluate(t *testing.T) {
	res := parse(sampleOutput)
	if got := res.bench["BenchmarkIngest/async/callers=16"]["x-raw"]; got != 0.8 {
		t.Fatalf("x-raw of async = %v, want 0.8", got)
	}
	if got := res.bench["BenchmarkRecordCall/marshal+send/parallel"]["ns/op"]; got != 1261 {
		t.Fatalf("ns/op of the parallel baseline = %v, want 1261", got)
	}
	if got := res.logged["heap-growth-MiB"]; got != -0.03 {
		t.Fatalf("heap growth = %v, want -0.03", got)
	}
	rows := evaluate(res)
	want := map[string]bool{ // goal -> met
		"Async ingest vs raw SQL":         true, // exactly 0.8
		"Writer alone vs raw SQL":         true, // context, no goal
		"Async ingest vs naive Create":    true,
		"Sync ingest, 64 callers":         true,
		"Record call":                     true,
		"Record call, parallel":           true,
		"Get, 1M entries":                 true,
		"List, 1M entries":                true,
		"Count, 1M entries":               false, // 1.6×
		"Heap growth, 1M refused Records": true,
		"Writer stall during Prune":       true,
		// The realistic suite's own median ratios decide, not ns/op's.
		"Realistic async vs hand-written": true, // 1.15
		"Realistic async vs naive":        true,
		"Realistic async, tree's cost":    false, // 1.12× per rounds, though 1.08× by ns/op
		"Realistic sync, 64 callers":      false, // 7.5×
		"Realistic Get, 200k":             true,
		"Realistic List, 200k":            false, // 1.6× per rounds, though 1.1× by ns/op
		"Realistic Count, 200k":           true,
		"Realistic Get, 1M":               true,
		"Realistic List, 1M":              true,
		"Realistic Count, 1M":             true,
		// Judged by max-stall-ms, the median of the rounds, against 100 ms.
		"Realistic writer stall during Prune":      false, // 140 ms
		"Realistic Verify, 1M":                     false, // 0.45× per rounds, though 1.25× by ns/op
		"PostgreSQL async vs hand-written":         true,  // 0.85
		"PostgreSQL writer ceiling, 64-entry txns": true,  // context, no goal
		"PostgreSQL sync, 64 callers":              false, // 2.95×
	}
	if len(rows) != len(want) {
		t.Fatalf("%d rows, want %d", len(rows), len(want))
	}
	for _, r := range rows {
		if !r.measured {
			t.Errorf("%s: not measured", r.short)
		}
		if met, ok := want[r.short]; !ok || met != r.met {
			t.Errorf("%s: met = %v, want %v (ratio %.3f)", r.short, r.met, met, r.ratio)
		}
	}
	table := markdownTable(rows)
	for _, s := range []string{"| 0.80× | ≥ 0.8× | ✓ |", "| 1.60× | ≤ 1.5× | ✗ |", "50,000 entries/s", "192 ms", "| 0.94× | — | |",
		"| 1.15× | ≥ 0.8× (1800 bytes written per entry, baseline 3132) | ✓ |", "| 7.50× | ≥ 8×",
		"| 140 ms | — | — | ≤ 100 ms (p99 27 ms; longest before Prune 3 ms; Prune 13468 entries/s) | ✗ |", "| 0.45× | ≥ 0.5× |",
		"| 2.95× | ≥ 8× (CPU 56 µs an entry, 1.08 cores busy; baseline 388 µs, 1.89 cores; 1.03 of the writer's ceiling at its 64-entry transactions) | ✗ |",
		"| 2.93× | — | |", "| 0.85× | ≥ 0.8× (CPU 28 µs an entry, 1.10 cores busy) | ✓ |"} {
		if !strings.Contains(table, s) {
			t.Errorf("table lacks %q:\n%s", s, table)
		}
	}
}

func TestMissingMeasurementIsReported(t *testing.T) {
	rows := evaluate(parse("BenchmarkIngest/raw_sql-2  10  16000 ns/op\n"))
	for _, r := range rows {
		if r.measured {
			t.Errorf("%s: measured from nothing", r.short)
		}
	}
	if table := markdownTable(rows); !strings.Contains(table, "| ? |") {
		t.Errorf("table does not flag the missing figures:\n%s", table)
	}
}

// A run without a PostgreSQL server reports its goals as not run, and
// counts only the goals it ran.
func TestGoalsThatNeedAServerAreNotRun(t *testing.T) {
	var without strings.Builder
	for _, line := range strings.Split(sampleOutput, "\n") {
		if !strings.Contains(line, "Postgres") {
			without.WriteString(line + "\n")
		}
	}
	rows := evaluate(parse(without.String()))
	notRun, ran := 0, 0
	for _, r := range rows {
		switch {
		case r.needs != "" && r.measured:
			t.Errorf("%s: measured without its lines", r.short)
		case r.needs != "":
			notRun++
		case r.kind != info:
			ran++
		}
	}
	if notRun != 3 { // two goals and the context row of the writer's ceiling
		t.Errorf("%d rows need a server, want 3", notRun)
	}
	table := markdownTable(rows)
	if got := strings.Count(table, "| not run |"); got != 3 {
		t.Errorf("%d rows say not run, want 3:\n%s", got, table)
	}
	if !strings.Contains(table, "needs a PostgreSQL server: set AUDIT_TEST_POSTGRES_DSN") {
		t.Errorf("the table does not say what the goals need:\n%s", table)
	}
	if md := report(rows, table, runEnv{}); !strings.Contains(md, fmt.Sprintf("of %d goals run met", ran)) {
		t.Errorf("the report counts the goals not run:\n%s", md)
	}
}

func TestRenderChart(t *testing.T) {
	path := filepath.Join(t.TempDir(), "benchmarks.png")
	if err := renderChart(path, evaluate(parse(sampleOutput))); err != nil {
		t.Fatal(err)
	}
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	img, err := png.Decode(f)
	if err != nil {
		t.Fatal(err)
	}
	if b := img.Bounds(); b.Dx() < 1000 || b.Dy() < 500 {
		t.Errorf("chart is %v, too small to read", b)
	}
}

// The tool lives in a module of its own under the library's, so the
// library's root is found by the module path, not by the nearest go.mod.
func TestLibraryRoot(t *testing.T) {
	t.Run("from the tool's own module", func(t *testing.T) {
		want, err := filepath.Abs(filepath.Join("..", ".."))
		if err != nil {
			t.Fatal(err)
		}
		got, err := libraryRoot()
		if err != nil {
			t.Fatal(err)
		}
		if got != want {
			t.Fatalf("libraryRoot() = %q, want %q", got, want)
		}
	})
	t.Run("outside the library", func(t *testing.T) {
		dir := t.TempDir()
		if err := os.WriteFile(filepath.Join(dir, "go.mod"), []byte("module example.com/other\n"), 0o644); err != nil {
			t.Fatal(err)
		}
		t.Chdir(dir)
		_, err := libraryRoot()
		if err == nil || !strings.Contains(err.Error(), "no go.mod of github.com/cleveragents/audit in "+dir) {
			t.Fatalf("libraryRoot() outside the library: err = %v, want one naming the module and %s", err, dir)
		}
	})
}

func TestModulePath(t *testing.T) {
	dir := t.TempDir()
	for name, tc := range map[string]struct{ gomod, want string }{
		"plain":         {"module github.com/cleveragents/audit\n\ngo 1.25.0\n", "github.com/cleveragents/audit"},
		"quoted":        {"// a comment\nmodule \"github.com/cleveragents/audit\"\n", "github.com/cleveragents/audit"},
		"sub-module":    {"module github.com/cleveragents/audit/tools/bench\n", "github.com/cleveragents/audit/tools/bench"},
		"no module":     {"go 1.25.0\n", ""},
		"other keyword": {"modulex github.com/cleveragents/audit\n", ""},
	} {
		path := filepath.Join(dir, name+".mod")
		if err := os.WriteFile(path, []byte(tc.gomod), 0o644); err != nil {
			t.Fatal(err)
		}
		if got := modulePath(path); got != tc.want {
			t.Errorf("%s: modulePath = %q, want %q", name, got, tc.want)
		}
	}
	if got := modulePath(filepath.Join(dir, "missing.mod")); got != "" {
		t.Errorf("missing file: modulePath = %q, want \"\"", got)
	}
}
