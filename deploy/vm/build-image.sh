#!/usr/bin/env bash
# Builds gatewayd's appliance image: Debian bookworm from the machine's
# configured Debian mirror, the kernel, Samba, gatewayd.service and its
# first-boot `gatewayd init`, and a static gatewayd.
#
#   deploy/vm/build-image.sh [--base-only] [OUT]       (root; default OUT: deploy/vm/out)
#
# Two stages:
#  1. the base image (everything but the gatewayd binary), cached under
#     ${XDG_CACHE_HOME:-$HOME/.cache}/gatewayd-vm/base-<key>, the key a hash
#     of this recipe (common.sh base_key); built only when the recipe changes;
#  2. the appliance: the base plus gatewayd (CGO_ENABLED=0), written to OUT:
#       rootfs.ext4, vmlinuz, initrd.img   root filesystem and kernel, for a
#                                          direct kernel boot (qemu -kernel)
#       gatewayd.raw                       a bootable disk (MBR, GRUB, one ext4
#                                          partition labelled gatewayd-root)
#       gatewayd.qcow2, gatewayd.vmdk      the same disk for KVM/Proxmox and
#                                          VMware (docs/appliance.md)
# Host packages: debootstrap qemu-utils e2fsprogs grub-pc-bin grub2-common (and
# qemu-system-x86 to boot it).
set -euo pipefail
. "$(dirname "$0")/common.sh"
. "$VM_DIR/chroot.sh"

BASE_ONLY=0
if [ "${1:-}" = --base-only ]; then BASE_ONLY=1; shift; fi
OUT=${1:-$VM_DIR/out}
ROOT_SIZE=${ROOT_SIZE:-3G}

[ "$(id -u)" -eq 0 ] || { echo "build-image.sh: needs root (debootstrap, chroot)" >&2; exit 1; }
need_host_tools debootstrap mkfs.ext4 debugfs

KEY=$(base_key)
BASE=$VM_CACHE/base-$KEY
now() { date +%s; }

# The build's directory, global so that the EXIT trap, which runs after
# build_base has returned, still knows what to unmount and remove.
BUILD_WORK=""
cleanup_build() {
	[ -n "$BUILD_WORK" ] || return 0
	chroot_unmount_all "$BUILD_WORK/root"
	rm -rf "$BUILD_WORK"
}

build_base() {
	local t0 t1 work root mirror pkgs
	t0=$(now)
	mirror=$(debian_mirror)
	pkgs=$(grep -v '^#' "$VM_DIR/packages.txt" | xargs)
	work=$(mktemp -d "$VM_CACHE/build.XXXXXX")
	BUILD_WORK=$work
	root=$work/root
	trap cleanup_build EXIT

	echo "== debootstrap $SUITE from $mirror"
	debootstrap --variant=minbase "$SUITE" "$root" "$mirror" >"$work/debootstrap.log" 2>&1 ||
		{ tail -20 "$work/debootstrap.log"; return 1; }

	echo "== packages: $pkgs"
	chroot_enter "$root"
	# shellcheck disable=SC2086
	chroot_install "$root" "$work/apt.log" $pkgs

	echo "== appliance configuration"
	cp -a "$VM_DIR/rootfs/." "$root/"
	install -m 0755 "$VM_DIR/e2e-init.sh" "$root/usr/lib/gatewayd/e2e-init"
	echo gatewayd >"$root/etc/hostname"
	printf '127.0.0.1\tlocalhost\n127.0.1.1\tgatewayd\n::1\tlocalhost ip6-localhost ip6-loopback\n' >"$root/etc/hosts"
	printf 'LABEL=gatewayd-root\t/\text4\terrors=remount-ro\t0\t1\n' >"$root/etc/fstab"
	# Each imported appliance gets its own machine id and initiator name at
	# first boot; systemd-firstboot asks for a root password on the console.
	: >"$root/etc/machine-id"
	rm -f "$root/var/lib/dbus/machine-id" "$root/etc/iscsi/initiatorname.iscsi"
	# gatewayd runs its own smbd; Samba's own services stay off.
	chroot "$root" systemctl disable smbd.service nmbd.service samba-ad-dc.service >/dev/null 2>&1 || true
	chroot "$root" systemctl mask smbd.service nmbd.service samba-ad-dc.service >/dev/null
	chroot "$root" systemctl enable gatewayd.service systemd-networkd.service >/dev/null
	chroot "$root" systemd-analyze verify gatewayd.service 2>&1 | grep -v 'gatewayd: No such file' || true
	chroot_leave "$root"

	echo "== base image"
	cp "$root"/boot/vmlinuz-* "$work/vmlinuz"
	cp "$root"/boot/initrd.img-* "$work/initrd.img"
	mkfs.ext4 -q -L gatewayd-root -d "$root" "$work/rootfs.ext4" "$ROOT_SIZE"
	rm -rf "$root"
	printf '%s\n' "$pkgs" >"$work/packages"
	rm -rf "$BASE"
	mv "$work" "$BASE"
	BUILD_WORK=""
	trap - EXIT
	t1=$(now)
	echo "== base image built in $((t1 - t0))s: $BASE"
}

# One build of the base at a time: a second run on the machine waits for
# the first one's base instead of building beside it (and removing its
# build directory as a leftover). The lock is released when this script
# ends; stage 2 only reads the base.
mkdir -p "$VM_CACHE"
exec 8>"$VM_CACHE/.lock"
if ! flock -n 8; then
	echo "== waiting for another build of the base image"
	flock 8
fi
if [ -f "$BASE/rootfs.ext4" ]; then
	echo "== base image $KEY cached: $BASE"
else
	# Old bases and the leftovers of builds that were killed are of no
	# further use: no other build runs while the lock is held.
	rm -rf "$VM_CACHE"/base-* "$VM_CACHE"/build.* 2>/dev/null || true
	build_base
fi
[ "$BASE_ONLY" -eq 1 ] && exit 0

# Stage 2: the appliance, base + gatewayd.
need_host_tools go qemu-img grub-mkimage sfdisk openssl
t0=$(now)
mkdir -p "$OUT"
echo "== gatewayd (static)"
(cd "$REPO_DIR" && CGO_ENABLED=0 go build -trimpath -ldflags='-s -w' -o "$OUT/gatewayd" ./cmd/gatewayd)
cp "$BASE/vmlinuz" "$BASE/initrd.img" "$OUT/"
cp --sparse=always "$BASE/rootfs.ext4" "$OUT/rootfs.ext4"
# debugfs writes into the filesystem image without mounting it.
debugfs -w "$OUT/rootfs.ext4" -f - >/dev/null <<DBG
write $OUT/gatewayd /usr/local/bin/gatewayd
set_inode_field /usr/local/bin/gatewayd mode 0100755
set_inode_field /usr/local/bin/gatewayd uid 0
set_inode_field /usr/local/bin/gatewayd gid 0
DBG
# The console login: root with the password "gatewayd", expired, so the
# first login must set a new one (the image has no SSH server).
work2=$(mktemp -d)
debugfs -R "dump /etc/shadow $work2/shadow" "$OUT/rootfs.ext4" 2>/dev/null
shadow_gid=$(debugfs -R 'stat /etc/shadow' "$OUT/rootfs.ext4" 2>/dev/null | awk '/Group:/{print $4; exit}')
hash=$(openssl passwd -6 gatewayd)
awk -F: -v OFS=: -v h="$hash" '$1=="root"{$2=h; $3=0} {print}' "$work2/shadow" >"$work2/shadow.new"
debugfs -w "$OUT/rootfs.ext4" -f - >/dev/null <<DBG
rm /etc/shadow
write $work2/shadow.new /etc/shadow
set_inode_field /etc/shadow mode 0100640
set_inode_field /etc/shadow uid 0
set_inode_field /etc/shadow gid $shadow_gid
DBG
rm -rf "$work2"
e2fsck -fn "$OUT/rootfs.ext4" >/dev/null

echo "== bootable disk"
"$VM_DIR/make-disk.sh" "$OUT/rootfs.ext4" "$OUT/gatewayd.raw"
qemu-img convert -f raw -O qcow2 -c "$OUT/gatewayd.raw" "$OUT/gatewayd.qcow2"
qemu-img convert -f raw -O vmdk -o subformat=streamOptimized,adapter_type=lsilogic "$OUT/gatewayd.raw" "$OUT/gatewayd.vmdk"
t1=$(now)
echo "== appliance in $((t1 - t0))s:"
ls -ls "$OUT"
