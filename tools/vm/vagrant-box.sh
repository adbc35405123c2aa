#!/usr/bin/env bash
# Package the image that tools/vm-test.sh built as a vagrant-libvirt box,
# "ustack/bookworm-local", for the Vagrantfile's USTACK_VM_BOX=local mode, and
# put its kernel and initrd where libvirt's qemu user can read them. Run
# tools/vm-test.sh once first (it builds the image); run as root.
set -euo pipefail
cache=${USTACK_VM_CACHE:-/var/cache/ustack-vm}
image=$(ls -d "$cache"/image-* 2>/dev/null | grep -v '\.partial$' | head -n 1 || true)
[[ -n $image && -s $image/root.img ]] \
    || { echo "vagrant-box: no image in $cache: run tools/vm-test.sh first" >&2; exit 1; }
work=$(mktemp -d "${TMPDIR:-/tmp}/ustack-box.XXXXXX")
trap 'rm -rf --one-file-system "$work"' EXIT

echo "vagrant-box: converting $image/root.img to qcow2"
qemu-img convert -O qcow2 "$image/root.img" "$work/box.img"
size_gb=$(( ($(stat -c %s "$image/root.img") + (1 << 30) - 1) >> 30 ))
printf '{"provider": "libvirt", "format": "qcow2", "virtual_size": %d}\n' \
    "$size_gb" >"$work/metadata.json"
printf 'Vagrant.configure("2") do |config|\nend\n' >"$work/Vagrantfile"
tar -C "$work" -cf "$work/ustack-local.box" metadata.json Vagrantfile box.img
vagrant box add --force --name ustack/bookworm-local "$work/ustack-local.box"

install -d -m 755 /var/lib/libvirt/boot
install -m 644 "$image/vmlinuz" /var/lib/libvirt/boot/ustack-vm-vmlinuz
install -m 644 "$image/initrd.img" /var/lib/libvirt/boot/ustack-vm-initrd.img
echo "vagrant-box: ready; USTACK_VM_BOX=local vagrant up --provider=libvirt"
