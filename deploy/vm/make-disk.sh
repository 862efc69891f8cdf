#!/usr/bin/env bash
# Turns the appliance's root filesystem image into a bootable disk: an MBR
# partition table, one partition from 1 MiB holding the ext4 filesystem
# (label gatewayd-root) as it is, and GRUB for BIOS in the gap before it:
# boot.img in the MBR, core.img from sector 1 with its configuration built
# in (find the filesystem by its label, boot its kernel with the console
# on the screen and the first serial port). No loop device, no mount.
#
#   deploy/vm/make-disk.sh ROOTFS.ext4 DISK.raw      (grub-pc-bin, fdisk)
set -euo pipefail
SRC=$1 DISK=$2
GRUB=/usr/lib/grub/i386-pc
[ -f $GRUB/boot.img ] && command -v grub-mkimage >/dev/null ||
	{ echo "make-disk.sh: needs grub-pc-bin (grub-mkimage, $GRUB)" >&2; exit 1; }
fs_bytes=$(stat -c %s "$SRC")
rm -f "$DISK"
truncate -s $((fs_bytes + (1 << 20))) "$DISK"
echo 'start=2048, type=83, bootable' | sfdisk -q "$DISK"
dd if="$SRC" of="$DISK" bs=1M seek=1 conv=notrunc,sparse status=none

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
cat >"$tmp/grub.cfg" <<'CFG'
serial --unit=0 --speed=115200
terminal_input console serial
terminal_output console serial
echo "gatewayd appliance: booting"
search --no-floppy --label gatewayd-root --set=root
linux /vmlinuz root=LABEL=gatewayd-root ro console=ttyS0,115200n8 console=tty0
initrd /initrd.img
boot
CFG
grub-mkimage -O i386-pc -o "$tmp/core.img" -c "$tmp/grub.cfg" -p '(hd0,msdos1)/boot/grub' \
	biosdisk part_msdos ext2 search search_label linux serial terminal echo boot
core_sectors=$((($(stat -c %s "$tmp/core.img") + 511) / 512))
[ "$core_sectors" -lt 2047 ] || { echo "make-disk.sh: core.img too large" >&2; exit 1; }
# boot.img's code (the first 440 bytes: the partition table stays) loads
# sector 1, whose block list (filled in by grub-mkimage) loads the rest.
dd if=$GRUB/boot.img of="$DISK" bs=440 count=1 conv=notrunc status=none
dd if="$tmp/core.img" of="$DISK" bs=512 seek=1 conv=notrunc status=none
echo "bootable disk $DISK (GRUB core.img $core_sectors sectors)"
