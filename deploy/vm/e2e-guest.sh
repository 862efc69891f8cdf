#!/bin/bash
# The end-to-end scenarios, run inside the appliance (by e2e-init, as the
# child of PID 1) against gatewayd on 127.0.0.1, with the guest kernel's own
# clients: open-iscsi, ext4, st/sg with mt and mtx, the NFS client, and
# Samba's smbclient. The host's folder is at /share: gatewayd comes from
# there, logs and the RESULT lines go back there.
#
# Disks: /dev/vda the image (copy-on-write, discarded), /dev/vdb gatewayd's
# state (data directory, embedded object store), /dev/vdc the target of
# `gatewayd restore`.
#
# Every check prints one line "RESULT <name> PASS" or "RESULT <name> FAIL
# <why>"; a check that cannot run because an earlier step failed is a FAIL
# too, never a pass. The exit status is the number of failures (capped).
set -u
export PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
export GATEWAYD_DATA_DIR=/var/lib/gatewayd
DATA=$GATEWAYD_DATA_DIR
OBJ=$DATA/objects
LOG=/share/gatewayd.log
SCENARIOS=${SCENARIOS:-$(cat /share/scenarios 2>/dev/null || echo "iscsi durability nfs nfs4 vtl worm smb")}
GW_PID=

up() { cut -d' ' -f1 /proc/uptime; }
step() { echo; echo "===== [$(up)s] $*"; }
# Results go to stdout and to /tmp/results (scenarios run in subshells).
pass() { echo "RESULT $1 PASS" | tee -a /tmp/results; }
fail() {
	local n=$1; shift
	echo "RESULT $n FAIL ${*:-}" | tee -a /tmp/results
}
# check NAME CMD...: PASS when CMD succeeds.
check() {
	local n=$1; shift
	if "$@"; then pass "$n"; else fail "$n" "$* (exit $?)"; fi
}
# notrun WHY NAME...: checks that could not run.
notrun() {
	local why=$1; shift
	for n in "$@"; do fail "$n" "not run: $why"; done
}
# tree_sums DIR: checksums of every file under DIR, by relative path.
tree_sums() { (cd "$1" && find . -type f ! -path './lost+found/*' -print0 | LC_ALL=C sort -z | xargs -0 -r md5sum); }
# mkdata DIR SEED: a small tree of files (random data, text, empty, nested).
mkdata() {
	local d=$1 s=$2 i
	mkdir -p "$d/a/b/c" "$d/empty-dir" "$d/docs"
	dd if=/dev/urandom of="$d/rand-$s.bin" bs=64k count=$((16 + s)) status=none
	dd if=/dev/urandom of="$d/a/b/c/deep-$s.bin" bs=4k count=7 status=none
	head -c 1000000 /dev/urandom >"$d/a/odd-size-$s"
	: >"$d/a/empty-$s"
	for i in $(seq 1 20); do echo "file $i of seed $s" >"$d/docs/note-$s-$i.txt"; done
	cp -a /usr/share/doc/util-linux "$d/docs/" 2>/dev/null || true
}

# HANG: the seconds after which a command is taken to hang. A bound, not a
# speed check: beside CI's Go tests this TCG guest runs ten times slower
# than on a quiet machine.
HANG=900
gw() { timeout $HANG gatewayd "$@"; }
# alive PID: running (a zombie is not: gatewayd may be a child of PID 1).
alive() { [ -r /proc/$1/status ] && ! grep -q '^State:[[:space:]]*Z' /proc/$1/status; }
# No tape or changer command may hang a run.
mt() { timeout $HANG mt "$@"; }
mtx() { timeout $HANG mtx "$@"; }
smbclient() { timeout $HANG smbclient "$@"; }
start_gw() {
	echo "--- [$(up)s] gatewayd serve" >>"$LOG"
	# Read delegations on: the nfs4 scenario checks their recall.
	gatewayd serve --nfs-read-delegations >>"$LOG" 2>&1 &
	GW_PID=$!
	echo "$GW_PID" >/run/gatewayd.pid
	local i
	for i in $(seq 1 $HANG); do
		# status exits 0 to 2 with the health of a gateway that answers, 3 when none does
		if gatewayd status >/dev/null 2>&1 || [ $? -lt 3 ]; then return 0; fi
		alive "$GW_PID" || { echo "gatewayd exited"; tail -20 "$LOG"; return 1; }
		sleep 1
	done
	echo "gatewayd not ready after ${HANG}s"
	return 1
}
stop_gw() {
	GW_PID=$(cat /run/gatewayd.pid 2>/dev/null)
	[ -n "$GW_PID" ] || return 0
	kill -TERM "$GW_PID" 2>/dev/null
	local i
	for i in $(seq 1 90); do alive "$GW_PID" || break; sleep 1; done
	kill -KILL "$GW_PID" 2>/dev/null
	wait "$GW_PID" 2>/dev/null
	GW_PID=
	rm -f /run/gatewayd.pid
}
# cwd_hold DIR: a process whose working directory is DIR (in an NFS
# mount) across a restart of gatewayd; cwd_check FILE then has it list .
# and read FILE there (no ESTALE) and says whether it could. The
# scenario's own shell stays out of the mount: in a CI run a scenario
# whose shell had its working directory in the hard mount went no further
# than gatewayd's stop, and the shell is what starts gatewayd again.
cwd_hold() {
	rm -f /tmp/cwd.go /tmp/cwd.ok
	(cd "$1" || exit 1
		while [ ! -e /tmp/cwd.go ]; do sleep 0.2; done
		ls . >/dev/null && cat "$(cat /tmp/cwd.go)" >/dev/null && touch /tmp/cwd.ok) &
	CWD_PID=$!
}
cwd_check() {
	echo "$1" >/tmp/cwd.go
	local i
	for i in $(seq 1 $((HANG * 5))); do alive "$CWD_PID" || break; sleep 0.2; done
	kill -KILL "$CWD_PID" 2>/dev/null
	[ -e /tmp/cwd.ok ] || { echo "ls . or cat $1 in the directory held across the restart failed"; return 1; }
}
# kill_gw WHEN: kill -9 gatewayd (WHEN says what it was doing).
kill_gw() {
	GW_PID=$(cat /run/gatewayd.pid)
	echo "kill -9 gatewayd ($GW_PID) $1"
	kill -KILL "$GW_PID"
	wait "$GW_PID" 2>/dev/null
	GW_PID=
	rm -f /run/gatewayd.pid
	sleep 3
}

# iSCSI: login TARGET [USER SECRET]: discovery was done; sets DEV.
iscsi_login() {
	local t=$1 user=${2:-} secret=${3:-}
	local node=(iscsiadm -m node -T "$t" -p 127.0.0.1:3260)
	if [ -n "$user" ]; then
		"${node[@]}" --op update -n node.session.auth.authmethod -v CHAP >/dev/null &&
			"${node[@]}" --op update -n node.session.auth.username -v "$user" >/dev/null &&
			"${node[@]}" --op update -n node.session.auth.password -v "$secret" >/dev/null || return 1
	fi
	"${node[@]}" --login || return 1
	udevadm settle -t 30
	local p=/dev/disk/by-path/ip-127.0.0.1:3260-iscsi-$t-lun-0 i
	for i in $(seq 1 $HANG); do [ -b "$p" ] && break; sleep 1; done
	[ -b "$p" ] || { echo "no $p"; ls -l /dev/disk/by-path/; return 1; }
	DEV=$(readlink -f "$p")
	echo "$t is $DEV"
}
iscsi_logout() { iscsiadm -m node -T "$1" -p 127.0.0.1:3260 --logout; }
target_of() { gw volume attach-info "$1" | awk '$1=="target"{print $2; exit}'; }

setup() {
	step "setup: devices, state disk, gatewayd's first boot"
	uname -r
	/lib/systemd/systemd-udevd --daemon
	udevadm trigger --action=add >/dev/null 2>&1
	udevadm settle -t 30
	for m in iscsi_tcp sd_mod st sg ch nfs nfsv3 nfsv4 fuse ext4; do modprobe $m || echo "modprobe $m failed"; done
	mkfs.ext4 -q -F -L gatewayd-state /dev/vdb || return 1
	mkdir -p "$DATA" && mount /dev/vdb "$DATA" || return 1
	install -m 0755 /share/gatewayd /usr/local/bin/gatewayd || return 1
	gatewayd --version 2>/dev/null || true
	# What systemd would do: the unit's first-boot step, then serve.
	/usr/lib/gatewayd/first-boot || return 1
	grep -nE 'listen' "$DATA/gatewayd.yaml"
	# Small buffers: the state disk is small and TCG is slow.
	sed -i -e '/^upload_buffer:/,/^[a-z]/s/^\(  size:\).*/\1 512MiB/' \
		-e '/^cache:/,/^[a-z]/s/^\(  size:\).*/\1 512MiB/' \
		-e '/^shares:/,/^[a-z]/s/^\(  buffer_size:\).*/\1 256MiB/' \
		-e '/^vtl:/,/^[a-z]/s/^\(  buffer_size:\).*/\1 512MiB/' "$DATA/gatewayd.yaml"
	echo "InitiatorName=iqn.2004-10.com.debian:gatewayd-e2e" >/etc/iscsi/initiatorname.iscsi
	mkdir -p /run/lock/iscsi /var/lib/iscsi /etc/iscsi/nodes
	iscsid || return 1
	start_gw || return 1
	gw status
}

scenario_iscsi() {
	step "1. iSCSI: CHAP login to a cached volume, snapshot, volume from the snapshot, restore to a disk"
	local checks=(${CHECKS[iscsi]})
	gw volume create --name vol1 --size 256M --chap-user e2e --chap-secret e2e-chap-secret-1 || { notrun "volume create failed" "${checks[@]}"; return; }
	local T
	T=$(target_of vol1)
	echo "target $T"
	if iscsiadm -m discovery -t sendtargets -p 127.0.0.1:3260 | tee /tmp/disc | grep -q " $T\$"; then pass iscsi-discovery; else fail iscsi-discovery "$T not in: $(cat /tmp/disc)"; fi
	if iscsi_login "$T" e2e wrong-secret-00000 2>/dev/null; then
		fail iscsi-chap-refused "login with a wrong secret succeeded"; iscsi_logout "$T"
	else pass iscsi-chap-refused; fi
	if ! iscsi_login "$T" e2e e2e-chap-secret-1; then
		fail iscsi-chap-login "login failed"; notrun "no login" "${checks[@]:3}"; return
	fi
	pass iscsi-chap-login
	local D1=$DEV
	mkdir -p /mnt/v1 /mnt/v1r /mnt/vdc
	if mkfs.ext4 -q -F "$D1" && mount "$D1" /mnt/v1; then pass iscsi-mkfs-mount
	else fail iscsi-mkfs-mount "mkfs/mount $D1"; notrun "no filesystem" "${checks[@]:4}"; return; fi
	mkdata /mnt/v1 1
	sync
	tree_sums /mnt/v1 >/tmp/snapA.sum
	echo "$(wc -l </tmp/snapA.sum) files, $(du -sh /mnt/v1 | cut -f1) at the snapshot"
	# The filesystem is frozen (flushed, journal clean) at the snapshot's
	# moment, as a backup tool would.
	fsfreeze -f /mnt/v1
	gw snapshot create vol1 --description e2e >/tmp/snap.out 2>&1
	local rc=$?
	fsfreeze -u /mnt/v1
	cat /tmp/snap.out
	SNAP=$(awk '$1=="snapshot"{print $2; exit}' /tmp/snap.out)
	if [ $rc -eq 0 ] && [ -n "$SNAP" ]; then pass iscsi-snapshot
	else fail iscsi-snapshot "snapshot create exit $rc"; notrun "no snapshot" "${checks[@]:5}"; return; fi
	# Writes after the snapshot: new files, a changed one, a deleted one.
	mkdata /mnt/v1 2
	echo changed >/mnt/v1/docs/note-1-1.txt
	rm -f /mnt/v1/a/empty-1
	sync
	tree_sums /mnt/v1 >/tmp/after.sum

	if gw volume create --name vol1r --from-snapshot "$SNAP" && gw volume info vol1r &&
		iscsiadm -m discovery -t sendtargets -p 127.0.0.1:3260 >/dev/null &&
		iscsi_login "$(target_of vol1r)"; then
		pass iscsi-from-snapshot-login
		local D2=$DEV
		if mount "$D2" /mnt/v1r && tree_sums /mnt/v1r >/tmp/v1r.sum && cmp -s /tmp/snapA.sum /tmp/v1r.sum &&
			! cmp -s /tmp/after.sum /tmp/v1r.sum; then pass iscsi-from-snapshot-content
		else fail iscsi-from-snapshot-content "$(diff /tmp/snapA.sum /tmp/v1r.sum 2>&1 | head -5)"; fi
		umount /mnt/v1r 2>/dev/null
		iscsi_logout "$(target_of vol1r)"
	else
		fail iscsi-from-snapshot-login "volume from $SNAP"; notrun "no restored volume" iscsi-from-snapshot-content
	fi

	blockdev --getsize64 /dev/vdc
	if gw restore "$SNAP" --to /dev/vdc --quiet && mount -o ro /dev/vdc /mnt/vdc &&
		tree_sums /mnt/vdc >/tmp/vdc.sum && cmp -s /tmp/snapA.sum /tmp/vdc.sum; then pass iscsi-restore-to-disk
	else fail iscsi-restore-to-disk "$(diff /tmp/snapA.sum /tmp/vdc.sum 2>&1 | head -5)"; fi
	umount /mnt/vdc 2>/dev/null
	# vol1 stays mounted for the durability scenario.
}

scenario_durability() {
	step "2. durability: kill -9 gatewayd during fsync'd writes on the iSCSI-mounted ext4"
	local checks=(${CHECKS[durability]})
	local T
	T=$(target_of vol1)
	if ! mountpoint -q /mnt/v1; then notrun "vol1 is not mounted (iSCSI scenario failed)" "${checks[@]}"; return; fi
	iscsiadm -m node -T "$T" -p 127.0.0.1:3260 --op update -n node.session.timeo.replacement_timeout -v 300 >/dev/null
	for s in /sys/class/iscsi_session/session*/recovery_tmo; do echo 300 >"$s" 2>/dev/null; done
	mkdir -p /mnt/v1/dur /mnt/v1/fio
	: >/tmp/acked
	rm -f /tmp/stop-writer
	# The writer: each file is written and fsync'd (dd conv=fsync), its
	# directory too; only then is it recorded as acknowledged.
	(
		i=0
		while [ ! -e /tmp/stop-writer ]; do
			i=$((i + 1))
			f=/mnt/v1/dur/f$i
			head -c $((65536 + (i % 7) * 4096)) /dev/urandom >/tmp/w.bin
			if dd if=/tmp/w.bin of="$f" bs=64k conv=fsync status=none && sync -f /mnt/v1/dur; then
				echo "$(md5sum </tmp/w.bin | cut -d' ' -f1) f$i" >>/tmp/acked
			fi
		done
	) &
	local WPID=$!
	fio --name=dur --directory=/mnt/v1/fio --rw=write --bs=16k --size=24m --nrfiles=4 --fsync=1 \
		--ioengine=psync --time_based --runtime=600 >/tmp/fio.out 2>&1 &
	local FPID=$!
	# At least 12 s of writing, and at least one acknowledged file: on a
	# busy host the emulated guest can take longer for its first fsync.
	sleep 12
	local before w
	for w in $(seq 1 144); do
		before=$(wc -l </tmp/acked)
		[ "$before" -gt 0 ] && break
		sleep 2
	done
	if [ "$before" -gt 0 ]; then pass durability-writes-before-kill; else fail durability-writes-before-kill "no fsync completed in 300s"; fi
	kill_gw "with $before files acknowledged"
	start_gw || { notrun "gatewayd did not restart" "${checks[@]:1}"; touch /tmp/stop-writer; kill $FPID $WPID; return; }
	# The kernel's session recovers by itself (iscsid logs in again) and the
	# writes it held are sent again: writing goes on.
	local i n
	for i in $(seq 1 $((HANG / 2))); do
		n=$(wc -l </tmp/acked)
		[ "$n" -gt $((before + 2)) ] && break
		sleep 2
	done
	if [ "$n" -gt $((before + 2)) ]; then pass durability-session-recovered; else fail durability-session-recovered "no acknowledged write in 180s after the restart"; fi
	touch /tmp/stop-writer
	kill -INT $FPID 2>/dev/null
	wait $WPID $FPID 2>/dev/null
	grep -E 'err=|WRITE:' /tmp/fio.out
	echo "$(wc -l </tmp/acked) files acknowledged in all"
	umount /mnt/v1 || { sleep 5; umount -l /mnt/v1; }
	iscsi_logout "$T"
	# A fresh login: nothing read from now on comes from the guest's cache.
	if iscsi_login "$T" e2e e2e-chap-secret-1; then pass durability-relogin
	else fail durability-relogin "login after restart"; notrun "no login" durability-fsck durability-acked-files; return; fi
	if fsck.ext4 -f -n "$DEV" >/tmp/fsck.out 2>&1; then pass durability-fsck
	else fail durability-fsck "$(tail -5 /tmp/fsck.out | tr '\n' ' ')"; fi
	local bad=0
	if mount -o ro "$DEV" /mnt/v1; then
		while read -r sum f; do
			[ "$(md5sum </mnt/v1/dur/"$f" 2>/dev/null | cut -d' ' -f1)" = "$sum" ] || { bad=$((bad + 1)); echo "bad $f"; }
		done </tmp/acked
		if [ "$bad" -eq 0 ] && [ -s /tmp/acked ]; then pass durability-acked-files
		else fail durability-acked-files "$bad of $(wc -l </tmp/acked) acknowledged files differ"; fi
		umount /mnt/v1
	else fail durability-acked-files "mount failed"; fi
	iscsi_logout "$T"
}

scenario_nfs() {
	step "3. NFS v3: file operations, cp -a by checksum, objects in the bucket, restart while mounted"
	local checks=(${CHECKS[nfs]})
	gw share create --name e2e --protocols nfs,smb || { notrun "share create failed" "${checks[@]}"; return; }
	gw share info e2e
	mkdir -p /mnt/nfs
	local opts=vers=3,proto=tcp,port=2049,mountport=2049,mountproto=tcp,nolock
	if mount -t nfs -o $opts 127.0.0.1:/e2e /mnt/nfs; then pass nfs-mount
	else fail nfs-mount "mount -t nfs -o $opts"; notrun "not mounted" "${checks[@]:1}"; return; fi
	grep ' /mnt/nfs ' /proc/mounts
	head -c 3000000 /dev/urandom >/tmp/n1
	cp /tmp/n1 /mnt/nfs/file1 && echo "hello over nfs" >/mnt/nfs/hello.txt
	if cmp -s /tmp/n1 /mnt/nfs/file1 && [ "$(cat /mnt/nfs/hello.txt)" = "hello over nfs" ]; then pass nfs-write-read
	else fail nfs-write-read "content differs"; fi
	echo gone >/mnt/nfs/to-delete
	if mv /mnt/nfs/hello.txt /mnt/nfs/renamed.txt && rm /mnt/nfs/to-delete &&
		[ ! -e /mnt/nfs/hello.txt ] && [ ! -e /mnt/nfs/to-delete ] && [ "$(cat /mnt/nfs/renamed.txt)" = "hello over nfs" ]; then
		pass nfs-rename-delete
	else fail nfs-rename-delete "$(ls -la /mnt/nfs)"; fi
	rm -rf /tmp/tree && mkdata /tmp/tree 3 && tree_sums /tmp/tree >/tmp/tree.sum
	# cp -a, then read back through a fresh mount (no client cache).
	cp -a /tmp/tree /mnt/nfs/tree
	umount /mnt/nfs && mount -t nfs -o $opts 127.0.0.1:/e2e /mnt/nfs
	if tree_sums /mnt/nfs/tree >/tmp/nfstree.sum && cmp -s /tmp/tree.sum /tmp/nfstree.sum &&
		[ "$(stat -c %a /mnt/nfs/tree/docs/note-3-1.txt)" = "$(stat -c %a /tmp/tree/docs/note-3-1.txt)" ] &&
		[ "$(stat -c %Y /mnt/nfs/tree/a/odd-size-3)" = "$(stat -c %Y /tmp/tree/a/odd-size-3)" ]; then pass nfs-cp-tree
	else fail nfs-cp-tree "$(diff /tmp/tree.sum /tmp/nfstree.sum | head -5)"; fi
	# The objects: plain files in the embedded store (localdir layout: a key
	# a/b/c is the file a%/b%/c), uploaded after the settle time.
	local i okb=1
	for i in $(seq 1 $((HANG / 2))); do
		okb=1
		cmp -s /tmp/n1 "$OBJ/e2e%/file1" || okb=0
		[ "$(cat "$OBJ/e2e%/renamed.txt" 2>/dev/null)" = "hello over nfs" ] || okb=0
		[ ! -e "$OBJ/e2e%/hello.txt" ] && [ ! -e "$OBJ/e2e%/to-delete" ] || okb=0
		cmp -s /tmp/tree/a/b/c/deep-3.bin "$OBJ/e2e%/tree%/a%/b%/c%/deep-3.bin" || okb=0
		[ $okb -eq 1 ] && break
		sleep 2
	done
	if [ $okb -eq 1 ]; then pass nfs-objects-in-bucket
	else fail nfs-objects-in-bucket "$(cd "$OBJ" && find e2e% -maxdepth 1 | head -20 | tr '\n' ' ')"; fi
	# Restart while mounted: file handles survive, no ESTALE.
	cwd_hold /mnt/nfs/tree/docs
	stop_gw
	if start_gw && sleep 2 && cmp -s /tmp/n1 /mnt/nfs/file1 && cwd_check note-3-2.txt &&
		echo after-restart >/mnt/nfs/after-restart.txt && [ "$(cat /mnt/nfs/after-restart.txt)" = after-restart ] &&
		tree_sums /mnt/nfs/tree >/tmp/nfstree2.sum && cmp -s /tmp/tree.sum /tmp/nfstree2.sum; then pass nfs-restart-mounted
	else fail nfs-restart-mounted "$(dmesg | grep -i -E 'stale|nfs' | tail -3 | tr '\n' ' ')"; fi
	# The share stays mounted for the SMB scenario's cross-protocol check.
}

# lk.py, the byte-range lock helper of the NFSv4.1 scenario (fcntl locks,
# which the kernel sends to the server as LOCK, LOCKT, LOCKU; python3 is
# in the image as a dependency of Samba):
#   lk.py try  FILE START LEN r|w          exit 0 locked (and unlocked), 1 refused (EAGAIN)
#   lk.py hold FILE START LEN r|w READY STOP [wait]
#       takes the lock (waiting for it with "wait"), creates READY, and once
#       STOP exists writes a byte inside its range and fsyncs (an NFS lock
#       lost across a server restart fails that write with EIO), unlocks;
#       exit 0 when all of it worked.
# delegreturns MNT: the DELEGRETURN calls the client of mount MNT made.
delegreturns() {
	awk -v m="$1" '$1 == "device" { on = ($5 == m) } on && $1 == "DELEGRETURN:" { print $2; exit }' /proc/self/mountstats
}
# admin_get PATH: the body of GET PATH on gatewayd's admin socket.
admin_get() {
	python3 - "$DATA/admin.sock" "$1" <<-'PY'
		import socket, sys
		s = socket.socket(socket.AF_UNIX)
		s.settimeout(600)
		s.connect(sys.argv[1])
		s.sendall(b"GET " + sys.argv[2].encode() + b" HTTP/1.0\r\nHost: gatewayd\r\n\r\n")
		b = b""
		while True:
		    c = s.recv(65536)
		    if not c:
		        break
		    b += c
		sys.stdout.write(b.split(b"\r\n\r\n", 1)[-1].decode(errors="replace"))
	PY
}
# deleg_metrics: gatewayd's read delegation counters, "granted N recalled N
# returned N revoked N " (the admin API's metrics).
deleg_metrics() {
	admin_get /metrics | python3 -c '
import sys
n = {}
for l in sys.stdin:
    if l.startswith("gatewayd_nfs4_delegations_total{"):
        n[l.split("\"")[1]] = int(float(l.split()[-1]))
print("".join("%s %d " % (e, n.get(e, 0)) for e in ["granted", "recalled", "returned", "revoked"]))'
}
write_lk() {
	cat >/tmp/lk.py <<'PY'
import errno, fcntl, os, sys, time
mode, path, start, length, kind = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4]), sys.argv[5]
fd = os.open(path, os.O_RDWR)
lt = fcntl.LOCK_EX if kind == "w" else fcntl.LOCK_SH
wait = mode == "hold" and sys.argv[8:] == ["wait"]
try:
    fcntl.lockf(fd, lt if wait else lt | fcntl.LOCK_NB, length, start)
except OSError as e:
    if e.errno in (errno.EAGAIN, errno.EACCES):
        sys.exit(1)
    print("lk.py: lock:", e, file=sys.stderr)
    sys.exit(2)
if mode == "try":
    fcntl.lockf(fd, fcntl.LOCK_UN, length, start)
    sys.exit(0)
ready, stop = sys.argv[6], sys.argv[7]
open(ready, "w").close()
while not os.path.exists(stop):
    time.sleep(0.2)
try:
    if kind == "w":
        os.pwrite(fd, b"L", start)
        os.fsync(fd)
    fcntl.lockf(fd, fcntl.LOCK_UN, length, start)
    os.close(fd)
except OSError as e:
    print("lk.py: after holding:", e, file=sys.stderr)
    sys.exit(3)
PY
}
# lk_expect WANT FILE START LEN r|w: lk.py try exits WANT (0 locked, 1
# refused).
lk_expect() {
	local want=$1; shift
	timeout $HANG python3 /tmp/lk.py try "$@"
	local got=$?
	[ "$got" = "$want" ] || { echo "lock $*: exit $got, want $want"; return 1; }
}
# wait_for FILE [SECONDS]: FILE exists within SECONDS (default HANG).
wait_for() {
	local i
	for i in $(seq 1 $((${2:-$HANG} * 5))); do [ -e "$1" ] && return 0; sleep 0.2; done
	return 1
}
# vers_of MOUNTPOINT: the NFS version of a mount, from /proc/mounts.
vers_of() { awk -v m="$1" '$2==m {n=split($4,o,","); for (i=1;i<=n;i++) if (o[i] ~ /^vers=/) {sub("vers=","",o[i]); print o[i]}}' /proc/mounts; }

scenario_nfs4() {
	step "3b. NFSv4.1: mounts with the client's defaults, pseudo root, files, tree copy, flock and fcntl locks between processes, restart and kill -9 while mounted"
	local checks=(${CHECKS[nfs4]})
	gw share info e2e >/dev/null 2>&1 || gw share create --name e2e --protocols nfs,smb ||
		{ notrun "no share" "${checks[@]}"; return; }
	modprobe nfsv4 || echo "modprobe nfsv4 failed"
	mkdir -p /mnt/nfs4 /mnt/nfs4root
	# No options at all: the client asks 4.2, gatewayd answers 4.1.
	local v
	if timeout $HANG mount -t nfs 127.0.0.1:/e2e /mnt/nfs4; then
		grep ' /mnt/nfs4 ' /proc/mounts
		v=$(vers_of /mnt/nfs4)
		if [ "$v" = 4.1 ]; then pass nfs4-mount-defaults
		else fail nfs4-mount-defaults "mounted as vers=$v, want 4.1"; fi
	else
		fail nfs4-mount-defaults "mount -t nfs 127.0.0.1:/e2e: $(dmesg | grep -i nfs | tail -3 | tr '\n' ' ')"
		notrun "not mounted" "${checks[@]:1}"; return
	fi
	# The pseudo root lists the share; the share below it is the same files.
	echo "written over v4.1" >/mnt/nfs4/v4-hello.txt
	if timeout $HANG mount -t nfs 127.0.0.1:/ /mnt/nfs4root && ls -la /mnt/nfs4root | tee /tmp/root.ls &&
		grep -q ' e2e$' /tmp/root.ls && [ "$(vers_of /mnt/nfs4root)" = 4.1 ] &&
		[ "$(cat /mnt/nfs4root/e2e/v4-hello.txt)" = "written over v4.1" ]; then pass nfs4-pseudo-root
	else fail nfs4-pseudo-root "$(cat /tmp/root.ls 2>/dev/null | tr '\n' ' ') $(grep nfs4root /proc/mounts)"; fi
	# A file of the v3 mount is the same file over v4.1, and back.
	local okx=1
	if mountpoint -q /mnt/nfs && [ -f /mnt/nfs/file1 ]; then
		cmp -s /tmp/n1 /mnt/nfs4/file1 || okx=0
		local i
		for i in $(seq 1 $((HANG / 2))); do [ "$(cat /mnt/nfs/v4-hello.txt 2>/dev/null)" = "written over v4.1" ] && break; sleep 2; done
		[ "$(cat /mnt/nfs/v4-hello.txt 2>/dev/null)" = "written over v4.1" ] || okx=0
		if [ $okx -eq 1 ]; then pass nfs4-v3-same-files; else fail nfs4-v3-same-files "a file differs between the v3 and the v4.1 mount"; fi
	else fail nfs4-v3-same-files "not run: the v3 mount or its file1 is missing (NFS v3 scenario failed)"; fi
	head -c 3000000 /dev/urandom >/tmp/m1
	cp /tmp/m1 /mnt/nfs4/v4-file1 && echo "hello over nfs4" >/mnt/nfs4/v4-hello2.txt
	if cmp -s /tmp/m1 /mnt/nfs4/v4-file1 && [ "$(cat /mnt/nfs4/v4-hello2.txt)" = "hello over nfs4" ]; then pass nfs4-write-read
	else fail nfs4-write-read "content differs"; fi
	echo gone >/mnt/nfs4/v4-to-delete
	if mv /mnt/nfs4/v4-hello2.txt /mnt/nfs4/v4-renamed.txt && rm /mnt/nfs4/v4-to-delete &&
		[ ! -e /mnt/nfs4/v4-hello2.txt ] && [ ! -e /mnt/nfs4/v4-to-delete ] &&
		[ "$(cat /mnt/nfs4/v4-renamed.txt)" = "hello over nfs4" ]; then pass nfs4-rename-delete
	else fail nfs4-rename-delete "$(ls -la /mnt/nfs4 | head -20)"; fi
	# cp -a, then read back through a fresh mount (no client cache).
	rm -rf /tmp/tree4 && mkdata /tmp/tree4 4 && tree_sums /tmp/tree4 >/tmp/tree4.sum
	cp -a /tmp/tree4 /mnt/nfs4/tree4
	umount /mnt/nfs4 && timeout $HANG mount -t nfs 127.0.0.1:/e2e /mnt/nfs4
	if tree_sums /mnt/nfs4/tree4 >/tmp/nfs4tree.sum && cmp -s /tmp/tree4.sum /tmp/nfs4tree.sum &&
		[ "$(stat -c %a /mnt/nfs4/tree4/docs/note-4-1.txt)" = "$(stat -c %a /tmp/tree4/docs/note-4-1.txt)" ] &&
		[ "$(stat -c %Y /mnt/nfs4/tree4/a/odd-size-4)" = "$(stat -c %Y /tmp/tree4/a/odd-size-4)" ]; then pass nfs4-cp-tree
	else
		fail nfs4-cp-tree "$(diff /tmp/tree4.sum /tmp/nfs4tree.sum | head -5) $(stat -c '%n %a %y %s' /tmp/tree4/docs/note-4-1.txt \
			/mnt/nfs4/tree4/docs/note-4-1.txt /tmp/tree4/a/odd-size-4 /mnt/nfs4/tree4/a/odd-size-4 2>&1 | tr '\n' ' ')"
	fi

	# Locks between two processes, the holder on /mnt/nfs4 and the other on
	# a second mount of the share with its own superblock (nosharecache):
	# the kernel checks a lock against its local lock table first, so on
	# one superblock it would refuse a conflict without asking gatewayd;
	# on two, gatewayd alone tells the conflict. flock(1) (the kernel sends
	# an NFSv4 whole-file lock), and fcntl byte ranges (lk.py).
	write_lk
	local L=/mnt/nfs4/lockfile L2=/mnt/nfs4b/lockfile
	mkdir -p /mnt/nfs4b
	timeout $HANG mount -t nfs -o nosharecache 127.0.0.1:/e2e /mnt/nfs4b || echo "mount -o nosharecache failed"
	grep ' /mnt/nfs4b ' /proc/mounts
	head -c 4096 /dev/zero >$L
	echo "superblocks: /mnt/nfs4 $(stat -c %d /mnt/nfs4), /mnt/nfs4b $(stat -c %d /mnt/nfs4b 2>&1)"
	local sep=1
	[ "$(stat -c %d /mnt/nfs4)" != "$(stat -c %d /mnt/nfs4b 2>/dev/null)" ] && mountpoint -q /mnt/nfs4b ||
		{ sep=0; echo "the second mount is not a superblock of its own"; }
	rm -f /tmp/fl.ready /tmp/fl.stop /tmp/fl2.ready
	flock -x $L -c 'touch /tmp/fl.ready; while [ ! -e /tmp/fl.stop ]; do sleep 0.2; done' &
	local FA=$!
	local okf=1
	wait_for /tmp/fl.ready || { okf=0; echo "flock holder never got the lock"; }
	# Refused while held (exit 1), and a waiter gets it once it is released.
	timeout $HANG flock -n -x $L2 true; [ $? -eq 1 ] || { okf=0; echo "flock -n got a held lock"; }
	timeout $HANG flock -n -s $L2 true; [ $? -eq 1 ] || { okf=0; echo "flock -n -s got a held exclusive lock"; }
	timeout $HANG flock -x $L2 touch /tmp/fl2.ready &
	local FB=$!
	sleep 3
	[ -e /tmp/fl2.ready ] && { okf=0; echo "the waiter got the lock while it was held"; }
	touch /tmp/fl.stop
	wait $FA || { okf=0; echo "flock holder exit $?"; }
	wait $FB || { okf=0; echo "flock waiter exit $?"; }
	[ -e /tmp/fl2.ready ] || okf=0
	timeout $HANG flock -n -x $L2 true || { okf=0; echo "flock -n after release failed"; }
	if [ $okf -eq 1 ] && [ $sep -eq 1 ]; then pass nfs4-flock; else fail nfs4-flock "see above"; fi

	local okl=1 rc
	rm -f /tmp/lk.ready /tmp/lk.stop /tmp/lk2.ready /tmp/lk2.stop
	python3 /tmp/lk.py hold $L 0 100 w /tmp/lk.ready /tmp/lk.stop &
	local PA=$!
	wait_for /tmp/lk.ready || { okl=0; echo "holder never got bytes 0-99"; }
	lk_expect 1 $L2 50 100 w || okl=0
	lk_expect 1 $L2 99 1 r || okl=0
	lk_expect 0 $L2 100 100 w || okl=0
	lk_expect 0 $L2 200 0 r || okl=0
	# A waiter for an overlapping range gets it once the holder unlocks.
	python3 /tmp/lk.py hold $L2 90 20 w /tmp/lk2.ready /tmp/lk2.stop wait &
	local PB=$!
	sleep 3
	[ -e /tmp/lk2.ready ] && { okl=0; echo "the waiter got 90-109 while 0-99 was held"; }
	touch /tmp/lk.stop
	wait $PA; rc=$?; [ $rc -eq 0 ] || { okl=0; echo "holder of 0-99 exit $rc"; }
	wait_for /tmp/lk2.ready || { okl=0; echo "the waiter did not get 90-109 in ${HANG}s after the unlock"; }
	lk_expect 0 $L2 0 50 w || okl=0
	lk_expect 1 $L2 100 5 r || okl=0
	touch /tmp/lk2.stop
	wait $PB; rc=$?; [ $rc -eq 0 ] || { okl=0; echo "holder of 90-109 exit $rc"; }
	if [ $okl -eq 1 ] && [ $sep -eq 1 ]; then pass nfs4-fcntl-ranges; else fail nfs4-fcntl-ranges "see above"; fi

	# A read delegation: a reader on /mnt/nfs4 holds a file open (the
	# kernel takes the read delegation gatewayd offers), a v3 client writes
	# it: gatewayd recalls the delegation (the v3 WRITE gets NFS3ERR_JUKEBOX
	# and is sent again until it is returned), the reader's client returns
	# it (DELEGRETURN in /proc/self/mountstats; gatewayd's counters), and
	# the reader then reads the new content.
	local okd=1 F=/mnt/nfs4/deleg.txt dr0 dr1 m0 m1 line
	echo before-v3-write >$F
	dr0=$(delegreturns /mnt/nfs4)
	m0=$(deleg_metrics)
	exec 7<$F
	read -r line <&7
	[ "$line" = before-v3-write ] || { okd=0; echo "the reader read '$line'"; }
	m1=$(deleg_metrics)
	echo "delegations before the open: $m0; after: $m1"
	case "$m1" in *"granted $(( $(echo "$m0" | awk '{print $2}') + 1 )) "*) ;; *) okd=0; echo "no delegation granted for the open" ;; esac
	if mountpoint -q /mnt/nfs; then
		echo after-v3-write >/mnt/nfs/deleg.txt || { okd=0; echo "the v3 write failed"; }
	else okd=0; echo "no v3 mount (NFS v3 scenario failed)"; fi
	dr1=$(delegreturns /mnt/nfs4)
	m1=$(deleg_metrics)
	echo "DELEGRETURN calls of /mnt/nfs4: $dr0 before, $dr1 after the v3 write; delegations: $m1"
	[ "$dr1" -gt "$dr0" ] || { okd=0; echo "the reader's client returned no delegation"; }
	case "$m1" in *"recalled 0 "*) okd=0; echo "gatewayd recalled none" ;; esac
	exec 7<&-
	line=$(cat $F)
	[ "$line" = after-v3-write ] || { okd=0; echo "the reader sees '$line' after the v3 write"; }
	if [ $okd -eq 1 ]; then pass nfs4-read-delegation; else fail nfs4-read-delegation "see above"; fi

	# Restart while mounted: the client recovers its session by itself.
	cwd_hold /mnt/nfs4/tree4/docs
	stop_gw
	if start_gw && cmp -s /tmp/m1 /mnt/nfs4/v4-file1 && cwd_check note-4-2.txt &&
		echo after-restart >/mnt/nfs4/v4-after-restart.txt && [ "$(cat /mnt/nfs4/v4-after-restart.txt)" = after-restart ] &&
		tree_sums /mnt/nfs4/tree4 >/tmp/nfs4tree2.sum && cmp -s /tmp/tree4.sum /tmp/nfs4tree2.sum; then pass nfs4-restart-mounted
	else fail nfs4-restart-mounted "$(dmesg | grep -i -E 'stale|nfs' | tail -3 | tr '\n' ' ')"; fi

	# kill -9 while a process holds a lock: the mount recovers, the holder
	# still holds its range (it reclaims it in the grace period) and
	# another process still cannot take it.
	rm -f /tmp/lk.ready /tmp/lk.stop
	python3 /tmp/lk.py hold $L 0 100 w /tmp/lk.ready /tmp/lk.stop &
	PA=$!
	if ! wait_for /tmp/lk.ready; then
		fail nfs4-kill-mounted "the holder did not get its lock"; notrun "no lock held" nfs4-kill-lock-kept
		touch /tmp/lk.stop; wait $PA; return
	fi
	kill_gw "while bytes 0-99 of $L are locked"
	if start_gw && cmp -s /tmp/m1 /mnt/nfs4/v4-file1 && echo after-kill >/mnt/nfs4/v4-after-kill.txt &&
		[ "$(cat /mnt/nfs4/v4-after-kill.txt)" = after-kill ]; then pass nfs4-kill-mounted
	else fail nfs4-kill-mounted "$(dmesg | grep -i -E 'stale|nfs' | tail -3 | tr '\n' ' ')"; fi
	okl=1
	lk_expect 1 $L2 0 100 w || okl=0
	lk_expect 1 $L2 50 1 r || okl=0
	touch /tmp/lk.stop
	wait $PA; rc=$?; [ $rc -eq 0 ] || { okl=0; echo "holder of 0-99 exit $rc after the restart (its lock lost?)"; }
	lk_expect 0 $L2 0 100 w || okl=0
	if [ $okl -eq 1 ] && [ $sep -eq 1 ]; then pass nfs4-kill-lock-kept
	else fail nfs4-kill-lock-kept "$(dmesg | grep -i -E 'nfs|lock' | tail -3 | tr '\n' ' ')"; fi
	umount /mnt/nfs4b /mnt/nfs4root 2>/dev/null
	# /mnt/nfs4 stays mounted until the teardown.
}

# The tape library.
tape_read() { timeout $HANG dd if=/dev/nst0 bs=64k status=none | md5sum | cut -d' ' -f1; }
tell() { mt -f /dev/nst0 tell 2>&1 | awk '/At block/{gsub("\\.","",$3); print $3}'; }
slot_of() { mtx -f "$CHG" status | awk -v b="$1" '/^ *Storage Element/ && $0 ~ "VolumeTag *= *"b {sub(":.*","",$3); print $3; exit}'; }

# vtl_attach: discovery of the library's target and login; sets T (the
# target) and CHG (the changer's sg device), or VTL_WHY on failure.
vtl_attach() {
	gw vtl info | tee /tmp/vtl.info || { VTL_WHY="vtl info failed"; return 1; }
	T=$(awk '$1=="target"{print $2; exit}' /tmp/vtl.info)
	iscsiadm -m discovery -t sendtargets -p 127.0.0.1:3260 >/dev/null &&
		iscsiadm -m node -T "$T" -p 127.0.0.1:3260 --login || { VTL_WHY="iscsiadm login $T"; return 1; }
	udevadm settle -t 30; sleep 2
	lsscsi -g
	CHG=$(lsscsi -g | awk '$2=="mediumx"{print $NF; exit}')
	[ -n "$CHG" ] && [ -c /dev/nst0 ] || { VTL_WHY="changer '$CHG', $(ls /dev/nst* 2>&1)"; return 1; }
}
# drive_ready: waits (up to 30 s) for the tape loaded in drive 0.
drive_ready() {
	local i
	for i in $(seq 1 $HANG); do mt -f /dev/nst0 status >/dev/null 2>&1 && return 0; sleep 1; done
	return 1
}

scenario_vtl() {
	step "4. VTL: mtx, tar archives with filemarks on /dev/nst0, positioning, archive and retrieve"
	local checks=(${CHECKS[vtl]})
	gw tape create --count 3 --barcode-prefix GW --size 1G ||
		{ notrun "tape create failed" "${checks[@]}"; return; }
	local T CHG
	if vtl_attach; then pass vtl-login
	else fail vtl-login "$VTL_WHY"; notrun "no devices" "${checks[@]:1}"; return; fi
	mtx -f "$CHG" inquiry
	if mtx -f "$CHG" status | tee /tmp/mtx.status | head -8 && grep -q 'VolumeTag *= *GW0001L5' /tmp/mtx.status; then pass vtl-mtx-status
	else fail vtl-mtx-status "$(head -5 /tmp/mtx.status)"; fi
	local S
	S=$(slot_of GW0001L5)
	echo "GW0001L5 in slot $S"
	if [ -n "$S" ] && mtx -f "$CHG" load "$S" 0 && mtx -f "$CHG" status | grep -q 'Data Transfer Element 0:Full.*GW0001L5'; then pass vtl-mtx-load
	else fail vtl-mtx-load "load slot '$S'"; notrun "no tape loaded" "${checks[@]:3}"; return; fi
	local i
	drive_ready
	mt -f /dev/nst0 status
	mt -f /dev/nst0 rewind
	# Three archives, each closed with a filemark (st writes one at close).
	declare -A SUM BLK
	rm -rf /tmp/ta && mkdir -p /tmp/ta
	local okw=1
	for i in 1 2 3; do
		mkdata /tmp/ta/t$i $((10 + i))
		tar -C /tmp/ta -b 128 -cf /tmp/ta/a$i.tar t$i
		SUM[$i]=$(md5sum </tmp/ta/a$i.tar | cut -d' ' -f1)
		BLK[$i]=$(($(stat -c %s /tmp/ta/a$i.tar) / 65536))
		dd if=/tmp/ta/a$i.tar of=/dev/nst0 bs=64k status=none || okw=0
	done
	mt -f /dev/nst0 status
	local eod=$(tell)
	echo "archives of ${BLK[1]}, ${BLK[2]}, ${BLK[3]} blocks; position $eod"
	if [ $okw -eq 1 ] && [ "$eod" = $((BLK[1] + BLK[2] + BLK[3] + 3)) ]; then pass vtl-write-archives
	else fail vtl-write-archives "write ok=$okw, position '$eod' after 3 archives and 3 filemarks"; fi
	mt -f /dev/nst0 rewind
	local okr=1 got
	for i in 1 2 3; do
		got=$(tape_read)
		[ "$got" = "${SUM[$i]}" ] || { okr=0; echo "archive $i: $got, want ${SUM[$i]}"; }
	done
	if [ $okr -eq 1 ]; then pass vtl-read-archives; else fail vtl-read-archives "checksums differ"; fi
	# mt tell / mt seek: archive 2 starts at block BLK1+1 (the blocks of
	# archive 1 and its filemark).
	mt -f /dev/nst0 rewind && mt -f /dev/nst0 fsf 1
	local p2=$(tell)
	mt -f /dev/nst0 rewind && mt -f /dev/nst0 seek "$p2"
	got=$(tape_read)
	if [ "$p2" = $((BLK[1] + 1)) ] && [ "$(tell)" = $((BLK[1] + BLK[2] + 2)) ] && [ "$got" = "${SUM[2]}" ]; then pass vtl-tell-seek
	else fail vtl-tell-seek "tell after fsf 1: '$p2' (want $((BLK[1] + 1))), archive 2 after seek: $got"; fi
	# mt fsf / mt bsf. fsf 2 from the start: archive 3. Having read it (and
	# its filemark), bsf 2 stops before the filemark ending archive 2 and
	# fsf 1 steps over it: archive 3 again, at block BLK1+BLK2+2. Then bsf 3
	# and fsf 1: archive 2.
	mt -f /dev/nst0 rewind && mt -f /dev/nst0 fsf 2
	local a3=$(tape_read)
	mt -f /dev/nst0 bsf 2 && mt -f /dev/nst0 fsf 1
	local p=$(tell) a3b=$(tape_read)
	mt -f /dev/nst0 bsf 3 && mt -f /dev/nst0 fsf 1
	local a2=$(tape_read)
	if [ "$a3" = "${SUM[3]}" ] && [ "$p" = $((BLK[1] + BLK[2] + 2)) ] && [ "$a3b" = "${SUM[3]}" ] && [ "$a2" = "${SUM[2]}" ]; then
		pass vtl-fsf-bsf
	else fail vtl-fsf-bsf "fsf 2 read $( [ "$a3" = "${SUM[3]}" ] && echo archive 3 || echo other data); bsf 2, fsf 1 at '$p' (want $((BLK[1] + BLK[2] + 2))) read $( [ "$a3b" = "${SUM[3]}" ] && echo archive 3 || echo other data); bsf 3, fsf 1 read $( [ "$a2" = "${SUM[2]}" ] && echo archive 2 || echo other data)"; fi
	# tar reading the tape itself.
	mt -f /dev/nst0 rewind && mt -f /dev/nst0 fsf 1
	rm -rf /tmp/tx && mkdir -p /tmp/tx
	if tar -C /tmp/tx -b 128 -xf /dev/nst0 && diff -r /tmp/ta/t2 /tmp/tx/t2 >/dev/null; then pass vtl-tar-extract
	else fail vtl-tar-extract "tar xf /dev/nst0 (archive 2)"; fi
	mt -f /dev/nst0 rewind
	mt -f /dev/nst0 offline 2>/dev/null
	if mtx -f "$CHG" unload "$S" 0 && [ "$(slot_of GW0001L5)" = "$S" ]; then pass vtl-mtx-unload
	else fail vtl-mtx-unload "unload to slot $S"; fi
	# Archive: the tape moves to the import/export element (mtx numbers it
	# after the storage slots).
	local IE
	IE=$(mtx -f "$CHG" status | awk '/IMPORT\/EXPORT/{sub(":.*","",$3); print $3; exit}')
	echo "import/export element is mtx slot $IE"
	if [ -n "$IE" ] && mtx -f "$CHG" transfer "$S" "$IE"; then
		for i in $(seq 1 $((HANG / 2))); do gw tape info GW0001L5 | grep -qi 'state *archived' && break; sleep 2; done
		gw tape info GW0001L5
		if gw tape info GW0001L5 | grep -qi 'state *archived' && [ -z "$(slot_of GW0001L5)" ]; then pass vtl-archive
		else fail vtl-archive "tape not archived"; fi
	else fail vtl-archive "mtx transfer $S $IE"; fi
	if gw tape retrieve GW0001L5; then
		for i in $(seq 1 $((HANG / 2))); do S=$(slot_of GW0001L5); [ -n "$S" ] && break; sleep 2; done
		gw tape info GW0001L5
		if [ -n "$S" ]; then pass vtl-retrieve; else fail vtl-retrieve "not back in a slot"; fi
	else fail vtl-retrieve "gatewayd tape retrieve"; S=; fi
	if [ -n "$S" ] && mtx -f "$CHG" load "$S" 0; then
		drive_ready
		mt -f /dev/nst0 rewind
		okr=1
		for i in 1 2 3; do [ "$(tape_read)" = "${SUM[$i]}" ] || okr=0; done
		if [ $okr -eq 1 ]; then pass vtl-read-retrieved; else fail vtl-read-retrieved "checksums differ after retrieve"; fi
		mt -f /dev/nst0 rewind
		mtx -f "$CHG" unload "$S" 0
	else fail vtl-read-retrieved "cannot load the retrieved tape"; fi
	iscsiadm -m node -T "$T" -p 127.0.0.1:3260 --logout
}

# A WORM tape: st and tar write to it, nothing written is overwritten (the
# drive answers DATA PROTECT, WORM MEDIUM - OVERWRITE ATTEMPTED, and the
# kernel says so), appending at end-of-data works, everything reads back.
scenario_worm() {
	step "4b. WORM tape: dd and tar through st, overwrites refused, append, read back"
	local checks=(${CHECKS[worm]})
	local B=WM0001L5 T CHG S
	if gw tape create --count 1 --barcode-prefix WM --size 1G --worm && gw tape info $B | tee /tmp/worm.info &&
		grep -q '^worm *true' /tmp/worm.info && vtl_attach && S=$(slot_of $B) && [ -n "$S" ] &&
		mtx -f "$CHG" load "$S" 0 && drive_ready; then pass worm-load
	else fail worm-load "tape create --worm, login (${VTL_WHY:-}) or mtx load of $B from slot '$S'"; notrun "no WORM tape loaded" "${checks[@]:1}"; return; fi
	mt -f /dev/nst0 status
	# MODE SENSE of the drive (its sg device is beside /dev/st0): the WORM
	# medium type of an LTO-5 drive.
	local SG
	SG=$(lsscsi -g | awk '$2=="tape" && $(NF-1)=="/dev/st0"{print $NF; exit}')
	if [ -n "$SG" ] && sg_modes "$SG" | tee /tmp/worm.modes | grep -q 'medium type=0x5c'; then pass worm-medium-type
	else fail worm-medium-type "sg_modes $SG: $(grep -i 'medium type' /tmp/worm.modes)"; fi
	# Archive 1 with dd (st writes a filemark at close), archive 2 by tar
	# itself; BLK2 is the size of the same tar written to a file.
	rm -rf /tmp/tw && mkdir -p /tmp/tw
	local i SUM1 SUM3 BLK1 BLK2 BLK3
	for i in 1 2 3; do mkdata /tmp/tw/w$i $((20 + i)); done
	tar -C /tmp/tw -b 128 -cf /tmp/tw/a1.tar w1 && tar -C /tmp/tw -b 128 -cf /tmp/tw/a2.tar w2 && tar -C /tmp/tw -b 128 -cf /tmp/tw/a3.tar w3
	SUM1=$(md5sum </tmp/tw/a1.tar | cut -d' ' -f1)
	SUM3=$(md5sum </tmp/tw/a3.tar | cut -d' ' -f1)
	BLK1=$(($(stat -c %s /tmp/tw/a1.tar) / 65536))
	BLK2=$(($(stat -c %s /tmp/tw/a2.tar) / 65536))
	BLK3=$(($(stat -c %s /tmp/tw/a3.tar) / 65536))
	mt -f /dev/nst0 rewind
	local okw=1 eod
	dd if=/tmp/tw/a1.tar of=/dev/nst0 bs=64k status=none || okw=0
	tar -C /tmp/tw -b 128 -cf /dev/nst0 w2 || okw=0
	eod=$(tell)
	if [ $okw -eq 1 ] && [ "$eod" = $((BLK1 + BLK2 + 2)) ]; then pass worm-write
	else fail worm-write "dd and tar ok=$okw, position '$eod' (want $((BLK1 + BLK2 + 2)))"; fi
	# Overwrites: dd at the beginning, tar over archive 2, a filemark at
	# the beginning. Each fails, and the kernel logs the drive's sense.
	local n0 okr=1
	n0=$(dmesg | wc -l)
	mt -f /dev/nst0 rewind
	if dd if=/tmp/tw/a3.tar of=/dev/nst0 bs=64k status=none; then okr=0; echo "dd over archive 1 succeeded"; fi
	mt -f /dev/nst0 rewind && mt -f /dev/nst0 fsf 1
	if tar -C /tmp/tw -b 128 -cf /dev/nst0 w3; then okr=0; echo "tar over archive 2 succeeded"; fi
	mt -f /dev/nst0 rewind
	if mt -f /dev/nst0 weof 1; then okr=0; echo "a filemark at the beginning written"; fi
	dmesg | tail -n +$((n0 + 1)) | tee /tmp/worm.dmesg
	if [ $okr -eq 1 ] && grep -qi 'Sense Key *: *Data Protect' /tmp/worm.dmesg &&
		grep -qi 'WORM medium - overwrite attempted' /tmp/worm.dmesg; then pass worm-overwrite-refused
	else fail worm-overwrite-refused "overwrites refused=$okr; kernel: $(grep -i -m2 -E 'sense' /tmp/worm.dmesg | tr '\n' ' ')"; fi
	# Append: end-of-data is where it was; archive 3 goes after it.
	mt -f /dev/nst0 rewind
	local p3=
	if mt -f /dev/nst0 eod && p3=$(tell) && [ "$p3" = $((BLK1 + BLK2 + 2)) ] &&
		dd if=/tmp/tw/a3.tar of=/dev/nst0 bs=64k status=none && [ "$(tell)" = $((BLK1 + BLK2 + BLK3 + 3)) ]; then pass worm-append
	else fail worm-append "end-of-data at '$p3' (want $((BLK1 + BLK2 + 2))), then at '$(tell)' (want $((BLK1 + BLK2 + BLK3 + 3)))"; fi
	# Everything reads back: archive 1 and 3 by checksum, archive 2 by tar.
	mt -f /dev/nst0 rewind
	local g1 g3 okx=0
	g1=$(tape_read)
	rm -rf /tmp/twx && mkdir -p /tmp/twx
	tar -C /tmp/twx -b 128 -xf /dev/nst0 && diff -r /tmp/tw/w2 /tmp/twx/w2 >/dev/null && okx=1
	# (tar stops before the filemark ending its archive)
	mt -f /dev/nst0 rewind && mt -f /dev/nst0 fsf 2
	g3=$(tape_read)
	if [ "$g1" = "$SUM1" ] && [ $okx -eq 1 ] && [ "$g3" = "$SUM3" ]; then pass worm-read-back
	else fail worm-read-back "archive 1 $( [ "$g1" = "$SUM1" ] && echo same || echo differs), archive 2 by tar ok=$okx, archive 3 $( [ "$g3" = "$SUM3" ] && echo same || echo differs)"; fi
	mt -f /dev/nst0 rewind
	# Unloaded, the library records the end-of-data the appends made.
	local n=$((BLK1 + BLK2 + BLK3 + 3))
	if mtx -f "$CHG" unload "$S" 0 && gw tape info $B | tee /tmp/worm.info2 | grep -q "^used .*($n logical objects)"; then pass worm-unload
	else fail worm-unload "mtx unload to slot $S; want $n logical objects: $(grep '^used' /tmp/worm.info2)"; fi
	iscsiadm -m node -T "$T" -p 127.0.0.1:3260 --logout
}

scenario_smb() {
	step "5. SMB: smbclient to the share"
	local checks=(${CHECKS[smb]})
	gw share info e2e >/dev/null 2>&1 || gw share create --name e2e --protocols nfs,smb ||
		{ notrun "no share" "${checks[@]}"; return; }
	id e2e >/dev/null 2>&1 || useradd -M -s /usr/sbin/nologin e2e
	if gw smb user add e2e --password 'e2e-Smb-pass1'; then pass smb-user
	else fail smb-user "smb user add"; notrun "no user" "${checks[@]:1}"; return; fi
	gw status | grep -i -A3 smb
	local S=(smbclient //127.0.0.1/e2e -p 445 -U 'e2e%e2e-Smb-pass1' -m SMB3)
	local i
	for i in $(seq 1 $((HANG / 2))); do "${S[@]}" -c ls >/dev/null 2>&1 && break; sleep 2; done
	head -c 2000000 /dev/urandom >/tmp/s1
	rm -f /tmp/s1.back
	if "${S[@]}" -c 'put /tmp/s1 smb-file; get smb-file /tmp/s1.back' && cmp -s /tmp/s1 /tmp/s1.back; then pass smb-put-get
	else fail smb-put-get "put/get differ"; fi
	if "${S[@]}" -c 'ls' | tee /tmp/smb.ls | grep -q smb-file; then pass smb-list; else fail smb-list "$(cat /tmp/smb.ls)"; fi
	# A file written over NFS read over SMB, and the SMB file seen over NFS.
	rm -f /tmp/n1.smb
	local okx=1
	"${S[@]}" -c 'get file1 /tmp/n1.smb' >/dev/null && cmp -s /tmp/n1 /tmp/n1.smb || okx=0
	if mountpoint -q /mnt/nfs; then
		# (the NFS client may cache the directory's old listing for a minute)
		for i in $(seq 1 $((HANG / 2))); do cmp -s /tmp/s1 /mnt/nfs/smb-file && break; sleep 2; done
		cmp -s /tmp/s1 /mnt/nfs/smb-file || okx=0
	else okx=0; fi
	if [ $okx -eq 1 ]; then pass smb-cross-protocol; else fail smb-cross-protocol "NFS file over SMB or SMB file over NFS differs"; fi
}

echo "gatewayd end-to-end in the appliance: $(date -u), kernel $(uname -r)"
# The checks of each scenario: every one must print a RESULT line.
declare -A CHECKS
CHECKS[iscsi]="iscsi-discovery iscsi-chap-refused iscsi-chap-login iscsi-mkfs-mount iscsi-snapshot iscsi-from-snapshot-login iscsi-from-snapshot-content iscsi-restore-to-disk"
CHECKS[durability]="durability-writes-before-kill durability-session-recovered durability-relogin durability-fsck durability-acked-files"
CHECKS[nfs]="nfs-mount nfs-write-read nfs-rename-delete nfs-cp-tree nfs-objects-in-bucket nfs-restart-mounted"
CHECKS[nfs4]="nfs4-mount-defaults nfs4-pseudo-root nfs4-v3-same-files nfs4-write-read nfs4-rename-delete nfs4-cp-tree nfs4-flock nfs4-fcntl-ranges nfs4-read-delegation nfs4-restart-mounted nfs4-kill-mounted nfs4-kill-lock-kept"
CHECKS[vtl]="vtl-login vtl-mtx-status vtl-mtx-load vtl-write-archives vtl-read-archives vtl-tell-seek vtl-fsf-bsf vtl-tar-extract vtl-mtx-unload vtl-archive vtl-retrieve vtl-read-retrieved"
CHECKS[worm]="worm-load worm-medium-type worm-write worm-overwrite-refused worm-append worm-read-back worm-unload"
CHECKS[smb]="smb-user smb-put-get smb-list smb-cross-protocol"

# hung_state NAME: what a scenario that ran out of time was waiting for,
# into the guest log and /share (the host prints it): processes in
# uninterruptible sleep with their kernel stacks, gatewayd's goroutines.
hung_state() {
	echo "--- scenario $1 out of time: processes"
	ps -eo pid,ppid,stat,etimes,wchan:32,args | grep -v ' \[' || true
	local d
	for d in /proc/[0-9]*; do
		grep -q '^State:.*D' "$d/status" 2>/dev/null || continue
		echo "--- D state: $(tr '\0' ' ' <"$d/cmdline")"
		cat "$d/stack" 2>/dev/null
	done
	admin_get '/debug/pprof/goroutine?debug=2' >"/share/goroutines-$1.txt" 2>&1 || echo "no goroutine dump"
	echo "--- gatewayd's goroutines in /share/goroutines-$1.txt"
}

# run_scenario NAME SECONDS: one scenario in a subshell, given up after
# SECONDS (a FAIL) so that one hang does not cost the others.
run_scenario() {
	local s=$1 limit=$2
	("scenario_$s") &
	local p=$! t=0
	while kill -0 $p 2>/dev/null; do
		if [ $t -ge "$limit" ]; then
			hung_state "$s"
			kill -KILL $p 2>/dev/null
			fail "$s-scenario" "timed out after ${limit}s"
			break
		fi
		sleep 5; t=$((t + 5))
	done
	wait $p 2>/dev/null
	# A scenario stopped mid-way may have left gatewayd stopped: the next
	# one starts from a running gatewayd.
	if ! { gatewayd status >/dev/null 2>&1 || [ $? -lt 3 ]; }; then
		echo "gatewayd does not answer after scenario $s: starting it again"
		stop_gw
		start_gw || echo "gatewayd could not be started again"
	fi
	local c
	for c in ${CHECKS[$s]}; do
		grep -q "^RESULT $c " /tmp/results || fail "$c" "not run: the $s scenario ended before it"
	done
	return 0
}

# Every check of the scenarios run, for the host to count: each must have
# exactly one RESULT line, a PASS.
echo "CHECKS setup $(for s in $SCENARIOS; do echo -n "${CHECKS[$s]} "; done)"
: >/tmp/results
if setup; then
	pass setup
	for s in $SCENARIOS; do
		# nfs4 waits out a grace period after its kill -9
		# Bounds for a hang, not speed checks (see HANG).
		case $s in nfs4) run_scenario "$s" 3600 ;; *) run_scenario "$s" 2700 ;; esac
	done
else
	fail setup "gatewayd could not be set up (see above and gatewayd.log)"
fi
step "teardown"
# Lazily: a hard mount whose server is gone would wait forever.
umount -l -f /mnt/nfs4b /mnt/nfs4root /mnt/nfs4 /mnt/nfs 2>/dev/null
stop_gw
dmesg | grep -iE 'error|fail|stale|call trace' | tail -20 >/share/dmesg-errors.log
dmesg >/share/dmesg.log
FAILS=$(grep -c ' FAIL' /tmp/results)
echo "failures: $FAILS"
[ "$FAILS" -gt 100 ] && FAILS=100
exit "$FAILS"
