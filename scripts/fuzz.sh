#!/usr/bin/env bash
# A short fuzzing pass over every fuzz target: each FuzzXxx function run
# from its own package for FUZZTIME (10s unless set), with FUZZPARALLEL
# workers (1 unless set). scripts/test.sh runs
# it beside the test suite; by hand: FUZZTIME=1m ./scripts/fuzz.sh.
#
# Each package's fuzzing-instrumented test binary is built once and runs
# its targets one after another, as `go test -fuzz` would run each (same
# flags, corpus cache and testdata): go test -fuzz takes one target, and
# relinked the binary for every one.
set -euo pipefail
cd "$(dirname "$0")/.."

fuzztime="${FUZZTIME:-10s}"
# One fuzzing worker unless FUZZPARALLEL says more: the pass runs beside
# the test suite on a 2-core machine, and a second worker took CPU from the
# tests for no finding in any run so far.
fuzzpar="${FUZZPARALLEL:-1}"
bindir="$(mktemp -d)"
trap 'rm -rf "$bindir"' EXIT
cachedir="$(go env GOCACHE)/fuzz"
root="$(pwd)"

start=$SECONDS
for dir in $(grep -rl --include='*_test.go' '^func Fuzz' . | xargs -n1 dirname | sort -u); do
	pkg="./${dir#./}"
	importpath="$(go list "$pkg")"
	bin="$bindir/$(echo "${pkg#./}" | tr / _).test"
	go test -c -fuzz . -o "$bin" "$pkg"
	for fn in $(grep -ho '^func Fuzz[A-Za-z0-9_]*' "$pkg"/*_test.go | sed 's/^func //' | sort); do
		echo "-- $pkg $fn"
		log="$bindir/log"
		# As go test -fuzz runs it: from the package's directory (its
		# testdata/fuzz corpus), with go's corpus cache and go test's
		# default -timeout.
		fuzz() {
			(cd "$root/$pkg" && "$bin" -test.run '^$' -test.fuzz "^${fn}\$" -test.fuzztime "$fuzztime" -test.parallel "$fuzzpar" \
				-test.fuzzminimizetime 5s -test.fuzzcachedir "$cachedir/$importpath" -test.timeout 10m)
		}
		if fuzz >"$log" 2>&1; then
			cat "$log"
		elif grep -q 'context deadline exceeded' "$log" && ! grep -q 'Failing input' "$log"; then
			# Go's fuzzing coordinator sometimes fails on a loaded machine
			# with a bare "context deadline exceeded" as its time runs
			# out, having found nothing (its timer closes the deadline
			# before it cancels the workers' context); only then is the
			# target run once more. A real finding names its input and
			# always fails. The first attempt's output is kept, indented,
			# so that it does not read as a test's failure.
			echo "-- $pkg $fn: the fuzzing harness timed out stopping its workers; running it again. Its output:"
			sed 's/^/   | /' "$log"
			fuzz || { echo "FAIL: $pkg $fn"; exit 1; }
		else
			cat "$log"
			echo "FAIL: $pkg $fn"
			exit 1
		fi
	done
done
echo "== fuzz: $((SECONDS - start))s"
