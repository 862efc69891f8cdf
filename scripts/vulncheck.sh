#!/usr/bin/env bash
# Checks gatewayd against the Go vulnerability database with govulncheck.
# The database is built locally from a pinned snapshot of its source
# module (golang.org/x/vulndb, served by the Go module proxy like any
# module) with that module's own indexdb command, so the check needs no
# other network service and gives the same answer on every run until the
# pin is moved forward. Move VULNDB_VERSION forward to learn of newer
# vulnerabilities (`go list -m golang.org/x/vulndb@latest`).
#
# It scans the packages the gatewayd binary is built from; test-only
# clients are listed in RELIABILITY.md with what is known about them.
set -euo pipefail
cd "$(dirname "$0")/.."

GOVULNCHECK_VERSION=v1.9.0
VULNDB_VERSION=v0.0.0-20261105234957-e22db6528018
export PATH="$PATH:$(go env GOPATH)/bin"
# The standard library checked is the toolchain go.mod names (patch
# releases fix its vulnerabilities), whatever GOTOOLCHAIN says here.
GOTOOLCHAIN=$(sed -n 's/^toolchain //p' go.mod)
export GOTOOLCHAIN

if ! command -v govulncheck >/dev/null 2>&1 || ! govulncheck -version 2>/dev/null | grep -q "govulncheck@$GOVULNCHECK_VERSION"; then
	echo "== installing govulncheck $GOVULNCHECK_VERSION"
	(cd /tmp && GOFLAGS=-mod=mod go install "golang.org/x/vuln/cmd/govulncheck@$GOVULNCHECK_VERSION")
fi

db="${XDG_CACHE_HOME:-$HOME/.cache}/gatewayd-vulndb/$VULNDB_VERSION"
if [ ! -f "$db/index/db.json" ]; then
	echo "== building the vulnerability database from golang.org/x/vulndb@$VULNDB_VERSION"
	src=$(cd /tmp && GOFLAGS=-mod=mod go mod download -json "golang.org/x/vulndb@$VULNDB_VERSION" | sed -n 's/^\t"Dir": "\(.*\)",$/\1/p')
	[ -d "$src/data/osv" ] || { echo "vulncheck: no data/osv in golang.org/x/vulndb@$VULNDB_VERSION" >&2; exit 1; }
	rm -rf "$db.tmp"
	(cd /tmp && GOFLAGS=-mod=mod go run "golang.org/x/vulndb/cmd/indexdb@$VULNDB_VERSION" -vulns "$src/data/osv" -out "$db.tmp")
	rm -rf "$db" && mv "$db.tmp" "$db"
fi
echo "== govulncheck (database golang.org/x/vulndb@$VULNDB_VERSION)"
govulncheck -db "file://$db" ./cmd/gatewayd
