#!/usr/bin/env bash
# Tape benchmark: write then read SIZE bytes in 256 KiB and 1 MiB records
# through iSCSI, the way a backup server streams to a tape drive (one
# command at a time, variable-block mode), against gatewayd's tape library
# (embedded defaults: tapes in a local-directory object store) in buffered
# mode 1 and in unbuffered mode 0, and tgtd's tape emulation (a tape file
# on the same disk), one after the other in one run; beside them the
# disk's own limit (fio writing a file on the same disk with fdatasync
# after every write and after every 16), then a table with the ratios.
# See bench/vtl/README.md.
#
#   bench/vtl/run.sh                 # 4 GiB per block size
#   SIZE=1G bench/vtl/run.sh         # quicker
#   MODES=1 bench/vtl/run.sh         # gatewayd in buffered mode only
#   ROUNDS=3 bench/vtl/run.sh        # every job three times, alternating; medians
#   PROFILE=1 OUT=/some/dir bench/vtl/run.sh
#                                    # CPU profiles of gatewayd's buffered writes, kept in OUT
#   TRACE=1 OUT=/some/dir bench/vtl/run.sh
#                                    # an execution trace of them too (TRACE_SECONDS=5, after 5 s)
#   GATEWAYD_SRC=/some/tree bench/vtl/run.sh
#                                    # gatewayd (and tapebench) built from another source tree
#   GATEWAYD_BASE_SRC=/other/tree bench/vtl/run.sh
#                                    # and, beside it, gatewayd built from this tree in buffered mode 1
#                                    # ("before": a change against the build without it, in one run)
set -euo pipefail

here="$(cd "$(dirname "$0")" && pwd)"
repo="$(cd "$here/../.." && pwd)"
size="${SIZE:-4G}"
sizes="${BLOCKS:-256K 1M}"
modes="${MODES:-1 0}"
profile="${PROFILE:-}"
trace_on="${TRACE:-}"
work="$(mktemp -d)"
keep="${OUT:-$work}"
mkdir -p "$keep"
out="$work/results.jsonl"
pids=()
tgtd_ctl=""

cleanup() {
	set +e
	if [ -n "$tgtd_ctl" ]; then stop_tgtd; fi
	for p in "${pids[@]}"; do kill "$p" 2>/dev/null; wait "$p" 2>/dev/null; done
	rm -rf "$work"
}
trap cleanup EXIT

for tool in tgtd tgtadm tgtimg python3 fio curl; do
	command -v "$tool" >/dev/null || { echo "run.sh: $tool not found (apt-get install tgt python3 fio curl)" >&2; exit 1; }
done
echo "load before: $(uptime)" >&2
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

echo "== building gatewayd and tapebench" >&2
(cd "${GATEWAYD_SRC:-$repo}" && go build -o "$work/gatewayd" ./cmd/gatewayd && go build -o "$work/tapebench" ./bench/vtl/tapebench)
base_src="${GATEWAYD_BASE_SRC:-}"
if [ -n "$base_src" ]; then (cd "$base_src" && go build -o "$work/gatewayd-base" ./cmd/gatewayd); fi

stop_tgtd() {
	tgtadm -C "$tgtd_ctl" --op update --mode sys --name State -v offline >/dev/null 2>&1
	tgt-admin -C "$tgtd_ctl" --offline ALL >/dev/null 2>&1
	tgt-admin -C "$tgtd_ctl" --update ALL -c /dev/null -f >/dev/null 2>&1
	tgtadm -C "$tgtd_ctl" --op delete --mode system >/dev/null 2>&1
	tgtd_ctl=""
}

# Both targets run side by side, idle but for the job being timed; the
# jobs alternate (each record size: gatewayd in each mode, then tgtd), and
# ROUNDS repeats them: the table shows each job's median, so a change in
# the machine's load hits both targets alike.
rounds="${ROUNDS:-1}"

tape_gib=$(( $(python3 -c "import sys; s='$size'; m={'K':1<<10,'M':1<<20,'G':1<<30}; print(int(s[:-1])*m[s[-1]] if s[-1] in m else int(s))") / (1<<30) + 2 ))

# start_gatewayd BIN DATA-DIR PORT: a gateway with one tape, moved into
# the drive and back by each job.
start_gatewayd() {
	local bin=$1 dir=$2 port=$3
	"$bin" init --data-dir "$dir" >/dev/null
	"$bin" serve --data-dir "$dir" --iscsi-listen "127.0.0.1:$port" --nfs-listen "" --smb-listen "" >"$bin.log" 2>&1 &
	pids+=($!)
	for _ in $(seq 100); do "$bin" status --data-dir "$dir" >/dev/null 2>&1 && break; sleep 0.1; done
	"$bin" tape create --data-dir "$dir" --count 1 --barcode-prefix BENCH --size "${tape_gib}G" >/dev/null
}

gw="$work/gw"
gwport=$(free_port)
start_gatewayd "$work/gatewayd" "$gw" "$gwport"
gwpid=${pids[-1]}

# Bytes a process has written to the disk (dirtied in the page cache, less
# what was deleted before it reached the disk), from /proc/PID/io.
disk_written() { awk '/^write_bytes/ {w=$2} /^cancelled_write_bytes/ {c=$2} END {printf "%.0f\n", w-c}' "/proc/$1/io"; }
# timed_job PID LABEL BS TAPEBENCH-ARGS...: one tapebench job, and the
# bytes its target process wrote to the disk during it.
timed_job() {
	local pid=$1 label=$2 bs=$3
	shift 3
	local before after
	before=$(disk_written "$pid")
	"$work/tapebench" "$@" -bs "$bs" -size "$size" -label "$label" >>"$out"
	after=$(disk_written "$pid")
	echo "{\"label\":\"$label\",\"phase\":\"disk\",\"record_bytes\":$(python3 -c "m={'K':1<<10,'M':1<<20}; s='$bs'; print(int(s[:-1])*m[s[-1]])"),\"disk_bytes\":$((after - before)),\"mb_per_s\":0}" >>"$out"
}

# tgtd: a changer and one drive, one tape file (README.vtl's layout).
tgtd_ctl=$((RANDOM % 1000 + 100))
tport=$(free_port)
tw="$work/tgt"
mkdir -p "$tw"
dd if=/dev/zero of="$tw/smc" bs=1k count=1 2>/dev/null
tgtimg --op new --device-type tape --barcode BENCH001 --size $((tape_gib * 1024)) --type data --file "$tw/BENCH001" >/dev/null
tgtd -f -C "$tgtd_ctl" --iscsi portal="127.0.0.1:$tport" >"$work/tgtd.log" 2>&1 &
pids+=($!)
tgtpid=$!
sleep 1
iqn=iqn.2026-01.bench:vtl
ta() { tgtadm -C "$tgtd_ctl" --lld iscsi "$@"; }
ta --op new --mode target --tid 1 -T "$iqn"
ta --mode logicalunit --op new --tid 1 --lun 1 -b "$tw/BENCH001" --device-type=tape
ta --mode logicalunit --op update --tid 1 --lun 1 --params online=0
ta --mode logicalunit --op new --tid 1 --lun 2 -b "$tw/smc" --device-type=changer
ta --mode logicalunit --op update --tid 1 --lun 2 --params media_home="$tw"
ta --mode logicalunit --op update --tid 1 --lun 2 --params element_type=4,start_address=1,quantity=1
ta --mode logicalunit --op update --tid 1 --lun 2 --params element_type=4,address=1,tid=1,lun=1
ta --mode logicalunit --op update --tid 1 --lun 2 --params element_type=1,start_address=2,quantity=1
ta --mode logicalunit --op update --tid 1 --lun 2 --params element_type=2,start_address=3,quantity=1
ta --mode logicalunit --op update --tid 1 --lun 2 --params element_type=2,address=3,barcode=BENCH001,sides=1
ta --op bind --mode target --tid 1 -I ALL

# gatewayd before a change (GATEWAYD_BASE_SRC), the same way.
if [ -n "$base_src" ]; then
	gwb="$work/gwb"
	gwbport=$(free_port)
	start_gatewayd "$work/gatewayd-base" "$gwb" "$gwbport"
	gwbpid=${pids[-1]}
fi

for round in $(seq "$rounds"); do
	for bs in $sizes; do
		for mode in $modes; do
			echo "== round $round: gatewayd: $bs records, $size, buffered mode $mode; $(uptime)" >&2
			prof=""
			if [ -n "$profile" ] && [ "$mode" = 1 ] && [ "$round" = 1 ]; then
				# The write phase comes first: profile its first PROFILE_SECONDS.
				curl -s --unix-socket "$gw/admin.sock" -o "$keep/gatewayd-write-$bs.pprof" \
					"http://gatewayd/debug/pprof/profile?seconds=${PROFILE_SECONDS:-20}" &
				prof=$!
			fi
			trace=""
			if [ -n "$trace_on" ] && [ "$mode" = 1 ] && [ "$round" = 1 ]; then
				(sleep 5; curl -s --unix-socket "$gw/admin.sock" -o "$keep/gatewayd-write-$bs.trace" \
					"http://gatewayd/debug/pprof/trace?seconds=${TRACE_SECONDS:-5}") &
				trace=$!
			fi
			timed_job "$gwpid" "gatewayd-$mode" "$bs" -addr "127.0.0.1:$gwport" -target iqn.2024-01.io.gatewayd:vtl \
				-changer 0 -drive 1 -buffered "$mode"
			if [ -n "$prof" ]; then wait "$prof" || true; fi
			if [ -n "$trace" ]; then wait "$trace" || true; fi
		done
		if [ -n "$base_src" ]; then
			echo "== round $round: gatewayd before: $bs records, $size, buffered mode 1; $(uptime)" >&2
			timed_job "$gwbpid" gatewayd-base-1 "$bs" -addr "127.0.0.1:$gwbport" -target iqn.2024-01.io.gatewayd:vtl \
				-changer 0 -drive 1 -buffered 1
		fi
		echo "== round $round: tgtd: $bs records, $size; $(uptime)" >&2
		timed_job "$tgtpid" tgtd "$bs" -addr "127.0.0.1:$tport" -target "$iqn" -changer 2 -drive 1
	done
done
if [ -n "$profile$trace_on" ]; then cp "$work/gatewayd" "$keep/gatewayd.bin"; fi
kill "${pids[0]}"; wait "${pids[0]}" 2>/dev/null || true
stop_tgtd # tgtd exits
wait "${pids[1]}" 2>/dev/null || true
if [ -n "$base_src" ]; then kill "${pids[2]}"; wait "${pids[2]}" 2>/dev/null || true; fi
pids=()

# The disk's limit: fio writing a file on the same disk, one writer,
# fdatasync after every write and after every 16.
for bs in $sizes; do
	for every in 1 16; do
		echo "== disk: $bs writes, fdatasync every $every" >&2
		fio --name=disk --ioengine=psync --filename="$work/disk.img" --rw=write --bs="$bs" --size=1g \
			--runtime="${DISK_RUNTIME:-20}" --time_based --fdatasync="$every" --output-format=json |
			python3 -c 'import json,sys; j=json.load(sys.stdin)["jobs"][0]["write"]; bs=sys.argv[1]; m={"K":1<<10,"M":1<<20}; print(json.dumps({"label":"disk-"+sys.argv[2],"phase":"write","record_bytes":int(bs[:-1])*m[bs[-1]],"mb_per_s":j["bw_bytes"]/1e6}))' "$bs" "$every" >>"$out"
		rm -f "$work/disk.img"
	done
done
echo "load after: $(uptime)" >&2

python3 - "$out" "$size" <<'PY'
import json, sys
rows = [json.loads(l) for l in open(sys.argv[1])]
import statistics
disk = {}
for x in rows:
    if x["phase"] == "disk":
        disk.setdefault((x["label"], x["record_bytes"]), []).append(x["disk_bytes"])
rows = [x for x in rows if x["phase"] != "disk"]
runs = {}
for x in rows:
    runs.setdefault((x["label"], x["phase"], x["record_bytes"]), []).append(x["mb_per_s"])
r = {k: statistics.median(v) for k, v in runs.items()}
print("\nevery run (MB/s): " + "; ".join(f"{k[0]} {k[1]} {k[2] // 1024} KiB: " + " ".join(f"{v:.0f}" for v in vs) for k, vs in sorted(runs.items())))
print(f"\nwrite then read {sys.argv[2]} per record size, one command at a time (MB/s, median of the rounds)\n")
base = any(k[0] == "gatewayd-base-1" for k in r)
print("| job | gatewayd buffered (mode 1) | gatewayd unbuffered (mode 0) | tgtd | mode 1/tgtd | mode 0/tgtd | disk, fdatasync per write | disk, fdatasync per 16 writes |" + (" before, mode 1 | before/tgtd |" if base else ""))
print("|---|---|---|---|---|---|---|---|" + ("---|---|" if base else ""))
f = lambda v: "-" if v is None else f"{v:.0f}"
q = lambda a, b: "-" if a is None or not b else f"{a / b:.2f}"
for bs in sorted({k[2] for k in r}):
    for ph in ("write", "read"):
        g1, g0, t = r.get(("gatewayd-1", ph, bs)), r.get(("gatewayd-0", ph, bs)), r.get(("tgtd", ph, bs))
        d1, d16 = r.get(("disk-1", ph, bs)), r.get(("disk-16", ph, bs))
        b1 = r.get(("gatewayd-base-1", ph, bs))
        print(f"| {ph} {bs // 1024} KiB records | {f(g1)} | {f(g0)} | {f(t)} | {q(g1, t)} | {q(g0, t)} | {f(d1)} | {f(d16)} |" + (f" {f(b1)} | {q(b1, t)} |" if base else ""))
m = {"K": 1 << 10, "M": 1 << 20, "G": 1 << 30}
s = sys.argv[2]
written = int(s[:-1]) * m[s[-1]] if s[-1] in m else int(s)
print("\nbytes written to the disk by the target process per byte of the tape written (write and read-back job, /proc/PID/io, median of the rounds): " +
      "; ".join(f"{k[0]} {k[1] // 1024} KiB: {statistics.median(v) / written:.2f}" for k, v in sorted(disk.items())))
PY
if [ -n "$profile" ]; then
	for p in "$keep"/gatewayd-write-*.pprof; do
		echo "== $p" >&2
		go tool pprof -top -nodecount=25 "$keep/gatewayd.bin" "$p" 2>/dev/null | head -34
	done
fi
