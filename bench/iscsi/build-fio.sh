#!/usr/bin/env bash
# Builds fio with the libiscsi and libnfs engines from Debian's own fio
# source package (Debian's fio binary has neither) and prints the path of
# the binary. The result is cached; a second run only prints the path.
set -euo pipefail

cache="${GATEWAYD_BENCH_CACHE:-$HOME/.cache/gatewayd-bench}"
out="$cache/fio"
if [ -x "$out" ]; then
	echo "$out"
	exit 0
fi
mkdir -p "$cache"

sudo=""
[ "$(id -u)" -ne 0 ] && sudo="sudo"
apt_install() { $sudo apt-get install -y -qq -o DPkg::Lock::Timeout=600 --no-install-recommends "$@" >&2; }

# A deb-src entry mirroring the machine's own Debian deb entries.
if ! grep -rqs '^Types:.*deb-src\|^deb-src' /etc/apt/sources.list /etc/apt/sources.list.d/; then
	src=/etc/apt/sources.list.d/gatewayd-bench-src.sources
	if [ -f /etc/apt/sources.list.d/debian.sources ]; then
		sed 's/^Types: deb$/Types: deb-src/' /etc/apt/sources.list.d/debian.sources | $sudo tee "$src" >/dev/null
	else
		grep '^deb ' /etc/apt/sources.list | sed 's/^deb /deb-src /' | $sudo tee /etc/apt/sources.list.d/gatewayd-bench-src.list >/dev/null
	fi
fi
$sudo apt-get update -qq >&2
apt_install dpkg-dev build-essential libiscsi-dev libnfs-dev zlib1g-dev libaio-dev pkg-config

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
cd "$work"
apt-get source -qq fio >&2
cd fio-*/
./configure --enable-libiscsi --enable-libnfs >&2
make -j"$(nproc)" fio >&2
install -m 0755 fio "$out"
"$out" --enc-help >/dev/null 2>&1 || true
"$out" --version >&2
echo "$out"
