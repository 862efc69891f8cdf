#!/usr/bin/env bash
# iSCSI benchmark: the same fio jobs (libiscsi engine, no kernel initiator)
# against gatewayd (cached volume, hot cache), tgtd (file LUN, with and
# without O_SYNC) and gotgt v0.2.2 (memory LUN), all serving at once and the
# jobs interleaved (each job runs on every target before the next job), plus
# the disk's own limit (fio on a file on the same disk, fdatasync per write
# and per 16 writes), then a table with the ratios. See bench/iscsi/README.md.
#
#   bench/iscsi/run.sh                 # all targets, 10 s per job
#   RUNTIME=5 TARGETS="gatewayd tgtd-sync" bench/iscsi/run.sh
#   OUT=/some/dir bench/iscsi/run.sh   # keep fio's JSON (and profiles) there
#   LOAD=0 bench/iscsi/run.sh          # no loaded-latency job
#   PROFILE=1 bench/iscsi/run.sh       # gatewayd CPU profiles of the write jobs
#   TRACE=1 bench/iscsi/run.sh         # gatewayd execution traces of the loaded job
#                                      # (TRACE=write: of every write job); see README.md
#   SRC_base=/other/tree TARGETS="gatewayd gatewayd-base tgtd-sync" bench/iscsi/run.sh
#                                      # gatewayd-NAME: built from the tree in $SRC_NAME
#   TARGETS="gatewayd-wc tgtd" JOBS="randwrite-4k-qd16 randwrite-4k-qd32" bench/iscsi/run.sh
#                                      # gatewayd-wc: the volume's write cache on; JOBS: some jobs only
#   SRC_base=/other/tree TARGETS="gatewayd-wc gatewayd-wc-base tgtd" bench/iscsi/run.sh
#                                      # gatewayd-wc-NAME: write cache on, built from $SRC_NAME
set -euo pipefail

here="$(cd "$(dirname "$0")" && pwd)"
repo="$(cd "$here/../.." && pwd)"
runtime="${RUNTIME:-10}"
targets="${TARGETS:-gatewayd tgtd tgtd-sync gotgt}"
load="${LOAD:-8}" # CPU-bound processes beside the loaded job; 0: no such job
profile="${PROFILE:-}"
trace="${TRACE:-}" # 1: execution traces of the loaded job; write: of every write job
size_mib=1024
work="$(mktemp -d)"
out="${OUT:-$work/out}"
mkdir -p "$out"
pids=()
tgtd_ctls=()
load_pids=()
declare -A url
declare -A tpid # each target's serving process, for its CPU time per job

cleanup() {
	set +e
	stop_load
	for c in "${tgtd_ctls[@]}"; do stop_tgtd "$c"; done
	for p in "${pids[@]}"; do kill "$p" 2>/dev/null; wait "$p" 2>/dev/null; done
	rm -rf "$work"
}
trap cleanup EXIT

fio="$("$here/build-fio.sh")"
for tool in tgtd tgtadm iscsi-inq python3 curl; do
	command -v "$tool" >/dev/null || { echo "run.sh: $tool not found (apt-get install tgt libiscsi-bin python3 curl)" >&2; exit 1; }
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

# The jobs: NAME RW BS IODEPTH.
jobs=(
	"randread-4k-qd16 randread 4k 16"
	"randread-4k-qd32 randread 4k 32"
	"randwrite-4k-qd16 randwrite 4k 16"
	"randwrite-4k-qd32 randwrite 4k 32"
	"randwrite-4k-qd1 randwrite 4k 1"
	"write-1m-qd16 write 1m 16"
)
[ "$load" -gt 0 ] && jobs+=("randwrite-4k-qd16-loaded randwrite 4k 16")
if [ -n "${JOBS:-}" ]; then # only the jobs named
	picked=()
	for j in "${jobs[@]}"; do
		for want in $JOBS; do [ "${j%% *}" = "$want" ] && picked+=("$j"); done
	done
	[ ${#picked[@]} -gt 0 ] || { echo "run.sh: no job in JOBS=\"$JOBS\"" >&2; exit 2; }
	jobs=("${picked[@]}")
fi

start_load() { # $load CPU-bound processes at normal priority
	for _ in $(seq "$load"); do
		python3 -c 'while True: pass' &
		load_pids+=($!)
	done
}

stop_load() {
	for p in "${load_pids[@]}"; do
		kill "$p" 2>/dev/null || true
		wait "$p" 2>/dev/null || true
	done
	load_pids=()
}

# fio_job TARGET JOB RW BS IODEPTH: one job on TARGET's LUN, JSON to $out.
fio_job() {
	local t=$1 name=$2 rw=$3 bs=$4 qd=$5
	local file="${url[$t]//:/\\:}"
	"$fio" --name="$t-$name" --ioengine=libiscsi --filename="$file" --rw="$rw" --bs="$bs" --iodepth="$qd" \
		--size="${size_mib}m" --runtime="$runtime" --time_based --randrepeat=0 --norandommap \
		--output-format=json --output="$out/$t-$name.json" >/dev/null
}

# disk_job NAME RW BS SYNCEVERY: the physical limit, fio's psync engine on
# a file on the same disk, one writer, fdatasync after every SYNCEVERY writes.
disk_job() {
	local name=$1 rw=$2 bs=$3 every=$4
	"$fio" --name="disk-$name" --ioengine=psync --filename="$work/disk.img" --rw="$rw" --bs="$bs" \
		--size="${size_mib}m" --runtime="$runtime" --time_based --randrepeat=0 --norandommap \
		--fdatasync="$every" --output-format=json --output="$out/disk-$name.json" >/dev/null
}

stop_tgtd() { # CONTROL-PORT
	tgtadm -C "$1" --op update --mode sys --name State -v offline >/dev/null 2>&1
	tgt-admin -C "$1" --offline ALL >/dev/null 2>&1
	tgt-admin -C "$1" --update ALL -c /dev/null -f >/dev/null 2>&1
	tgtadm -C "$1" --op delete --mode system >/dev/null 2>&1
}

start_tgtd() { # NAME BSOFLAGS
	local name=$1 flags=$2 port ctl
	port=$(free_port)
	ctl=$((RANDOM % 1000 + 100))
	while [ -e "/var/run/tgtd/socket.$ctl" ]; do ctl=$((RANDOM % 1000 + 100)); done
	tgtd_ctls+=("$ctl")
	truncate -s "${size_mib}M" "$work/$name.img"
	tgtd -f -C "$ctl" --iscsi portal="127.0.0.1:$port" >"$work/$name.log" 2>&1 &
	pids+=($!)
	tpid[$name]=$!
	sleep 0.5
	tgtadm -C "$ctl" --lld iscsi --op new --mode target --tid 1 -T iqn.2024-01.io.gatewayd:tgtd
	if [ -n "$flags" ]; then
		tgtadm -C "$ctl" --lld iscsi --op new --mode logicalunit --tid 1 --lun 1 -b "$work/$name.img" --bsoflags "$flags"
	else
		tgtadm -C "$ctl" --lld iscsi --op new --mode logicalunit --tid 1 --lun 1 -b "$work/$name.img"
	fi
	tgtadm -C "$ctl" --lld iscsi --op bind --mode target --tid 1 -I ALL
	url[$name]="iscsi://127.0.0.1:$port/iqn.2024-01.io.gatewayd:tgtd/1"
	wait_lun "${url[$name]}"
}

start_gotgt() {
	local port
	port=$(free_port)
	(cd "$here/gotgtpeer" && go build -o "$work/gotgtpeer" .)
	"$work/gotgtpeer" -port "$port" -size $((size_mib << 20)) >"$work/gotgt.log" 2>&1 &
	pids+=($!)
	tpid[gotgt]=$!
	url[gotgt]="iscsi://127.0.0.1:$port/iqn.2024-01.io.gatewayd:gotgt/1"
	wait_lun "${url[gotgt]}"
}

declare -A gw gw_pid # per gatewayd target: its command line, its process

start_gatewayd() { # NAME SOURCE-TREE [VOLUME-CREATE-FLAGS...]
	local name=$1 src=$2 port d="$work/$1-data"
	shift 2
	port=$(free_port)
	(cd "$src" && go build -o "$work/$name" ./cmd/gatewayd)
	gw[$name]="$work/$name --data-dir $d"
	${gw[$name]} init >/dev/null
	# iSCSI on a free port, NFS and SMB off: another server on the machine
	# must not break the run.
	${gw[$name]} serve --iscsi-listen "127.0.0.1:$port" --nfs-listen "" --smb-listen "" >"$work/$name.log" 2>&1 &
	gw_pid[$name]=$!
	tpid[$name]=$!
	pids+=($!)
	for _ in $(seq 100); do ${gw[$name]} status >/dev/null 2>&1 && break; sleep 0.1; done
	${gw[$name]} volume create --name bench --size "${size_mib}M" --kind cached "$@" >/dev/null
	url[$name]="iscsi://127.0.0.1:$port/iqn.2024-01.io.gatewayd:bench/0"
	wait_lun "${url[$name]}"
}

wait_uploaded() { # until no gatewayd has anything left to upload
	local g
	for g in "${!gw[@]}"; do
		for _ in $(seq 1200); do
			if ${gw[$g]} volume info bench -o json | python3 -c 'import json,sys; sys.exit(json.load(sys.stdin)["stats"]["dirty_bytes"] != 0)'; then
				continue 2
			fi
			sleep 0.5
		done
		echo "run.sh: $g did not finish uploading" >&2
		return 1
	done
}

for t in $targets; do
	case "$t" in
	gatewayd) start_gatewayd gatewayd "${GATEWAYD_SRC:-$repo}" ;;
	gatewayd-wc) start_gatewayd gatewayd-wc "${GATEWAYD_SRC:-$repo}" --write-cache ;;
	gatewayd-wc-*)
		src="SRC_${t#gatewayd-wc-}"
		start_gatewayd "$t" "${!src:?$src: the tree to build $t from}" --write-cache
		;;
	gatewayd-*)
		src="SRC_${t#gatewayd-}"
		start_gatewayd "$t" "${!src:?$src: the tree to build $t from}"
		;;
	tgtd) start_tgtd tgtd "" ;;
	tgtd-sync) start_tgtd tgtd-sync sync ;;
	gotgt) start_gotgt ;;
	*) echo "run.sh: unknown target $t" >&2; exit 2 ;;
	esac
done

# Warm-up: write every block once, so reads find written data (and, for
# gatewayd, a hot cache once its uploads are done).
for t in $targets; do
	echo "== warm-up $t: ${url[$t]}" >&2
	"$fio" --name=warm --ioengine=libiscsi --filename="${url[$t]//:/\\:}" --rw=write --bs=1m --iodepth=8 \
		--size="${size_mib}m" --output-format=json --output="$out/$t-warmup.json" >/dev/null
done
fallocate -l "${size_mib}M" "$work/disk.img" 2>/dev/null || dd if=/dev/zero of="$work/disk.img" bs=1M count="$size_mib" status=none
sync

cpu_ticks() { # PID: user+system clock ticks of the process and its threads so far
	awk '{print $14 + $15}' "/proc/$1/stat"
}

# run_job TARGET JOB RW BS QD: the job, with gatewayd idle before it starts
# (its uploads from the job before are done, so they weigh on no target);
# for gatewayd also its fsync and fdatasync calls, and its CPU profile.
run_job() {
	local t=$1 name=$2
	[ ${#gw[@]} -gt 0 ] && wait_uploaded
	echo "== $t $name" >&2
	local bg=()
	if [ -n "${gw[$t]:-}" ]; then
		perf stat -x, -e syscalls:sys_enter_fdatasync,syscalls:sys_enter_fsync -p "${gw_pid[$t]}" \
			-o "$out/$t-$name.syncs" -- sleep "$runtime" >/dev/null 2>&1 &
		bg+=($!)
		if [ -n "$profile" ] && [[ "$name" == *write* ]]; then
			curl -s --unix-socket "$work/$t-data/admin.sock" -o "$out/$t-$name.pprof" \
				"http://gatewayd/debug/pprof/profile?seconds=$((runtime - 1))" &
			bg+=($!)
		fi
		# A trace of the middle of the job (a few seconds: a trace of the
		# whole job is large and its own cost weighs on the job).
		if { [ "$trace" = 1 ] && [[ "$name" == *loaded ]]; } || { [ "$trace" = write ] && [[ "$name" == *write* ]]; }; then
			(sleep 2 && curl -s --unix-socket "$work/$t-data/admin.sock" -o "$out/$t-$name.trace" \
				"http://gatewayd/debug/pprof/trace?seconds=$(((runtime - 2) / 2 > 0 ? (runtime - 2) / 2 : 1))") &
			bg+=($!)
		fi
	fi
	if [[ "$name" == *loaded ]]; then start_load; fi
	local t0
	t0=$(cpu_ticks "${tpid[$t]}")
	fio_job "$@"
	echo "$(($(cpu_ticks "${tpid[$t]}") - t0)) $(getconf CLK_TCK)" >"$out/$t-$name.cpu"
	if [[ "$name" == *loaded ]]; then stop_load; fi
	for p in "${bg[@]}"; do wait "$p" || true; done
}

for j in "${jobs[@]}"; do
	# shellcheck disable=SC2086
	set -- $j
	for t in $targets; do run_job "$t" "$@"; done
	case "$1" in
	randwrite-4k-qd16)
		disk_job randwrite-4k-sync1 randwrite 4k 1
		disk_job randwrite-4k-sync16 randwrite 4k 16
		;;
	write-1m-qd16)
		disk_job write-1m-sync1 write 1m 1
		disk_job write-1m-sync16 write 1m 16
		;;
	esac
done
uptime >"$out/uptime"

python3 "$here/report.py" "$out" $targets
if [ -n "$profile" ] || [ -n "$trace" ]; then
	for g in "${!gw[@]}"; do
		cp "$work/$g" "$out/$g.bin"
		for p in "$out/$g"-*.pprof; do
			[ -s "$p" ] || continue
			echo "== $(basename "$p")"
			go tool pprof -top -nodecount=25 "$out/$g.bin" "$p" 2>/dev/null | head -32
		done
		for tr in "$out/$g"-*.trace; do
			[ -s "$tr" ] || continue
			# Where goroutines waited: runnable without a CPU (sched),
			# blocked on channels and locks (sync), in system calls.
			for kind in sched sync syscall; do
				go tool trace -pprof="$kind" "$tr" >"${tr%.trace}.$kind.tprof" 2>/dev/null || continue
				echo "== $(basename "$tr") $kind"
				go tool pprof -top -nodecount=15 "${tr%.trace}.$kind.tprof" 2>/dev/null | head -22
			done
		done
	done
fi
[ -n "${OUT:-}" ] && echo "fio JSON in $out" >&2
true
