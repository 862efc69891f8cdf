#!/usr/bin/env bash
# iSCSI benchmark: the same fio jobs (libiscsi engine, no kernel initiator)
# against gatewayd (cached volume, hot cache), tgtd (file LUN, with and
# without O_SYNC) and gotgt v0.2.2 (memory LUN), one after another in one
# run, then a table with the ratios. See bench/iscsi/README.md.
#
#   bench/iscsi/run.sh                 # all targets, 10 s per job
#   RUNTIME=5 TARGETS="gatewayd tgtd" bench/iscsi/run.sh
#   OUT=/some/dir bench/iscsi/run.sh   # keep fio's JSON there
set -euo pipefail

here="$(cd "$(dirname "$0")" && pwd)"
repo="$(cd "$here/../.." && pwd)"
runtime="${RUNTIME:-10}"
targets="${TARGETS:-gatewayd tgtd tgtd-sync gotgt}"
size_mib=1024
work="$(mktemp -d)"
out="${OUT:-$work/out}"
mkdir -p "$out"
pids=()
tgtd_ctl=""

cleanup() {
	set +e
	if [ -n "$tgtd_ctl" ]; then stop_tgtd; fi
	for p in "${pids[@]}"; do kill "$p" 2>/dev/null; wait "$p" 2>/dev/null; done
	rm -rf "$work"
}
trap cleanup EXIT

fio="$("$here/build-fio.sh")"
for tool in tgtd tgtadm iscsi-inq python3; do
	command -v "$tool" >/dev/null || { echo "run.sh: $tool not found (apt-get install tgt libiscsi-bin python3)" >&2; exit 1; }
done

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

wait_lun() { # URL: wait until the LUN answers INQUIRY
	for _ in $(seq 100); do
		iscsi-inq "$1" >/dev/null 2>&1 && return 0
		sleep 0.1
	done
	echo "run.sh: $1 never answered" >&2
	return 1
}

# fio_job NAME URL RW BS IODEPTH [extra fio args]: one job, JSON to $out.
fio_job() {
	local name=$1 url=$2 rw=$3 bs=$4 qd=$5
	shift 5
	local file="${url//:/\\:}"
	"$fio" --name="$name" --ioengine=libiscsi --filename="$file" --rw="$rw" --bs="$bs" --iodepth="$qd" \
		--size="${size_mib}m" --runtime="$runtime" --time_based --randrepeat=0 --norandommap \
		--output-format=json --output="$out/$name.json" "$@" >/dev/null
}

settle=true # a command run after the warm-up, until the target is idle

run_suite() { # TARGET URL
	local t=$1 url=$2
	echo "== $t: $url" >&2
	# Warm-up: write every block once, so reads find written data (and,
	# for gatewayd, a hot cache).
	"$fio" --name=warm --ioengine=libiscsi --filename="${url//:/\\:}" --rw=write --bs=1m --iodepth=8 \
		--size="${size_mib}m" --output-format=json --output="$out/$t-warmup.json" >/dev/null
	$settle
	fio_job "$t-randread-4k-qd16" "$url" randread 4k 16
	fio_job "$t-randread-4k-qd32" "$url" randread 4k 32
	fio_job "$t-randwrite-4k-qd16" "$url" randwrite 4k 16
	fio_job "$t-randwrite-4k-qd32" "$url" randwrite 4k 32
	fio_job "$t-write-1m-qd16" "$url" write 1m 16
}

stop_tgtd() {
	tgtadm -C "$tgtd_ctl" --op update --mode sys --name State -v offline >/dev/null 2>&1
	tgt-admin -C "$tgtd_ctl" --offline ALL >/dev/null 2>&1
	tgt-admin -C "$tgtd_ctl" --update ALL -c /dev/null -f >/dev/null 2>&1
	tgtadm -C "$tgtd_ctl" --op delete --mode system >/dev/null 2>&1
	tgtd_ctl=""
}

bench_tgtd() { # NAME BSOFLAGS
	local name=$1 flags=$2 port
	port=$(free_port)
	tgtd_ctl=$((RANDOM % 1000 + 100))
	truncate -s "${size_mib}M" "$work/$name.img"
	tgtd -f -C "$tgtd_ctl" --iscsi portal="127.0.0.1:$port" >"$work/$name.log" 2>&1 &
	pids+=($!)
	sleep 0.5
	tgtadm -C "$tgtd_ctl" --lld iscsi --op new --mode target --tid 1 -T iqn.2024-01.io.gatewayd:tgtd
	if [ -n "$flags" ]; then
		tgtadm -C "$tgtd_ctl" --lld iscsi --op new --mode logicalunit --tid 1 --lun 1 -b "$work/$name.img" --bsoflags "$flags"
	else
		tgtadm -C "$tgtd_ctl" --lld iscsi --op new --mode logicalunit --tid 1 --lun 1 -b "$work/$name.img"
	fi
	tgtadm -C "$tgtd_ctl" --lld iscsi --op bind --mode target --tid 1 -I ALL
	local url="iscsi://127.0.0.1:$port/iqn.2024-01.io.gatewayd:tgtd/1"
	wait_lun "$url"
	run_suite "$name" "$url"
	stop_tgtd
	rm -f "$work/$name.img"
}

bench_gotgt() {
	local port
	port=$(free_port)
	(cd "$here/gotgtpeer" && go build -o "$work/gotgtpeer" .)
	"$work/gotgtpeer" -port "$port" -size $((size_mib << 20)) >"$work/gotgt.log" 2>&1 &
	pids+=($!)
	local url="iscsi://127.0.0.1:$port/iqn.2024-01.io.gatewayd:gotgt/1"
	wait_lun "$url"
	run_suite gotgt "$url"
}

wait_uploaded() { # GATEWAYD-COMMAND...: until volume bench has nothing left to upload
	for _ in $(seq 600); do
		if "$@" volume info bench -o json | python3 -c 'import json,sys; sys.exit(json.load(sys.stdin)["stats"]["dirty_bytes"] != 0)'; then
			return 0
		fi
		sleep 0.5
	done
	echo "run.sh: gatewayd did not finish uploading the warm-up data" >&2
	return 1
}

bench_gatewayd() {
	local port d="$work/gatewayd-data"
	port=$(free_port)
	(cd "$repo" && go build -o "$work/gatewayd" ./cmd/gatewayd)
	local g="$work/gatewayd --data-dir $d"
	$g init >/dev/null
	$g serve --iscsi-listen "127.0.0.1:$port" --nfs-listen "" --smb-listen "" >"$work/gatewayd.log" 2>&1 &
	pids+=($!)
	for _ in $(seq 100); do $g status >/dev/null 2>&1 && break; sleep 0.1; done
	$g volume create --name bench --size "${size_mib}M" --kind cached >/dev/null
	local url="iscsi://127.0.0.1:$port/iqn.2024-01.io.gatewayd:bench/0"
	wait_lun "$url"
	# The warm-up's data goes on to the object store in the background;
	# measure once that is done, as a steady state.
	settle="wait_uploaded $g"
	run_suite gatewayd "$url"
	settle=true
}

for t in $targets; do
	case "$t" in
	gatewayd) bench_gatewayd ;;
	tgtd) bench_tgtd tgtd "" ;;
	tgtd-sync) bench_tgtd tgtd-sync sync ;;
	gotgt) bench_gotgt ;;
	*) echo "run.sh: unknown target $t" >&2; exit 2 ;;
	esac
done

python3 - "$out" $targets <<'EOF'
import json, os, sys
out, targets = sys.argv[1], sys.argv[2:]
jobs = ["randread-4k-qd16", "randread-4k-qd32", "randwrite-4k-qd16", "randwrite-4k-qd32", "write-1m-qd16"]
def figure(t, j):
    p = os.path.join(out, f"{t}-{j}.json")
    if not os.path.exists(p):
        return None
    d = json.load(open(p))["jobs"][0]
    side = d["read"] if "read" in j else d["write"]
    if d.get("error"):
        return None
    return side["iops"], side["bw_bytes"] / 1e6
head = "| job | " + " | ".join(f"{t} IOPS | {t} MB/s" for t in targets)
others = [t for t in targets if t != "gatewayd"]
if "gatewayd" in targets:
    head += " | " + " | ".join(f"gatewayd/{t}" for t in others)
print(head + " |")
print("|" + "---|" * (1 + 2 * len(targets) + (len(others) if "gatewayd" in targets else 0)))
for j in jobs:
    row = [j]
    figs = {t: figure(t, j) for t in targets}
    for t in targets:
        f = figs[t]
        row += [f"{f[0]:.0f}", f"{f[1]:.1f}"] if f else ["error", "error"]
    if "gatewayd" in targets:
        g = figs["gatewayd"]
        for t in others:
            f = figs[t]
            row.append(f"{g[0] / f[0]:.2f}" if g and f and f[0] else "-")
    print("| " + " | ".join(row) + " |")
EOF
[ -n "${OUT:-}" ] && echo "fio JSON in $out" >&2
true
