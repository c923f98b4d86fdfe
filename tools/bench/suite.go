package main

import (
	"bytes"
	"fmt"
	"io"
	"os"
	"os/exec"
	"strings"
)

// The suite, in four go test runs: the throughput benchmarks at
// benchtime, the prune stall once (each iteration prunes a fresh copy of
// the fixture), the heap test, which logs its figure, and the realistic
// suite, which runs its own rounds; and a fifth, the realistic ingest on
// PostgreSQL, when AUDIT_TEST_POSTGRES_DSN names a server.
var (
	throughputBench = `^Benchmark(Ingest|RecordCall|Query)$`
	stallBench      = `^BenchmarkPruneStall$`
	heapTest        = `^TestPerfRefusedRecordsHeap$`
	// realisticBench is the realistic suite (realistic_*_test.go): it
	// runs its rounds itself, once (-benchtime 1x), its reads on logs of
	// realisticRead entries unless AUDIT_REALISTIC_READ says otherwise.
	realisticBench = `^BenchmarkRealistic(Ingest|Query|PruneStall|Verify)$`
	realisticRead  = "200000,1000000"
	// postgresBench is the realistic ingest on the PostgreSQL server of
	// AUDIT_TEST_POSTGRES_DSN, run only when it is set.
	postgresBench = `^BenchmarkRealisticIngestPostgres$`
)

// runSuite runs the suite in root, echoing its output to stderr, and
// returns the output.
func runSuite(root, benchtime string) (string, error) {
	var all strings.Builder
	runs := [][]string{
		{"-run", "^$", "-bench", throughputBench, "-benchtime", benchtime, "-timeout", "60m"},
		{"-run", "^$", "-bench", stallBench, "-benchtime", "1x", "-timeout", "30m"},
		{"-run", heapTest, "-v", "-count", "1", "-timeout", "10m"},
		{"-run", "^$", "-bench", realisticBench, "-benchtime", "1x", "-timeout", "60m"},
	}
	if os.Getenv(postgresDSNEnv) != "" {
		runs = append(runs, []string{"-run", "^$", "-bench", postgresBench, "-benchtime", "1x", "-timeout", "60m"})
	} else {
		fmt.Fprintf(os.Stderr, "bench: %s is not set: the PostgreSQL goals are not run\n", postgresDSNEnv)
	}
	for _, args := range runs {
		out, err := goTest(root, realisticEnv(), append(args, ".")...)
		all.WriteString(out)
		if err != nil {
			return all.String(), fmt.Errorf("go test %s: %w", strings.Join(args, " "), err)
		}
	}
	return all.String(), nil
}

// realisticEnv is the environment of the suite's runs: this process's,
// with AUDIT_REALISTIC_READ set to realisticRead when it is not set.
func realisticEnv() []string {
	env := os.Environ()
	if _, ok := os.LookupEnv("AUDIT_REALISTIC_READ"); !ok {
		env = append(env, "AUDIT_REALISTIC_READ="+realisticRead)
	}
	return env
}

// goTest runs go test with args in dir and env, echoing its output to
// stderr, and returns its standard output.
func goTest(dir string, env []string, args ...string) (string, error) {
	fmt.Fprintf(os.Stderr, "$ go test %s\n", strings.Join(args, " "))
	cmd := exec.Command("go", append([]string{"test"}, args...)...)
	cmd.Dir = dir
	cmd.Env = env
	var out bytes.Buffer
	cmd.Stdout = io.MultiWriter(&out, os.Stderr)
	cmd.Stderr = os.Stderr
	err := cmd.Run()
	return out.String(), err
}
