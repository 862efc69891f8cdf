#!/bin/sh
# PID 1 of the appliance image in an end-to-end run (kernel command line
# init=/usr/lib/gatewayd/e2e-init; a normal boot runs systemd). It brings up
# the bare minimum, mounts the host's folder shared over virtio-9p at /share,
# runs /share/e2e-guest.sh with its output in /share/guest.log, and powers the
# machine off, so the test script and gatewayd come from the host at each run
# and the image itself never changes.
export PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
mount -t proc proc /proc
mount -t sysfs sys /sys
mount -t devtmpfs dev /dev 2>/dev/null
mkdir -p /dev/pts /dev/shm
mount -t devpts devpts /dev/pts
mount -t tmpfs tmpfs /dev/shm
mount -t tmpfs tmpfs /run
mkdir -p /run/lock
mount -t tmpfs tmpfs /tmp
mount -o remount,rw /
ip link set lo up
hostname gatewayd
echo "e2e-init: up at $(cut -d' ' -f1 /proc/uptime)s"
modprobe 9pnet_virtio 2>/dev/null
modprobe 9p 2>/dev/null
mkdir -p /share
if mount -t 9p -o trans=virtio,version=9p2000.L,msize=262144 share /share; then
	if [ -f /share/e2e-guest.sh ]; then
		/bin/bash /share/e2e-guest.sh >/share/guest.log 2>&1
		echo "e2e-init: guest script exit $?" >>/share/guest.log
	else
		echo "e2e-init: no /share/e2e-guest.sh"
	fi
else
	echo "e2e-init: no 9p share"
fi
echo "e2e-init: done at $(cut -d' ' -f1 /proc/uptime)s, powering off"
sync
echo o >/proc/sysrq-trigger
sleep 30
