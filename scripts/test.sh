#!/usr/bin/env bash
# Runs every check gatewayd's tests have: formatting, vet, the whole test
# suite with the race detector, and a short fuzzing pass over each fuzz target.
# Needs the MinIO binary (see README: Testing); .ci/run installs it.
set -euo pipefail
cd "$(dirname "$0")/.."

export PATH="$PATH:$(go env GOPATH)/bin"
fuzztime="${FUZZTIME:-10s}"

echo "== gofmt"
unformatted=$(gofmt -l $(git ls-files '*.go' 2>/dev/null || find . -name '*.go'))
if [ -n "$unformatted" ]; then
	echo "gofmt needed on:"; echo "$unformatted"; exit 1
fi

echo "== go vet"
go vet ./...

echo "== go test -race"
# go test -json, summarised as go test prints it (failed tests' output, one
# line per package) with each package's tests run, passed, failed and
# skipped. In CI (CI=true) a skipped test fails the run: .ci/run installs
# every tool the tests need, and a test that lacks one fails, never skips.
bindir="$(mktemp -d)"
trap 'rm -rf "$bindir"' EXIT
summary="$bindir/testsummary"
go build -o "$summary" ./scripts/testsummary
skipflag=""
[ "${CI:-}" = "true" ] && skipflag="-fail-on-skip"
# -parallel 8: cmd/gatewayd's end-to-end tests that wait on servers run
# side by side (each with its own daemon; see its TestMain). The default,
# the number of CPUs, would run two at a time on a 2-core machine.
start=$SECONDS
go test -race -count=1 -parallel 8 -timeout 45m -json ./... | "$summary" $skipflag
echo "== go test -race: $((SECONDS - start))s"

echo "== fuzz ($fuzztime per target)"
start=$SECONDS
# Every FuzzXxx function, run from its own package for a short time.
grep -rl --include='*_test.go' '^func Fuzz' . | while read -r f; do
	pkg="./$(dirname "${f#./}")"
	for fn in $(grep -o '^func Fuzz[A-Za-z0-9_]*' "$f" | sed 's/^func //'); do
		echo "-- $pkg $fn"
		log=$(mktemp)
		if ! go test -run '^$' -fuzz "^${fn}\$" -fuzztime "$fuzztime" -fuzzminimizetime 5s "$pkg" 2>&1 | tee "$log"; then
			# Go's fuzzing coordinator sometimes fails to stop its workers in
			# time on a loaded machine ("context deadline exceeded") without
			# having found anything; only then is the target run once more.
			# A real finding names its input and always fails.
			if grep -q 'context deadline exceeded' "$log" && ! grep -q 'Failing input' "$log"; then
				echo "-- $pkg $fn: the fuzzing harness timed out stopping its workers; running it again"
				go test -run '^$' -fuzz "^${fn}\$" -fuzztime "$fuzztime" -fuzzminimizetime 5s "$pkg"
			else
				rm -f "$log"
				exit 1
			fi
		fi
		rm -f "$log"
	done
done
echo "== fuzz: $((SECONDS - start))s"
echo "== all checks passed"
