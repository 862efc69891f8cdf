# Sourced by build-image.sh and bench/nfs/v41.sh: installing Debian
# packages into an image's root tree, the one way both do it. The base
# image's key (common.sh base_key) hashes this file.

# chroot_enter ROOT: nothing starts inside the chroot (policy-rc.d), and
# proc, sys and dev are mounted for apt.
chroot_enter() {
	local root=$1
	printf '#!/bin/sh\nexit 101\n' >"$root/usr/sbin/policy-rc.d"
	chmod 755 "$root/usr/sbin/policy-rc.d"
	mount -t proc proc "$root/proc"
	mount -t sysfs sys "$root/sys"
	mount --bind /dev "$root/dev"
	mount --bind /dev/pts "$root/dev/pts"
}

# chroot_install ROOT LOG PKG...: apt-get update and install PKGs without
# their recommendations, the output in LOG (its tail shown on failure),
# then the downloaded packages removed.
chroot_install() {
	local root=$1 log=$2
	shift 2
	chroot "$root" env DEBIAN_FRONTEND=noninteractive apt-get update -q >"$log" 2>&1
	chroot "$root" env DEBIAN_FRONTEND=noninteractive apt-get install -y -q \
		-o DPkg::Lock::Timeout=600 --no-install-recommends "$@" >>"$log" 2>&1 ||
		{ tail -30 "$log"; return 1; }
	chroot "$root" apt-get clean
}

# chroot_leave ROOT: undoes chroot_enter.
chroot_leave() {
	local root=$1
	rm -f "$root/usr/sbin/policy-rc.d"
	for m in dev/pts dev sys proc; do umount -l "$root/$m"; done
}

# chroot_unmount_all ROOT: for an EXIT trap, whatever was mounted.
chroot_unmount_all() {
	for m in proc sys dev/pts dev; do umount -l "$1/$m" 2>/dev/null || true; done
}
