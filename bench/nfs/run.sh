#!/usr/bin/env bash
# NFS benchmark: the same fio jobs (libnfs engine, no kernel client) against
# a gatewayd share (embedded local-directory store) and nfs-ganesha 4.3
# (VFS FSAL on a local directory), one after the other in one run, then a
# table with the ratios. See bench/nfs/README.md.
#
#   bench/nfs/run.sh                   # both servers, 10 s per job
#   RUNTIME=5 SERVERS=gatewayd bench/nfs/run.sh
set -euo pipefail

here="$(cd "$(dirname "$0")" && pwd)"
repo="$(cd "$here/../.." && pwd)"
runtime="${RUNTIME:-10}"
servers="${SERVERS:-gatewayd ganesha}"
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
for tool in ganesha.nfsd rpcbind nfs-ls python3; do
	command -v "$tool" >/dev/null || { echo "run.sh: $tool not found (apt-get install nfs-ganesha nfs-ganesha-vfs rpcbind libnfs-utils python3)" >&2; exit 1; }
done

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

# fio_job NAME URL RW BS IODEPTH [extra fio args]: one job, JSON to $out.
fio_job() {
	local name=$1 url=$2 rw=$3 bs=$4 qd=$5
	shift 5
	"$fio" --name="$name" --ioengine=nfs --nfs_url="$url" --filename=bench.bin --rw="$rw" --bs="$bs" --iodepth="$qd" \
		--size="${size_mib}m" --output-format=json --output="$out/$name.json" "$@" >/dev/null
}

run_suite() { # SERVER URL
	local s=$1 url=$2
	echo "== $s: $url" >&2
	fio_job "$s-write-1m" "$url" write 1m 8
	fio_job "$s-read-1m" "$url" read 1m 8 --runtime="$runtime" --time_based
	fio_job "$s-randread-4k" "$url" randread 4k 16 --runtime="$runtime" --time_based --randrepeat=0 --norandommap
	# Many small files: $files files of 4 KiB, each created, written, closed.
	"$fio" --name="$s-create" --ioengine=nfs --nfs_url="$url" --filename_format='small.$filenum' \
		--nrfiles="$files" --filesize=4k --bs=4k --rw=write --openfiles=1 --file_service_type=sequential \
		--create_on_open=1 --output-format=json --output="$out/$s-create.json" >/dev/null
}

bench_gatewayd() {
	local port d="$work/gatewayd-data"
	port=$(free_port)
	(cd "$repo" && go build -o "$work/gatewayd" ./cmd/gatewayd)
	local g="$work/gatewayd --data-dir $d"
	$g init >/dev/null
	$g serve --nfs-listen "127.0.0.1:$port" --nfs-rpcbind=false --iscsi-listen "" --smb-listen "" >"$work/gatewayd.log" 2>&1 &
	pids+=($!)
	for _ in $(seq 100); do $g status >/dev/null 2>&1 && break; sleep 0.1; done
	$g share create --name bench >/dev/null
	run_suite gatewayd "nfs://127.0.0.1/bench?nfsport=$port&mountport=$port&auto-traverse-mounts=0"
}

bench_ganesha() {
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
	local url="nfs://127.0.0.1$dir?nfsport=$nfs&mountport=$mnt&auto-traverse-mounts=0"
	for _ in $(seq 100); do nfs-ls "$url" >/dev/null 2>&1 && break; sleep 0.2; done
	run_suite ganesha "$url"
}

for s in $servers; do
	case "$s" in
	gatewayd) bench_gatewayd ;;
	ganesha) bench_ganesha ;;
	*) echo "run.sh: unknown server $s" >&2; exit 2 ;;
	esac
done

python3 - "$out" $servers <<'EOF'
import json, os, sys
out, servers = sys.argv[1], sys.argv[2:]
jobs = [("write-1m", "write", "MB/s"), ("read-1m", "read", "MB/s"), ("randread-4k", "read", "IOPS"), ("create", "write", "files/s")]
def figure(s, j, side, unit):
    p = os.path.join(out, f"{s}-{j}.json")
    if not os.path.exists(p):
        return None
    text = open(p).read()
    d = json.loads(text[text.index("{"):])["jobs"][0]  # fio's nfs engine may print warnings first
    if d.get("error"):
        return None
    x = d[side]
    if unit == "MB/s":
        return x["bw_bytes"] / 1e6
    if unit == "files/s":
        return x["total_ios"] / (d["job_runtime"] / 1000)
    return x["iops"]
print("| job | unit | " + " | ".join(servers) + (" | gatewayd/ganesha" if len(servers) == 2 else "") + " |")
print("|---|---|" + "---|" * len(servers) + ("---|" if len(servers) == 2 else ""))
for j, side, unit in jobs:
    figs = [figure(s, j, side, unit) for s in servers]
    row = [j, unit] + [f"{f:.0f}" if f is not None else "error" for f in figs]
    if len(servers) == 2:
        row.append(f"{figs[0] / figs[1]:.2f}" if None not in figs and figs[1] else "-")
    print("| " + " | ".join(row) + " |")
EOF
true
