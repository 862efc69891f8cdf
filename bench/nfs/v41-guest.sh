#!/bin/bash
# The NFSv4.1 benchmark's guest side (bench/nfs/v41.sh), run by the
# appliance image's init: gatewayd and nfs-ganesha serve one share each
# from the data disk (/dev/vdb, ext4) on the guest's 127.0.0.1, the guest
# kernel mounts both over NFSv4.1, and fio runs the same jobs on each
# mount. fio's JSON and each job's CPU figures go to /share/out.
set -u
export PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
. /share/params
out=/share/out
D=/data
GW="gatewayd --data-dir $D/gw"
up() { cut -d' ' -f1 /proc/uptime; }
say() { echo "[$(up)s] $*"; }
die() { echo "FAIL $*"; tail -20 "$out/gatewayd.log" 2>/dev/null; exit 1; }

modprobe nfs; modprobe nfsv4; modprobe ext4
mkfs.ext4 -q -F /dev/vdb || die mkfs
mkdir -p $D && mount /dev/vdb $D || die "mount /dev/vdb"
install -m 0755 /share/gatewayd /usr/local/bin/gatewayd || die install

say "gatewayd"
$GW init >/dev/null || die "gatewayd init"
GODEBUG="${GATEWAYD_GODEBUG:-}" $GW serve --nfs-listen 127.0.0.1:2049 --nfs-rpcbind=false --iscsi-listen "" --smb-listen "" >"$out/gatewayd.log" 2>&1 &
gw_pid=$!
for _ in $(seq 300); do $GW status >/dev/null 2>&1 && break; sleep 1; done
$GW share create --name bench >/dev/null || die "share create"

say "ganesha"
mkdir -p $D/ganesha-export /run/ganesha /var/lib/nfs/ganesha
rpcbind -w 2>/dev/null || true
cat >/etc/ganesha/bench.conf <<-EOF
	NFS_CORE_PARAM {
		# No Bind_addr: ganesha resolves it with AI_ADDRCONFIG, which
		# finds no address in a guest with only a loopback interface.
		NFS_Port = 2050;
		Enable_NLM = false;
		Enable_RQUOTA = false;
		Protocols = 4;
	}
	NFSV4 { Graceless = true; Minor_Versions = 1; }
	EXPORT {
		Export_Id = 1;
		Path = $D/ganesha-export;
		Pseudo = /bench;
		Access_Type = RW;
		Squash = No_Root_Squash;
		Protocols = 4;
		Transports = TCP;
		SecType = sys;
		FSAL { Name = VFS; }
	}
	LOG { Default_Log_Level = WARN; }
EOF
ganesha.nfsd -f /etc/ganesha/bench.conf -L "$out/ganesha.log" -p /run/ganesha/pid || die "ganesha.nfsd"

declare -A port=([gatewayd]=2049 [ganesha]=2050)
for s in gatewayd ganesha; do
	mkdir -p /mnt/$s
	ok=0
	for _ in $(seq 60); do
		timeout 120 mount -t nfs -o vers=4.1,port=${port[$s]} 127.0.0.1:/bench /mnt/$s && { ok=1; break; }
		sleep 2
	done
	[ $ok = 1 ] || die "mount $s"
	echo "mount $s: $(grep " /mnt/$s " /proc/mounts)"
done
gn_pid=$(cat /run/ganesha/pid)
declare -A pid=([gatewayd]=$gw_pid [ganesha]=$gn_pid)

# settle: the guest's dirty pages written back and gatewayd's share
# uploaded, so no job runs beside the previous one's work.
settle() {
	sync
	for _ in $(seq 1200); do
		curl -s --unix-socket $D/gw/admin.sock http://gatewayd/metrics |
			grep -q '^gatewayd_share_files_pending{share="bench"} 0$' && return 0
		sleep 0.5
	done
	echo "gatewayd did not finish uploading"
}
# ticks PID: the process's user+system CPU ticks; guest: user, system,
# softirq and idle ticks of all CPUs.
ticks() { awk '{print $14 + $15}' /proc/$1/stat; }
guest() { awk '/^cpu /{print $2 + $3, $4, $8, $5 + $6}' /proc/stat; }
hz=$(getconf CLK_TCK)
# run_job SERVER NAME FIO-ARGS...: fio's JSON to $out/SERVER-NAME.json,
# the CPU used meanwhile to $out/SERVER-NAME.cpu (seconds: the server,
# the guest's user, system, softirq and idle, the wall time).
run_job() {
	local s=$1 name=$2 p0 g0 t0 prof=""
	shift 2
	settle
	echo "load $s $name: $(cut -d' ' -f1-3 /proc/loadavg)"
	say "$s $name"
	if [ -n "$PROFILE" ] && [ "$s" = gatewayd ] && { [ "$name" = write-1m.1 ] || [ "$name" = randread-4k ]; }; then
		curl -s --unix-socket $D/gw/admin.sock -o "$out/gatewayd-$name.pprof" \
			"http://gatewayd/debug/pprof/profile?seconds=${PROFILE_SECONDS:-5}" &
		prof=$!
	fi
	p0=$(ticks "${pid[$s]}"); g0=$(guest); t0=$(date +%s.%N)
	fio --name="$s-$name" --output-format=json --output="$out/$s-$name.json" "$@" >/dev/null 2>"$out/$s-$name.err" ||
		echo "fio $s $name failed: $(tail -3 "$out/$s-$name.err")"
	local p1 g1 t1
	p1=$(ticks "${pid[$s]}"); g1=$(guest); t1=$(date +%s.%N)
	[ -n "$prof" ] && wait "$prof"
	echo "$p0 $p1 $g0 $g1 $t0 $t1" | awk -v hz="$hz" '{printf "%.1f %.1f %.1f %.1f %.1f %.1f\n", ($2-$1)/hz, ($7-$3)/hz, ($8-$4)/hz, ($9-$5)/hz, ($10-$6)/hz, $12-$11}' >"$out/$s-$name.cpu"
	echo "cpu $s $name: $(cat "$out/$s-$name.cpu")"
}

for r in $(seq "$ROUNDS"); do
	for s in gatewayd ganesha; do
		# Buffered 1 MiB writes; end_fsync: the client's writeback
		# (UNSTABLE WRITEs) and its COMMIT are in the time.
		run_job $s write-1m.$r --directory=/mnt/$s --filename=bench.bin --rw=write --bs=1m \
			--size="${SIZE_MIB}m" --ioengine=psync --end_fsync=1
	done
done
[ "$JOBS" = write ] && { settle; say "done"; exit 0; }
for s in gatewayd ganesha; do
	# O_DIRECT: every read goes to the server (from its cache), none is
	# served by the client's page cache.
	run_job $s read-1m --directory=/mnt/$s --filename=bench.bin --rw=read --bs=1m --iodepth=8 \
		--ioengine=libaio --direct=1 --size="${SIZE_MIB}m" --runtime="$RUNTIME" --time_based
	run_job $s randread-4k --directory=/mnt/$s --filename=bench.bin --rw=randread --bs=4k --iodepth=16 \
		--ioengine=libaio --direct=1 --size="${SIZE_MIB}m" --runtime="$RUNTIME" --time_based \
		--randrepeat=0 --norandommap
done
for s in gatewayd ganesha; do
	mkdir -p /mnt/$s/small
	run_job $s create --directory=/mnt/$s/small --filename_format='small.$filenum' --nrfiles="$FILES" \
		--filesize=4k --bs=4k --rw=write --openfiles=1 --file_service_type=sequential \
		--create_on_open=1 --ioengine=psync
done
settle
umount /mnt/gatewayd /mnt/ganesha
kill "$gw_pid" "$gn_pid"
say "done"
