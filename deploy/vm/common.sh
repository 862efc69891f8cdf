# Shared by build-image.sh and e2e.sh: where the cached base image lives and
# what it is keyed by.
VM_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO_DIR=$(cd "$VM_DIR/../.." && pwd)
VM_CACHE=${GATEWAYD_VM_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/gatewayd-vm}
SUITE=bookworm

# The base image (Debian, packages, unit, first-boot script; no gatewayd
# binary) depends only on these inputs: a change to gatewayd's code keeps
# the cached image, a change to the image's recipe builds a new one (stage 2
# of build-image.sh, which adds gatewayd, is not part of the recipe).
base_key() {
	(cd "$VM_DIR" && sed '/^# Stage 2/q' build-image.sh && cat common.sh chroot.sh packages.txt e2e-init.sh &&
		find rootfs -type f | LC_ALL=C sort | xargs cat &&
		find rootfs -type f | LC_ALL=C sort; echo "$SUITE") | sha256sum | cut -c1-16
}

# The Debian mirror this machine's apt is configured with (deb822 sources
# first, then the classic sources.list); MIRROR overrides.
debian_mirror() {
	if [ -n "${MIRROR:-}" ]; then echo "$MIRROR"; return; fi
	local m=""
	if ls /etc/apt/sources.list.d/*.sources >/dev/null 2>&1; then
		m=$(awk '/^URIs:/ && $2 !~ /security/ {print $2; exit}' /etc/apt/sources.list.d/*.sources)
	fi
	if [ -z "$m" ] && [ -f /etc/apt/sources.list ]; then
		m=$(awk '$1=="deb" && $0 !~ /security/ {for (i=2;i<=NF;i++) if ($i ~ /^[a-z]+:\/\//) {print $i; exit}}' /etc/apt/sources.list)
	fi
	[ -n "$m" ] || { echo "no Debian mirror in the apt sources; set MIRROR" >&2; return 1; }
	echo "$m"
}

need_host_tools() {
	local missing=()
	for t in "$@"; do command -v "$t" >/dev/null 2>&1 || missing+=("$t"); done
	if [ ${#missing[@]} -gt 0 ]; then
		echo "missing host tools: ${missing[*]} (Debian: apt-get install debootstrap qemu-system-x86 qemu-utils e2fsprogs grub-pc-bin)" >&2
		return 1
	fi
}
