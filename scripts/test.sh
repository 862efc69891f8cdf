#!/usr/bin/env bash
# Runs every check gatewayd's tests have: formatting, vet, the whole test
# suite with the race detector, and a short fuzzing pass over each fuzz
# target (scripts/fuzz.sh).
# Needs the MinIO binary (see README: Test); .ci/run installs it.
#
# go vet and the fuzzing pass run beside the test suite, their output kept
# and printed whole once the tests end, so that their minutes no longer
# come after the tests' (README, Test: where the time goes). Each stage
# prints its wall time and the CPU time of what it ran.
set -euo pipefail
cd "$(dirname "$0")/.."

export PATH="$PATH:$(go env GOPATH)/bin"

# The race detector's shadow memory, for every allocation of 64 KiB or
# more, is by default given back to the kernel and mapped anew: each of
# its pages then faults twice on first use, the second time a
# copy-on-write whose TLB flush interrupts every CPU the process runs on.
# With this threshold it is cleared in place instead. The race-checked
# volume package took 447 s (677 s of CPU) without it on an idle 2-core
# machine, 181 s (243 s) with it; the race-built daemons of cmd/gatewayd's
# tests get it from their environment too.
export GORACE="clear_shadow_mmap_threshold=4294967296${GORACE:+ $GORACE}"

echo "== gofmt"
unformatted=$(gofmt -l $(git ls-files '*.go' 2>/dev/null || find . -name '*.go'))
if [ -n "$unformatted" ]; then
	echo "gofmt needed on:"; echo "$unformatted"; exit 1
fi

bindir="$(mktemp -d)"
side_pid=""
race_pid=""
e2e_pid=""
cleanup() {
	# Interrupted or failed before the side stage ended: stop it (it runs
	# in its own process group), and the test runs.
	[ -n "$side_pid" ] && kill -- "-$side_pid" 2>/dev/null || true
	[ -n "$race_pid" ] && kill "$race_pid" 2>/dev/null || true
	[ -n "$e2e_pid" ] && kill "$e2e_pid" 2>/dev/null || true
	rm -rf "$bindir"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# cpu_seconds sets cpu to the CPU seconds (user and system) this shell's
# waited-for children have used so far. It sets a variable rather than
# printing: in $(...) it would run in a subshell, whose children have
# used none.
cpu_seconds() {
	times >"$bindir/times"
	cpu=$(awk 'NR == 2 { s = 0; for (i = 1; i <= 2; i++) { split($i, t, /[ms]/); s += t[1] * 60 + t[2] }; printf "%.0f", s }' "$bindir/times")
}

echo "== go vet and the fuzz pass: started, beside the tests"
side_log="$bindir/side"
setsid -w bash -c 'start=$(date +%s); rc=0
	echo "== go vet"; go vet ./... || rc=$?
	echo "== go vet: $(($(date +%s) - start))s"
	[ "$rc" -eq 0 ] && { ./scripts/fuzz.sh || rc=$?; }
	exit $rc' >"$side_log" 2>&1 &
side_pid=$!

echo "== go test (race-checked; cmd/gatewayd beside it, its daemons for raceTests race-built)"
# go test -json, summarised as go test prints it (failed tests' output, one
# line per package) with each package's tests run, passed, failed and
# skipped. In CI (CI=true) a skipped test fails the run: .ci/run installs
# every tool the tests need, and a test that lacks one fails, never skips.
summary="$bindir/testsummary"
go build -o "$summary" ./scripts/testsummary
skipflag=""
[ "${CI:-}" = "true" ] && skipflag="-fail-on-skip"
# -parallel 8: cmd/gatewayd's end-to-end tests that wait on servers run
# side by side (each with its own daemon; see its TestMain). The default,
# the number of CPUs, would run two at a time on a 2-core machine.
# -p 4: four packages' tests at once, not two (the default, the number of
# CPUs): cmd/gatewayd and fileshare take most of the run and mostly wait,
# and with two at a time every other package waited for them to end.
# -timeout 75m: go test's bound for a hung package, not a speed check; on
# a busy machine the race-checked fileshare package alone has taken 40
# minutes beside the others.
#
# cmd/gatewayd's end-to-end tests run beside the others in a test binary
# without the race detector, with -race-daemons: their own process only
# drives clients, and race-checking those cost about as much CPU as all
# the daemons together; the daemons of the tests it names race-checked
# end to end stay race-built. Both runs are summarised as one (each from
# its own named pipe); -p 3 and the one package keep four packages
# running at once.
start=$SECONDS
cpu_seconds; cpu0=$cpu
tests_rc=0
e2e_pkg=github.com/gatewayd/gatewayd/cmd/gatewayd
pkgs=$(go list ./... | grep -vx "$e2e_pkg")
mkfifo "$bindir/race.json" "$bindir/e2e.json"
go test -race -count=1 -p 3 -parallel 8 -timeout 75m -json $pkgs >"$bindir/race.json" 2>&1 &
race_pid=$!
go test -count=1 -parallel 8 -timeout 75m -json "$e2e_pkg" -args -race-daemons >"$bindir/e2e.json" 2>&1 &
e2e_pid=$!
"$summary" $skipflag -counts "$bindir/counts" "$bindir/race.json" "$bindir/e2e.json" || tests_rc=$?
wait "$race_pid" || tests_rc=1
wait "$e2e_pid" || tests_rc=1
race_pid="" e2e_pid=""
cpu_seconds
echo "== go test: $((SECONDS - start))s, CPU $((cpu - cpu0))s"

side_rc=0
cpu0=$cpu
wait "$side_pid" || side_rc=$?
side_pid=""
cat "$side_log"
cpu_seconds
echo "== go vet and fuzz (beside the tests): CPU $((cpu - cpu0))s"
# The last line is the plain count a reader of the log (or CI) looks for.
read -r n_pass n_fail n_skip <"$bindir/counts" 2>/dev/null || { n_pass=0; n_fail=0; n_skip=0; }
if [ "$tests_rc" -ne 0 ] || [ "$side_rc" -ne 0 ]; then
	echo "== FAILED: go test exit $tests_rc, go vet and fuzz exit $side_rc"
	echo "tests: $n_pass passed, $n_fail failed, $n_skip skipped"
	exit 1
fi
echo "== all checks passed"
echo "tests: $n_pass passed, $n_fail failed, $n_skip skipped"
