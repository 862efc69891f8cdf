#!/usr/bin/env bash
# NFSv4.1 benchmark: fio on the Linux kernel's NFSv4.1 client against a
# gatewayd share and nfs-ganesha 4.3 (VFS FSAL, NFSv4.1 only), both serving
# at once inside the appliance VM (deploy/vm, qemu TCG), one after the other
# in one run, then a table with the ratios. See bench/nfs/README.md.
#
#   bench/nfs/v41.sh                         (root: qemu, loop mount)
#   ROUNDS=1 SIZE_MIB=256 FILES=1000 RUNTIME=10 bench/nfs/v41.sh
#   PROFILE=1 bench/nfs/v41.sh               # gatewayd's CPU profiles of write-1m and randread-4k
#   PROFILE=1 PROFILE_SECONDS=60 JOBS=write bench/nfs/v41.sh   # a profile over the write's flush too
#   bench/nfs/v41.sh --image-only            # only build the image (no benchmark lock needed)
#   JOBS=write bench/nfs/v41.sh              # only the write-1m rounds
#
# gatewayd has no NFSv4.0, so fio's libnfs engine (4.0 only) cannot be the
# client: the guest kernel's mount is. The image is the appliance's cached
# base image (deploy/vm/build-image.sh) plus nfs-ganesha, built once and
# cached beside it. Environment: SIZE_MIB (default 1024), ROUNDS (write-1m
# rounds, default 3), RUNTIME (seconds of each read job, default 20), FILES
# (the create job, default 10000), JOBS (all, or write: the write-1m
# rounds alone), PROFILE, PROFILE_SECONDS (how long each profile runs from
# its job's start, default 5), OUT (keep the guest's results there),
# BENCH_TIMEOUT (seconds, default 5400), GATEWAYD_GODEBUG (the GODEBUG
# gatewayd serves with in the guest: cpu.sse42=off makes Go's CRC-32C
# table-driven, where QEMU's TCG emulates the crc32 instruction a bit at a
# time; BENCHMARKS.md, NFSv4.1).
set -euo pipefail

here="$(cd "$(dirname "$0")" && pwd)"
. "$here/../../deploy/vm/common.sh"
. "$VM_DIR/chroot.sh"
need_host_tools qemu-system-x86_64 qemu-img go python3
[ "$(id -u)" -eq 0 ] || { echo "v41.sh: needs root (the image's loop mount)" >&2; exit 1; }

"$VM_DIR/build-image.sh" --base-only
BASE=$VM_CACHE/base-$(base_key)
bench_pkgs="nfs-ganesha nfs-ganesha-vfs curl"
IMG=$VM_CACHE/bench-$(echo "$(base_key) $bench_pkgs" | sha256sum | cut -c1-16)

# build_bench_image: the base image with ganesha and curl installed, in a
# copy mounted on a loop device (the base image is never changed).
build_bench_image() {
	local work root
	echo "== bench image: the base plus $bench_pkgs"
	rm -rf "$VM_CACHE"/bench-* 2>/dev/null || true
	work=$(mktemp -d "$VM_CACHE/benchbuild.XXXXXX")
	root=$work/root
	mkdir -p "$root"
	cp --sparse=always "$BASE/rootfs.ext4" "$work/rootfs.ext4"
	mount -o loop "$work/rootfs.ext4" "$root"
	# shellcheck disable=SC2064
	trap "chroot_unmount_all '$root'; umount -l '$root' 2>/dev/null; rm -rf '$work'" EXIT
	cp /etc/resolv.conf "$root/etc/resolv.conf" 2>/dev/null || true
	chroot_enter "$root"
	# shellcheck disable=SC2086
	chroot_install "$root" "$work/apt.log" $bench_pkgs
	chroot_leave "$root"
	umount "$root"
	rmdir "$root"
	cp "$BASE/vmlinuz" "$BASE/initrd.img" "$work/"
	mv "$work" "$IMG"
	trap - EXIT
}
[ -f "$IMG/rootfs.ext4" ] || build_bench_image
[ "${1:-}" != --image-only ] || exit 0

run=$(mktemp -d "${TMPDIR:-/tmp}/gatewayd-bench41.XXXXXX")
trap 'rm -rf "$run"' EXIT
share=$run/share
mkdir -p "$share/out"
(cd "$REPO_DIR" && CGO_ENABLED=0 go build -trimpath -o "$share/gatewayd" ./cmd/gatewayd)
cp "$here/v41-guest.sh" "$share/e2e-guest.sh" # the image's init runs this name
cat >"$share/params" <<-EOF
	SIZE_MIB=${SIZE_MIB:-1024}
	ROUNDS=${ROUNDS:-3}
	RUNTIME=${RUNTIME:-20}
	FILES=${FILES:-10000}
	PROFILE=${PROFILE:-}
	PROFILE_SECONDS=${PROFILE_SECONDS:-5}
	JOBS=${JOBS:-all}
	GATEWAYD_GODEBUG=${GATEWAYD_GODEBUG:-}
EOF
qemu-img create -q -f qcow2 -F raw -b "$IMG/rootfs.ext4" "$run/root.qcow2"
truncate -s 24G "$run/data.img"

echo "== host: $(uptime)"
t0=$(date +%s)
rc=0
# no_timer_check: as deploy/vm/e2e.sh, a busy host must not panic the
# guest's boot-time timer check.
timeout "${BENCH_TIMEOUT:-5400}" qemu-system-x86_64 \
	-accel tcg,thread=multi -cpu max -smp 2 -m 4096 \
	-nographic -no-reboot -monitor none -serial "file:$run/serial.log" \
	-kernel "$IMG/vmlinuz" -initrd "$IMG/initrd.img" \
	-append "root=/dev/vda rw rootfstype=ext4 console=ttyS0 init=/usr/lib/gatewayd/e2e-init panic=-1 quiet loglevel=4 no_timer_check" \
	-drive "file=$run/root.qcow2,if=virtio,format=qcow2,cache=unsafe" \
	-drive "file=$run/data.img,if=virtio,format=raw,cache=none" \
	-virtfs "local,path=$share,mount_tag=share,security_model=none,id=share" \
	-nic none || rc=$?
echo "== qemu exit $rc after $(($(date +%s) - t0))s; host: $(uptime)"
if [ -n "${OUT:-}" ]; then mkdir -p "$OUT" && cp -r "$share/out/." "$share/guest.log" "$OUT/"; fi
grep -q '^e2e-init: guest script exit 0' "$share/guest.log" 2>/dev/null ||
	{ echo "v41.sh: the guest's run failed:" >&2; tail -40 "$share/guest.log" >&2 2>/dev/null || tail -40 "$run/serial.log" >&2; exit 1; }
grep -E '^(mount|load|cpu|profile)' "$share/guest.log" || true
if [ -n "${PROFILE:-}" ]; then
	for p in "$share/out"/*.pprof; do
		[ -s "$p" ] || continue
		echo "== $(basename "$p" .pprof)"
		go tool pprof -top -nodecount=25 "$share/gatewayd" "$p" 2>/dev/null | sed -n '1,32p'
	done
fi

python3 - "$share/out" "$(grep ROUNDS= "$share/params" | cut -d= -f2)" <<'EOF'
import json, os, statistics, sys
out, rounds = sys.argv[1], int(sys.argv[2])
servers = ["gatewayd", "ganesha"]
def job(name):
    p = os.path.join(out, name + ".json")
    if not os.path.exists(p):
        return None
    t = open(p).read()
    d = json.loads(t[t.index("{"):])["jobs"][0]
    return None if d.get("error") else d
def cpu(name):
    p = os.path.join(out, name + ".cpu")
    return open(p).read().split() if os.path.exists(p) else None
def fig(s, j):
    if j == "write-1m":
        xs = []
        for r in range(1, rounds + 1):
            d = job(f"{s}-write-1m.{r}")
            if d:  # bytes over the whole job, its end_fsync (COMMIT) included
                xs.append(d["write"]["io_bytes"] / (d["job_runtime"] / 1000) / 1e6)
        return statistics.median(xs) if xs else None
    d = job(f"{s}-{j}")
    if d is None:
        return None
    if j == "create":
        return d["write"]["total_ios"] / (d["job_runtime"] / 1000)
    if j == "read-1m":
        return d["read"]["bw_bytes"] / 1e6
    return d["read"]["iops"]
jobs = [("write-1m", "MB/s"), ("read-1m", "MB/s"), ("randread-4k", "IOPS"), ("create", "files/s")]
print("| job | unit | gatewayd | ganesha | gatewayd/ganesha |")
print("|---|---|---|---|---|")
for j, unit in jobs:
    f = {s: fig(s, j) for s in servers}
    ratio = f"{f['gatewayd'] / f['ganesha']:.2f}" if f["gatewayd"] and f["ganesha"] else "-"
    print(f"| {j} | {unit} | " + " | ".join(f"{f[s]:.0f}" if f[s] else "error" for s in servers) + f" | {ratio} |")
print()
print("write-1m by round, MB/s: " + "; ".join(
    ", ".join(f"{s} {job(f'{s}-write-1m.{r}')['write']['io_bytes'] / (job(f'{s}-write-1m.{r}')['job_runtime'] / 1000) / 1e6:.0f}"
              for s in servers if job(f"{s}-write-1m.{r}")) for r in range(1, rounds + 1)))
print("CPU seconds during each job (server process, the guest's CPUs busy: user, system, softirq; the job's wall time):")
for j in ["write-1m.1", "read-1m", "randread-4k", "create"]:
    for s in servers:
        c = cpu(f"{s}-{j}")
        if c:
            print(f"  {s} {j}: server {c[0]} s, guest user {c[1]} s, system {c[2]} s, softirq {c[3]} s, idle {c[4]} s, wall {c[5]} s")
EOF
