package main

import (
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestHelp(t *testing.T) {
	global := []string{"--db", "--driver", "--dsn", "--table", "--key-file"}
	filters := []string{"--actor", "--type", "--resource", "--outcome", "--request-id", "--since", "--until"}
	for _, tc := range []struct {
		cmd  string
		want []string
	}{
		{"", []string{"list", "count", "verify", "export", "prune", "stats"}},
		{"list", append([]string{"--limit", "--desc", "--json"}, filters...)},
		{"count", filters},
		{"verify", []string{"--key-file", "--head", "ID N"}},
		{"export", append([]string{"--format", "--out", "jsonl", "csv"}, filters...)},
		{"prune", []string{"--before", "--yes", "[y/N]"}},
		{"stats", []string{"head"}},
	} {
		t.Run("auditctl "+tc.cmd+" --help", func(t *testing.T) {
			args := []string{"--help"}
			if tc.cmd != "" {
				args = []string{tc.cmd, "--help"}
			}
			r := runCLI(t, "", args...)
			require.Equal(t, 0, r.code, r)
			for _, w := range append(tc.want, global...) {
				assert.Contains(t, r.stdout, w)
			}
			assert.Empty(t, r.stderr)
		})
	}
	t.Run("every command is named in the root help's text", func(t *testing.T) {
		root := (&app{}).rootCmd()
		for _, c := range root.Commands() {
			if c.Name() == "help" || c.Name() == "completion" {
				continue
			}
			assert.Regexp(t, `\b`+c.Name()+`\b`, root.Long, "auditctl --help says what %s is for", c.Name())
		}
	})
	t.Run("help list", func(t *testing.T) {
		r := runCLI(t, "", "help", "list")
		require.Equal(t, 0, r.code, r)
		assert.Contains(t, r.stdout, "--json")
	})
}
