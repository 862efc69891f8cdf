#!/usr/bin/env bash
# RSS of gatewayd while its upload buffer fills and nothing drains: an
# upload buffer of BUFFER_GIB (default 8), the upload limit at 1 KiB/s, a
# cached volume written in 1000 MiB steps over iSCSI (fio, libiscsi), the
# RSS after each step; then a kill -9 with the buffer full and the RSS of
# the restart that replays it. Needs about 2.2x BUFFER_GIB of free disk.
#
#   bench/iscsi/rss-full-buffer.sh
#   BUFFER_GIB=2 OUT=/some/dir bench/iscsi/rss-full-buffer.sh   # keep the heap profile
set -euo pipefail

here="$(cd "$(dirname "$0")" && pwd)"
repo="$(cd "$here/../.." && pwd)"
gib="${BUFFER_GIB:-8}"
fio="$("$here/build-fio.sh")"
work="$(mktemp -d)"
out="${OUT:-$work/out}"
mkdir -p "$out"
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
(cd "$repo" && go build -o "$work/gatewayd" ./cmd/gatewayd)
gw="$work/gatewayd --data-dir $work/d"
$gw init >/dev/null
python3 - "$work/d/gatewayd.yaml" "$gib" <<'PY'
import re, sys
p, gib = sys.argv[1], int(sys.argv[2])
s = open(p).read()
s = re.sub(r'(?m)^(cache:\n(?:  .*\n)*?)  size: .*\n', r'\g<1>  size: %dGiB\n' % (gib * 3 // 2), s)
s = re.sub(r'(?m)^(upload_buffer:\n(?:  .*\n)*?)  size: .*\n', r'\g<1>  size: %dGiB\n' % gib, s)
open(p, 'w').write(s)
PY
pid=
serve() {
	$gw serve --iscsi-listen "127.0.0.1:$port" --nfs-listen "" --smb-listen "" >>"$work/log" 2>&1 &
	pid=$!
	for _ in $(seq 3000); do $gw status >/dev/null 2>&1 && return 0; sleep 0.2; done
	echo "rss-full-buffer: gatewayd did not start" >&2
	return 1
}
trap '[ -n "$pid" ] && kill "$pid" 2>/dev/null; wait; rm -rf "$work"' EXIT
serve
$gw volume create --name big --size "$((gib * 3 / 2))G" --kind cached >/dev/null
$gw bandwidth set --upload 1K >/dev/null
url="iscsi\\://127.0.0.1\\:$port/iqn.2024-01.io.gatewayd\\:big/0"
mem() { awk '/VmRSS|VmHWM/{printf "%s %d MiB  ", $1, $2/1024}' "/proc/$pid/status"; }
buffered() { curl -s --unix-socket "$work/d/admin.sock" http://gatewayd/metrics | awk '/^gatewayd_upload_buffer_used_bytes /{printf "%.2f GB", $2/1e9}'; }
echo "empty: $(mem) $(uptime)"
steps=$((gib * 1024 * 98 / 100 / 1000)) # up to about 98 % full: a write into a full buffer waits
for g in $(seq 0 $((steps - 1))); do
	"$fio" --name=fill --ioengine=libiscsi --filename="$url" --rw=write --bs=1m --iodepth=8 \
		--offset="$((g * 1000))m" --size=1000m --output-format=json --output="$out/fill$g.json" >/dev/null
	echo "buffer $(buffered): $(mem)"
done
curl -s --unix-socket "$work/d/admin.sock" -o "$out/heap.pprof" http://gatewayd/debug/pprof/heap
cp "$work/gatewayd" "$out/gatewayd.bin"
kill -9 "$pid"
wait "$pid" 2>/dev/null || true
start=$(date +%s)
serve
echo "restarted after kill -9 in $(($(date +%s) - start)) s: $(mem) $(uptime)"
grep "replayed upload buffer" "$work/log" || true
[ -n "${OUT:-}" ] && echo "heap profile: go tool pprof -top $out/gatewayd.bin $out/heap.pprof" >&2
true
