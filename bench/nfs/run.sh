#!/usr/bin/env bash
# NFS benchmark: the same fio jobs (libnfs engine, no kernel client) against
# a gatewayd share (embedded local-directory store) and nfs-ganesha 4.3
# (VFS FSAL on a local directory), one after the other in one run, then a
# table with the ratios. See bench/nfs/README.md.
#
#   bench/nfs/run.sh                   # both servers, 10 s per job
#   RUNTIME=5 SERVERS=gatewayd bench/nfs/run.sh
#   PROFILE=1 bench/nfs/run.sh         # gatewayd's CPU profiles of write-1m, read-1m and create
#   TRACE=1 bench/nfs/run.sh           # gatewayd's execution trace of the first write-1m
#                                      # (go tool trace OUT/gatewayd-write-1m.trace)
#   ROUNDS=5 bench/nfs/run.sh          # write-1m rounds (default 3)
#   JOBS=write bench/nfs/run.sh        # only the write-1m rounds and the disk's limit
#   JOBS=read bench/nfs/run.sh         # only read-1m and randread-4k (the file written once,
#                                      # untimed), read by readload, not fio; with PROFILE,
#                                      # a CPU profile of read-1m
#   JOBS=create bench/nfs/run.sh       # only the creation of 10,000 files of 4 KiB, with
#                                      # gatewayd's fdatasync, fsync and msync calls (perf)
#   JOBS=tree bench/nfs/run.sh         # a source tree copied, a directory of 100,000 files
#                                      # listed (bench/nfs/tree.sh)
#   SRC_base=/other/tree SERVERS="gatewayd gatewayd-base ganesha" bench/nfs/run.sh
#                                      # gatewayd-NAME: gatewayd built from $SRC_NAME
#
# Both servers serve at once. write-1m runs ROUNDS times, the servers and
# the disk's own limit (fio on a file on the same disk: no sync, fdatasync
# per 16 writes, per write) taking turns in each round, each after the
# page cache is written back and gatewayd has uploaded what it holds; the
# table gives the median. fio's libnfs engine sends UNSTABLE writes and no
# COMMIT; after write-1m, commit.py COMMITs the file, as a Linux client
# does at close, and the table also gives write-1m with that COMMIT's
# time. gatewayd's fsync and fdatasync calls during write-1m and its
# COMMIT (perf) are printed beside it. The other jobs run once per server.
set -euo pipefail

here="$(cd "$(dirname "$0")" && pwd)"
repo="$(cd "$here/../.." && pwd)"
runtime="${RUNTIME:-10}"
servers="${SERVERS:-gatewayd ganesha}"
profile="${PROFILE:-}"
rounds="${ROUNDS:-3}"
jobs="${JOBS:-all}"
profile_seconds="${PROFILE_SECONDS:-2}"
trace="${TRACE:-}"
trace_seconds="${TRACE_SECONDS:-2}"
declare -A urls gw_pid
size_mib=1024
files=10000
work="$(mktemp -d)"
out="${OUT:-$work/out}"
mkdir -p "$out"
pids=()

cleanup() {
	set +e
	for p in "${pids[@]}"; do kill "$p" 2>/dev/null; wait "$p" 2>/dev/null; done
	rm -rf "$work"
}
trap cleanup EXIT

fio="$("$repo/bench/iscsi/build-fio.sh")"
readload="$work/readload"
(cd "$repo" && go build -o "$readload" ./bench/nfs/readload)
for tool in ganesha.nfsd rpcbind nfs-ls python3 perf curl; do
	command -v "$tool" >/dev/null || { echo "run.sh: $tool not found (apt-get install nfs-ganesha nfs-ganesha-vfs rpcbind libnfs-utils python3 linux-perf curl)" >&2; exit 1; }
done

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

# fio_job NAME URL RW BS IODEPTH [extra fio args]: one job, JSON to $out.
fio_job() {
	local name=$1 url=$2 rw=$3 bs=$4 qd=$5
	shift 5
	"$fio" --name="$name" --ioengine=nfs --nfs_url="$url" --filename=bench.bin --rw="$rw" --bs="$bs" --iodepth="$qd" \
		--size="${size_mib}m" --output-format=json --output="$out/$name.json" "$@" >/dev/null
}

# read_job NAME URL BS IODEPTH [-random]: readload (raw ONC RPC, one
# connection, IODEPTH READs in flight, replies taken in any order) reads
# bench.bin for RUNTIME seconds; fio-style JSON to $out. fio's libnfs
# engine at times hangs at the end of a read job against a server that
# answers out of order (in libnfs's synchronous wait after the job).
read_job() {
	local name=$1 url=$2 bs=$3 qd=$4 host path nfsport mountport
	shift 4
	host=${url#nfs://}; host=${host%%/*}
	path=${url#nfs://"$host"}; path=${path%%\?*}
	nfsport=${url#*nfsport=}; nfsport=${nfsport%%&*}
	mountport=${url#*mountport=}; mountport=${mountport%%&*}
	"$readload" -nfs "$host:$nfsport" -mount "$host:$mountport" -export "$path" -file bench.bin \
		-bs "$bs" -qd "$qd" -seconds "$runtime" -name "$name" "$@" >"$out/$name.json"
}

# settle: the page cache written back, and every gatewayd's share uploaded.
settle() {
	sync
	local g
	for g in "${!gw_pid[@]}"; do
		for _ in $(seq 1200); do
			curl -s --unix-socket "$work/$g-data/admin.sock" http://gatewayd/metrics |
				grep -q '^gatewayd_share_files_pending{share="bench"} 0$' && continue 2
			sleep 0.5
		done
		echo "run.sh: $g did not finish uploading" >&2
		return 1
	done
}

# write_job SERVER ROUND: write-1m, then a COMMIT of the file (commit.py:
# seconds and verifier to $out/SERVER-commit.ROUND); for a gatewayd its
# fsync and fdatasync calls meanwhile (perf, to
# $out/SERVER-write-1m.ROUND.syncs) and, with PROFILE, its CPU profile and,
# with TRACE, its execution trace
# (first round).
write_job() {
	local s=$1 r=$2 perf_pid="" prof_pid="" trace_pid=""
	local url=${urls[$s]}
	settle
	echo "== $s write-1m, round $r" >&2
	uptime >>"$out/uptime.$r"
	if [ -n "${gw_pid[$s]:-}" ]; then
		perf stat -x, -e syscalls:sys_enter_fdatasync,syscalls:sys_enter_fsync -p "${gw_pid[$s]}" \
			-o "$out/$s-write-1m.$r.syncs" >/dev/null 2>&1 &
		perf_pid=$!
		if [ -n "$profile" ] && [ "$r" = 1 ]; then
			curl -s --unix-socket "$work/$s-data/admin.sock" -o "$out/$s-write-1m.pprof" \
				"http://gatewayd/debug/pprof/profile?seconds=$profile_seconds" &
			prof_pid=$!
		fi
		if [ -n "$trace" ] && [ "$r" = 1 ]; then
			curl -s --unix-socket "$work/$s-data/admin.sock" -o "$out/$s-write-1m.trace" \
				"http://gatewayd/debug/pprof/trace?seconds=$trace_seconds" &
			trace_pid=$!
		fi
	fi
	fio_job "$s-write-1m.$r" "$url" write 1m 8
	# nfs://HOST/EXPORT?nfsport=N&mountport=M&...
	local host path nfsport mountport
	host=${url#nfs://}; host=${host%%/*}
	path=${url#nfs://"$host"}; path=${path%%\?*}
	nfsport=${url#*nfsport=}; nfsport=${nfsport%%&*}
	mountport=${url#*mountport=}; mountport=${mountport%%&*}
	python3 "$here/commit.py" "$host" "$nfsport" "$mountport" "$path" bench.bin >"$out/$s-commit.$r"
	if [ -n "$perf_pid" ]; then kill -INT "$perf_pid"; wait "$perf_pid" || true; fi
	if [ -n "$prof_pid" ]; then wait "$prof_pid" || true; fi
	if [ -n "$trace_pid" ]; then wait "$trace_pid" || true; fi
}

# disk_job NAME SYNCEVERY: the disk's limit, fio's psync engine writing
# 1 MiB blocks to a file on the same disk, fdatasync after every SYNCEVERY
# writes (0: never).
disk_job() {
	settle
	echo "== disk $1" >&2
	"$fio" --name="disk-$1" --ioengine=psync --filename="$work/disk.img" --rw=write --bs=1m \
		--size="${size_mib}m" --fdatasync="$2" --output-format=json --output="$out/disk-$1.json" >/dev/null
	rm -f "$work/disk.img"
}

run_suite() { # SERVER: the jobs after write-1m
	local s=$1 prof_pid=""
	local url=${urls[$s]}
	settle
	echo "== $s read-1m: $url" >&2
	echo "$s read-1m: $(uptime)" >>"$out/uptime.reads"
	if [ -n "$profile" ] && [ -n "${gw_pid[$s]:-}" ]; then
		curl -s --unix-socket "$work/$s-data/admin.sock" -o "$out/$s-read-1m.pprof" \
			"http://gatewayd/debug/pprof/profile?seconds=$profile_seconds" &
		prof_pid=$!
	fi
	if [ "$jobs" = read ]; then
		read_job "$s-read-1m" "$url" 1048576 8
	else
		fio_job "$s-read-1m" "$url" read 1m 8 --runtime="$runtime" --time_based
	fi
	if [ -n "$prof_pid" ]; then wait "$prof_pid" || true; fi
	echo "$s randread-4k: $(uptime)" >>"$out/uptime.reads"
	if [ "$jobs" = read ]; then
		read_job "$s-randread-4k" "$url" 4096 16 -random
	else
		fio_job "$s-randread-4k" "$url" randread 4k 16 --runtime="$runtime" --time_based --randrepeat=0 --norandommap
	fi
	[ "$jobs" = all ] || return 0
	create_job "$s"
}

# create_job SERVER: $files files of 4 KiB, each created, written, closed;
# for a gatewayd its fdatasync, fsync and msync calls meanwhile (perf, to
# $out/SERVER-create.syncs) and, with PROFILE, its CPU profile of the
# first PROFILE_SECONDS (to $out/SERVER-create.pprof).
create_job() {
	local s=$1 perf_pid="" prof_pid=""
	settle
	echo "== $s create" >&2
	echo "$s create: $(uptime)" >>"$out/uptime.create"
	if [ -n "${gw_pid[$s]:-}" ]; then
		perf stat -x, -e syscalls:sys_enter_fdatasync,syscalls:sys_enter_fsync,syscalls:sys_enter_msync -p "${gw_pid[$s]}" \
			-o "$out/$s-create.syncs" >/dev/null 2>&1 &
		perf_pid=$!
		if [ -n "$profile" ]; then
			curl -s --unix-socket "$work/$s-data/admin.sock" -o "$out/$s-create.pprof" \
				"http://gatewayd/debug/pprof/profile?seconds=$profile_seconds" &
			prof_pid=$!
		fi
	fi
	"$fio" --name="$s-create" --ioengine=nfs --nfs_url="${urls[$s]}" --filename_format='small.$filenum' \
		--nrfiles="$files" --filesize=4k --bs=4k --rw=write --openfiles=1 --file_service_type=sequential \
		--create_on_open=1 --output-format=json --output="$out/$s-create.json" >/dev/null
	if [ -n "$perf_pid" ]; then kill -INT "$perf_pid"; wait "$perf_pid" || true; fi
	if [ -n "$prof_pid" ]; then wait "$prof_pid" || true; fi
}

start_gatewayd() { # NAME SRC
	local name=$1 src=$2 port d="$work/$1-data"
	port=$(free_port)
	(cd "$src" && go build -o "$work/$name" ./cmd/gatewayd)
	local g="$work/$name --data-dir $d"
	$g init >/dev/null
	$g serve --nfs-listen "127.0.0.1:$port" --nfs-rpcbind=false --iscsi-listen "" --smb-listen "" >"$work/$name.log" 2>&1 &
	gw_pid[$name]=$!
	pids+=($!)
	for _ in $(seq 100); do $g status >/dev/null 2>&1 && break; sleep 0.1; done
	$g share create --name bench >/dev/null
	urls[$name]="nfs://127.0.0.1/bench?nfsport=$port&mountport=$port&auto-traverse-mounts=0"
}

start_ganesha() {
	local nfs mnt dir="$work/ganesha-export"
	nfs=$(free_port)
	mnt=$(free_port)
	mkdir -p "$dir" "$work/ganesha"
	pgrep -x rpcbind >/dev/null || { rpcbind -f -w & pids+=($!); sleep 0.5; }
	cat >"$work/ganesha/ganesha.conf" <<-EOF
		NFS_CORE_PARAM {
			NFS_Port = $nfs;
			MNT_Port = $mnt;
			Bind_addr = 127.0.0.1;
			Enable_NLM = false;
			Enable_RQUOTA = false;
			Protocols = 3;
		}
		NFSV4 { Graceless = true; }
		EXPORT {
			Export_Id = 1;
			Path = $dir;
			Pseudo = /bench;
			Access_Type = RW;
			Squash = No_Root_Squash;
			Protocols = 3;
			Transports = TCP;
			SecType = sys;
			FSAL { Name = VFS; }
		}
		LOG { Default_Log_Level = WARN; }
	EOF
	ganesha.nfsd -F -f "$work/ganesha/ganesha.conf" -L "$work/ganesha/log" -p "$work/ganesha/pid" &
	pids+=($!)
	urls[ganesha]="nfs://127.0.0.1$dir?nfsport=$nfs&mountport=$mnt&auto-traverse-mounts=0"
	for _ in $(seq 100); do nfs-ls "${urls[ganesha]}" >/dev/null 2>&1 && break; sleep 0.2; done
}

for s in $servers; do
	case "$s" in
	gatewayd) start_gatewayd gatewayd "$repo" ;;
	gatewayd-*)
		src="SRC_${s#gatewayd-}"
		start_gatewayd "$s" "${!src:?$src: the tree to build $s from}"
		;;
	ganesha) start_ganesha ;;
	*) echo "run.sh: unknown server $s" >&2; exit 2 ;;
	esac
done
if [ "$jobs" = tree ]; then
	. "$here/tree.sh" # the tree copy and the listing, their own table
	exit 0
fi
if [ "$jobs" = create ]; then
	rounds=0
	for s in $servers; do create_job "$s"; done
fi
if [ "$jobs" = read ]; then
	rounds=0
	for s in $servers; do
		echo "== $s: writing the file to read (untimed)" >&2
		fio_job "$s-fill" "${urls[$s]}" write 1m 8
	done
fi
for r in $(seq "$rounds"); do
	for s in $servers; do write_job "$s" "$r"; done
	disk_job "write-1m-nosync.$r" 0
	disk_job "write-1m-sync16.$r" 16
	disk_job "write-1m-sync1.$r" 1
done
if [ "$jobs" != write ] && [ "$jobs" != create ]; then
	for s in $servers; do run_suite "$s"; done
fi

for g in "${!gw_pid[@]}"; do
	for j in write-1m read-1m; do
		[ -n "$profile" ] && [ -f "$out/$g-$j.pprof" ] || continue
		echo "== $g CPU profile of $j" >&2
		go tool pprof -top -nodecount=30 "$work/$g" "$out/$g-$j.pprof" 2>/dev/null | head -38 >&2
	done
done

python3 - "$out" "$size_mib" "$rounds" $servers <<'EOF'
import json, os, statistics, sys
out, size_mib, rounds, servers = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), sys.argv[4:]
jobs = [("write-1m", "write", "MB/s"), ("write-1m+commit", "write", "MB/s"), ("read-1m", "read", "MB/s"), ("randread-4k", "read", "IOPS"), ("create", "write", "files/s")]
def job(name):
    p = os.path.join(out, f"{name}.json")
    if not os.path.exists(p):
        return None
    text = open(p).read()
    d = json.loads(text[text.index("{"):])["jobs"][0]  # fio's nfs engine may print warnings first
    return None if d.get("error") else d
def commit_seconds(s, r):
    p = os.path.join(out, f"{s}-commit.{r}")
    return float(open(p).read().split()[0]) if os.path.exists(p) else None
def median(xs):
    xs = [x for x in xs if x is not None]
    return statistics.median(xs) if xs else None
def write_figure(s, r, commit):
    d = job(f"{s}-write-1m.{r}")
    c = commit_seconds(s, r) if commit else 0
    if d is None or c is None:
        return None
    return d["write"]["io_bytes"] / (d["job_runtime"] / 1000 + c) / 1e6
def figure(s, j, side, unit):
    if j.startswith("write-1m"):
        return median([write_figure(s, r, j == "write-1m+commit") for r in range(1, rounds + 1)])
    d = job(f"{s}-{j}")
    if d is None:
        return None
    x = d[side]
    if unit == "MB/s":
        return x["bw_bytes"] / 1e6
    if unit == "files/s":
        return x["total_ios"] / (d["job_runtime"] / 1000)
    return x["iops"]
gws = [s for s in servers if s.startswith("gatewayd")]
peer = "ganesha" if "ganesha" in servers else None
ratios = [g for g in gws if peer]
print("| job | unit | " + " | ".join(servers) + "".join(f" | {g}/{peer}" for g in ratios) + " |")
print("|---|---|" + "---|" * (len(servers) + len(ratios)))
for j, side, unit in jobs:
    figs = {s: figure(s, j, side, unit) for s in servers}
    row = [j, unit] + [f"{figs[s]:.0f}" if figs[s] is not None else "error" for s in servers]
    for g in ratios:
        row.append(f"{figs[g] / figs[peer]:.2f}" if figs[g] is not None and figs[peer] else "-")
    print("| " + " | ".join(row) + " |")
print()
print("write-1m by round, MB/s (with COMMIT):")
for r in range(1, rounds + 1):
    row = []
    for s in servers:
        a, b = write_figure(s, r, False), write_figure(s, r, True)
        row.append(f"{s} {a or 0:.0f} ({b or 0:.0f}, COMMIT {1000 * (commit_seconds(s, r) or 0):.1f} ms)")
    for name in ["write-1m-nosync", "write-1m-sync16", "write-1m-sync1"]:
        d = job(f"disk-{name}.{r}")
        row.append(f"disk {name[9:]} {d['write']['bw_bytes'] / 1e6 if d else 0:.0f}")
    print(f"  round {r}: " + ", ".join(row))
    p = os.path.join(out, f"uptime.{r}")
    if os.path.exists(p):
        print("    load average before each write-1m (uptime): " + "; ".join(l.split("load average:")[-1].strip() for l in open(p)))
p = os.path.join(out, "uptime.reads")
if os.path.exists(p):
    print("load average before each read job (uptime): " + "; ".join(l.split(":")[0] + " " + l.split("load average:")[-1].strip() for l in open(p)))
for name in ["write-1m-nosync", "write-1m-sync16", "write-1m-sync1"]:
    m = median([job(f"disk-{name}.{r}")["write"]["bw_bytes"] / 1e6 for r in range(1, rounds + 1) if job(f"disk-{name}.{r}")])
    if m:
        print(f"disk limit, {name} (median): {m:.0f} MB/s")
def syncs(g, r):
    p = os.path.join(out, f"{g}-write-1m.{r}.syncs")
    if not os.path.exists(p):
        return None
    n = 0
    for line in open(p):
        f = line.split(",")
        if len(f) > 2 and f[2].startswith("syscalls:") and f[0].strip().isdigit():
            n += int(f[0])
    return n
for g in gws:
    ns = [syncs(g, r) for r in range(1, rounds + 1)]
    if any(n is not None for n in ns):
        print(f"{g} fsync+fdatasync calls during write-1m and its COMMIT, by round: " +
              ", ".join(f"{n} ({n / size_mib:.3f} per MiB)" for n in ns if n is not None))
    p = os.path.join(out, f"{g}-create.syncs")
    if os.path.exists(p):
        counts = {}
        for line in open(p):
            f = line.split(",")
            if len(f) > 2 and f[2].startswith("syscalls:") and f[0].strip().isdigit():
                counts[f[2].split("sys_enter_")[-1]] = int(f[0])
        print(f"{g} calls during create, per file: " + ", ".join(f"{k} {v / 10000:.2f}" for k, v in sorted(counts.items())))
p = os.path.join(out, "uptime.create")
if os.path.exists(p):
    print("load average before each create job (uptime): " + "; ".join(l.split(":")[0] + " " + l.split("load average:")[-1].strip() for l in open(p)))
EOF
true
