#!/usr/bin/env bash
# gormsuite.sh runs GORM's own test suite (tests/ of go-gorm/gorm, at the
# version of gorm.io/gorm in this module's go.mod) on SQLite with the
# gormaudit plugin registered on every DB the suite opens, in each of the
# configurations below, and prints pass/fail/skip counts per configuration
# and the tests that fail with the plugin but pass without it.
#
#   none      no plugin: GORM's own result on this machine, the baseline
#   separate  the audit log in its own SQLite file
#   samefile  the audit log on the application's own SQLite file, which
#             GORM's tests open with the default DSN (no _txlock, no WAL)
#   withdb    the audit log on the application's *gorm.DB (audit.WithDB)
#
# The module zip of gorm.io/gorm has no tests/, so give the suite's source:
#
#   scripts/gormsuite.sh --tests PATH/TO/gorm/tests [MODE...]
#   scripts/gormsuite.sh --git PATH/TO/gorm.git [MODE...]   (a clone, bare or
#                        not: tests/ is taken from the tag of the go.mod version)
#
# MODE defaults to all four. Nothing in the repository or in the given
# directory is changed: the suite is copied to a temporary directory
# (kept, and printed, when KEEP=1), GORM's sources come from the module
# cache at the go.mod version, and every run gets its own TMPDIR, so its
# gorm.db is fresh and other runs on the machine do not share it.
#
# It needs the network (or a filled module cache) once, for the drivers
# that GORM's tests module requires. One run of all four modes takes 7 to
# 10 minutes on a busy 2-core machine; the time per mode is printed.
set -euo pipefail

usage() {
	sed -n '2,/^set -e/p' "$0" | sed -e '$d' -e 's/^# \{0,1\}//' >&2
	exit 2
}

repo=$(cd "$(dirname "$0")/.." && pwd)
tests="" gitdir=""
while [[ $# -gt 0 ]]; do
	case $1 in
	--tests) tests=${2:?--tests needs a directory}; shift 2 ;;
	--git) gitdir=${2:?--git needs a directory}; shift 2 ;;
	-h | --help) usage ;;
	--*) echo "gormsuite: unknown flag $1" >&2; usage ;;
	*) break ;;
	esac
done
modes=("$@")
[[ ${#modes[@]} -gt 0 ]] || modes=(none separate samefile withdb)
for m in "${modes[@]}"; do
	case $m in none | separate | samefile | withdb) ;; *) echo "gormsuite: unknown mode $m" >&2; usage ;; esac
done
[[ -n $tests || -n $gitdir ]] || usage

export GOWORK=off GOFLAGS=-mod=mod LC_ALL=C
version=$(cd "$repo" && go list -m -f '{{.Version}}' gorm.io/gorm)
gormsrc=$(cd "$repo" && go mod download -json "gorm.io/gorm@$version" | sed -n 's/^\t"Dir": "\(.*\)",$/\1/p')
[[ -d $gormsrc ]] || { echo "gormsuite: gorm.io/gorm@$version is not in the module cache" >&2; exit 1; }

work=$(mktemp -d "${TMPDIR:-/tmp}/gormsuite.XXXXXX")
[[ ${KEEP:-} == 1 ]] || trap 'rm -rf "$work"' EXIT
suite=$work/tests
if [[ -n $gitdir ]]; then
	mkdir -p "$suite"
	git --git-dir="$(git -C "$gitdir" rev-parse --absolute-git-dir)" archive "$version" tests |
		tar -x -C "$work" || { echo "gormsuite: no tag $version in $gitdir" >&2; exit 1; }
else
	[[ -f $tests/tests_test.go ]] || { echo "gormsuite: $tests/tests_test.go not found: give GORM's tests/ directory" >&2; exit 1; }
	cp -R "$tests" "$suite"
fi
echo "GORM $version tests, copied to $suite; gorm sources $gormsrc"

# Register the plugin on every DB that OpenTestConnection opens: right
# after the open's error check, before the function returns the DB.
cp "$repo/scripts/gormsuite/audit_hook_test.go" "$suite/zz_gormaudit_hook_test.go"
perl -0pi -e 's/(\n\tif err != nil \{\n\t\treturn\n\t\}\n)/$1\n\tif err = gormauditRegister(db); err != nil {\n\t\treturn\n\t}\n/ and $n++; END { exit($n == 1 ? 0 : 1) }' \
	"$suite/tests_test.go" || { echo "gormsuite: could not hook OpenTestConnection in tests_test.go" >&2; exit 1; }
grep -q 'gormauditRegister(db)' "$suite/tests_test.go" || { echo "gormsuite: hook missing" >&2; exit 1; }

(
	cd "$suite"
	go mod edit -replace "gorm.io/gorm=$gormsrc" -replace "github.com/cleveragents/audit=$repo" \
		-require github.com/cleveragents/audit@v0.0.0-00010101000000-000000000000
	go mod tidy >/dev/null 2>"$work/tidy.log" || { cat "$work/tidy.log" >&2; exit 1; }
	echo "building the suite..."
	go test -c -tags gormsuite -o "$work/gorm.test" .
)

# run MODE runs the suite binary, again without any test that panicked
# (a panic ends the binary: its test counts as failed, the rest still run).
run() {
	local mode=$1 dir=$work/$1 skip="" try
	mkdir -p "$dir"
	: >"$dir/test.log"
	for try in 1 2 3 4 5 6; do
		rm -rf "$dir/tmp" && mkdir -p "$dir/tmp"
		local args=(-test.v -test.count=1 -test.timeout=30m)
		[[ -z $skip ]] || args+=(-test.skip "^(${skip#|})\$")
		(cd "$suite" && TMPDIR=$dir/tmp GORMAUDIT_MODE=$mode GORMAUDIT_DIR=$dir "$work/gorm.test" "${args[@]}") \
			>"$dir/try$try.log" 2>&1 || true
		cat "$dir/try$try.log" >>"$dir/test.log"
		grep -qE '^panic: |^fatal error: ' "$dir/try$try.log" || break
		local t
		t=$(grep -E '^=== RUN   [^/]+$' "$dir/try$try.log" | tail -1 | sed 's/^=== RUN   //')
		[[ -n $t ]] || break
		echo "--- FAIL: $t (panicked)" >>"$dir/test.log"
		skip="$skip|$t"
	done
	# One line per top-level test, its last result (a rerun does not rerun
	# the tests that already ran; duplicates cannot occur across tries
	# except for the panicking test, whose FAIL line comes last).
	grep -E '^--- (PASS|FAIL|SKIP): ' "$dir/test.log" | sed -E 's/^--- ([A-Z]+): ([^ ]+).*/\2 \1/' |
		awk '{ r[$1] = $2 } END { for (t in r) print t, r[t] }' | sort >"$dir/results"
}

printf '\n%-9s %5s %5s %5s %12s %8s\n' mode pass fail skip regressions seconds >"$work/summary"
for mode in "${modes[@]}"; do
	echo "running mode $mode..."
	start=$SECONDS
	run "$mode"
	secs=$((SECONDS - start))
	pass=$(grep -c ' PASS$' "$work/$mode/results" || true)
	fail=$(grep -c ' FAIL$' "$work/$mode/results" || true)
	skipped=$(grep -c ' SKIP$' "$work/$mode/results" || true)
	regr=-
	if [[ $mode != none && -f $work/none/results ]]; then
		# Failing here, not failing (or not run) without the plugin.
		join <(grep ' FAIL$' "$work/$mode/results") <(grep -v ' FAIL$' "$work/none/results") |
			awk '{ print $1 }' >"$work/$mode/regressions"
		regr=$(wc -l <"$work/$mode/regressions")
	fi
	printf '%-9s %5s %5s %5s %12s %8s\n' "$mode" "$pass" "$fail" "$skipped" "$regr" "$secs" >>"$work/summary"
	grep -h '^GORMAUDIT: ' "$work/$mode/test.log" | sed "s/^/  $mode: /" || true
done
cat "$work/summary"
for mode in "${modes[@]}"; do
	if [[ -s $work/$mode/regressions ]]; then
		echo
		echo "$mode: fails with the plugin, passes without it:"
		while read -r t; do
			# The first error line GORM's logger or the test printed
			# between the test's start and its FAIL.
			msg=$(awk -v t="$t" '
				$0 == "=== RUN   " t { on = 1; next }
				on && index($0, "--- FAIL: " t " ") == 1 { exit }
				on && !found && (/_test\.go:[0-9]+: / || /database is locked/ || /^panic: /) { gsub(/\033\[[0-9;]*m/, ""); gsub(/[ \t]+/, " "); print substr($0, 1, 220); found = 1 }
			' "$work/$mode/test.log")
			echo "  $t: $msg"
		done <"$work/$mode/regressions"
	fi
	if [[ $mode == none && -f $work/none/results ]] && grep -q ' FAIL$' "$work/none/results"; then
		echo
		echo "none: fails without the plugin too (not counted as regressions):"
		grep ' FAIL$' "$work/none/results" | awk '{ print "  " $1 }'
	fi
done
[[ ${KEEP:-} != 1 ]] || echo "logs kept in $work"
