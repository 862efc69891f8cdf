#!/usr/bin/env bash
# gatewayd's end-to-end tests in the appliance: boots the image under qemu
# (TCG: software emulation, no KVM needed) with no network card, runs
# e2e-guest.sh inside it against gatewayd on the guest's 127.0.0.1 with the
# guest kernel's own iSCSI, tape (st, sg), NFS and SMB clients, and prints
# the guest's RESULT lines. Exit status: non-zero on any FAIL or when the
# guest did not finish.
#
#   deploy/vm/e2e.sh                     (root)
#
# The base image comes from build-image.sh's cache (built first when the
# recipe changed); gatewayd is built here (static) and handed to the guest
# over virtio-9p with the test script, so a change to gatewayd never
# rebuilds the image. Environment:
#   SCENARIOS="iscsi durability nfs nfs4 vtl worm smb"   which scenarios to run
#   E2E_TIMEOUT=4200                                seconds before the guest is stopped (a hang bound)
#   E2E_DIR=dir                                     run folder (default: a new temp dir)
set -euo pipefail
. "$(dirname "$0")/common.sh"

need_host_tools qemu-system-x86_64 qemu-img go
"$VM_DIR/build-image.sh" --base-only
BASE=$VM_CACHE/base-$(base_key)

RUN=${E2E_DIR:-$(mktemp -d "${TMPDIR:-/tmp}/gatewayd-e2e.XXXXXX")}
SHARE=$RUN/share
mkdir -p "$SHARE"
rm -f "$SHARE"/*.log
echo "== run folder $RUN"

echo "== gatewayd (static)"
(cd "$REPO_DIR" && CGO_ENABLED=0 go build -trimpath -o "$SHARE/gatewayd" ./cmd/gatewayd)
cp "$VM_DIR/e2e-guest.sh" "$SHARE/e2e-guest.sh"
echo "${SCENARIOS:-iscsi durability nfs nfs4 vtl worm smb}" >"$SHARE/scenarios"

# Disks: the image (copy-on-write overlay: the cached image is never
# written), gatewayd's state, the target of `gatewayd restore`.
qemu-img create -q -f qcow2 -F raw -b "$BASE/rootfs.ext4" "$RUN/root.qcow2"
rm -f "$RUN/state.img" "$RUN/restore.img"
truncate -s 4G "$RUN/state.img"
truncate -s 256M "$RUN/restore.img"

t0=$(date +%s)
echo "== booting the appliance (TCG; serial console in $RUN/serial.log)"
rc=0
# no_timer_check: on a busy host the emulated timer's interrupt can come
# later than the kernel's boot-time check allows, and the kernel then
# panics ("IO-APIC + timer doesn't work!"; seen in a CI run). KVM guests
# skip that check by themselves.
timeout "${E2E_TIMEOUT:-4200}" qemu-system-x86_64 \
	-accel tcg,thread=multi -cpu max -smp 2 -m 3072 \
	-nographic -no-reboot -monitor none -serial "file:$RUN/serial.log" \
	-kernel "$BASE/vmlinuz" -initrd "$BASE/initrd.img" \
	-append "root=/dev/vda rw rootfstype=ext4 console=ttyS0 init=/usr/lib/gatewayd/e2e-init panic=-1 quiet loglevel=4 no_timer_check" \
	-drive "file=$RUN/root.qcow2,if=virtio,format=qcow2,cache=unsafe" \
	-drive "file=$RUN/state.img,if=virtio,format=raw,cache=unsafe" \
	-drive "file=$RUN/restore.img,if=virtio,format=raw,cache=unsafe" \
	-virtfs "local,path=$SHARE,mount_tag=share,security_model=none,id=share" \
	-nic none || rc=$?
t1=$(date +%s)
echo "== qemu exit $rc after $((t1 - t0))s"

fails=0
if [ ! -f "$SHARE/guest.log" ]; then
	echo "RESULT guest FAIL the guest wrote no log (see $RUN/serial.log)"
	tail -30 "$RUN/serial.log"
	exit 1
fi
grep -q '^e2e-init: guest script exit' "$SHARE/guest.log" ||
	{ echo "RESULT guest FAIL the guest script did not finish (qemu exit $rc)"; fails=1; }
echo "== results (guest log $SHARE/guest.log, gatewayd log $SHARE/gatewayd.log)"
grep '^RESULT ' "$SHARE/guest.log" || true
n_pass=$(grep -c '^RESULT .* PASS$' "$SHARE/guest.log" || true)
n_fail=$(grep -c '^RESULT .* FAIL' "$SHARE/guest.log" || true)
[ "$n_pass" -gt 0 ] || { echo "RESULT guest FAIL no check passed"; fails=1; }
fails=$((fails + n_fail))
# Counted exactly: every check the guest names for the scenarios run has
# one RESULT line, a PASS; a check missing, repeated or unknown fails.
checks=$(sed -n 's/^CHECKS //p' "$SHARE/guest.log" | head -1)
[ -n "$checks" ] || { echo "RESULT guest FAIL the guest named no checks"; fails=$((fails + 1)); }
n_checks=0
for c in $checks; do
	n_checks=$((n_checks + 1))
	n=$(grep -c "^RESULT $c " "$SHARE/guest.log" || true)
	p=$(grep -c "^RESULT $c PASS\$" "$SHARE/guest.log" || true)
	if [ "$n" != 1 ] || [ "$p" != 1 ]; then
		echo "RESULT $c FAIL $n result lines, $p of them PASS (want one PASS)"
		fails=$((fails + 1))
	fi
done
if [ "$n_pass" != "$n_checks" ]; then
	echo "RESULT guest FAIL $n_pass checks passed, $n_checks named"
	fails=$((fails + 1))
fi
echo "e2e: $n_pass passed of $n_checks checks, $fails failed"
if [ "$fails" -ne 0 ]; then
	# The run folder goes with the machine that ran it: what a reader of
	# this output needs to see why is printed here.
	echo "== last lines of the guest log"
	tail -60 "$SHARE/guest.log"
	echo "== last lines of the gatewayd log"
	tail -60 "$SHARE/gatewayd.log" 2>/dev/null || true
	for g in "$SHARE"/goroutines-*.txt; do
		[ -f "$g" ] || continue
		# goroutines blocked for minutes, each with the top of its stack
		echo "== $(basename "$g"): goroutines waiting for minutes"
		awk '/^goroutine .*minutes\]:$/ { n = 16 } n > 0 { print; n-- }' "$g" | head -400
	done
	echo "== the guest kernel's errors"
	cat "$SHARE/dmesg-errors.log" 2>/dev/null || tail -40 "$RUN/serial.log"
fi
[ "$fails" -eq 0 ]
