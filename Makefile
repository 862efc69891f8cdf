# gatewayd: the appliance image and its end-to-end tests (root, Debian host).
# Everything else builds and tests with the go tool: see README.md.

VM_OUT ?= deploy/vm/out

.PHONY: vm-image vm-e2e vm-deps test

# Debian packages the image build and the qemu boot need on the host.
vm-deps:
	apt-get install -y -o DPkg::Lock::Timeout=600 --no-install-recommends \
		debootstrap qemu-system-x86 qemu-utils e2fsprogs grub-pc-bin fdisk

# The appliance: rootfs.ext4, vmlinuz, initrd.img, gatewayd.raw, .qcow2, .vmdk
# in $(VM_OUT) (the base image is cached, see docs/appliance.md).
vm-image:
	deploy/vm/build-image.sh $(VM_OUT)

# Boots the appliance under qemu (TCG) and runs the end-to-end scenarios
# with the guest kernel's iSCSI, tape, NFS and SMB clients.
vm-e2e:
	deploy/vm/e2e.sh

test:
	./scripts/test.sh
