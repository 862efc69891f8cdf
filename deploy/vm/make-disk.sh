#!/usr/bin/env bash
# Turns the appliance's root filesystem image into a bootable disk: an MBR
# partition table, one partition (from 1 MiB) holding the ext4 filesystem
# labelled gatewayd-root, and GRUB (BIOS) on a serial and a VGA console.
# The filesystem is written into the disk image as it is; only GRUB's own
# files are added to it, through a loop device.
#
#   deploy/vm/make-disk.sh ROOTFS.ext4 DISK.raw      (root; grub-pc-bin, grub2-common)
set -euo pipefail
SRC=$1 DISK=$2
[ -d /usr/lib/grub/i386-pc ] || { echo "make-disk.sh: needs grub-pc-bin and grub2-common" >&2; exit 1; }
fs_bytes=$(stat -c %s "$SRC")
rm -f "$DISK"
truncate -s $((fs_bytes + (1 << 20))) "$DISK"
echo 'start=2048, type=83, bootable' | sfdisk -q "$DISK"
dd if="$SRC" of="$DISK" bs=1M seek=1 conv=notrunc,sparse status=none

loop=$(losetup --find --show --partscan "$DISK")
mnt=$(mktemp -d)
cleanup() {
	umount "$mnt" 2>/dev/null || true
	losetup -d "$loop" 2>/dev/null || true
	rmdir "$mnt" 2>/dev/null || true
}
trap cleanup EXIT
part=${loop}p1
for _ in $(seq 1 20); do [ -b "$part" ] && break; sleep 0.2; done
mount "$part" "$mnt"
kver=$(basename "$(ls "$mnt"/boot/vmlinuz-* | sort -V | tail -1)" | sed 's/^vmlinuz-//')
mkdir -p "$mnt/boot/grub"
cat >"$mnt/boot/grub/grub.cfg" <<CFG
serial --unit=0 --speed=115200
terminal_input console serial
terminal_output console serial
set timeout=3
menuentry "gatewayd appliance" {
	search --no-floppy --label gatewayd-root --set=root
	linux /boot/vmlinuz-$kver root=LABEL=gatewayd-root ro console=tty0 console=ttyS0,115200n8
	initrd /boot/initrd.img-$kver
}
CFG
grub-install --target=i386-pc --boot-directory="$mnt/boot" \
	--modules="part_msdos ext2 search_label serial" --no-floppy "$loop" 2>&1 | grep -v '^Installing for' || true
[ -f "$mnt/boot/grub/i386-pc/core.img" ] || { echo "make-disk.sh: grub-install failed" >&2; exit 1; }
umount "$mnt"
e2fsck -fn "$part" >/dev/null
echo "bootable disk $DISK (kernel $kver)"
