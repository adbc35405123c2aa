#!/usr/bin/env bash
# Build the Debian 12 guest that tools/vm-test.sh boots: a minbase debootstrap
# plus Debian's kernel, sshd and the system packages .ci/setup.sh asks for,
# packed as a raw ext4 image with the kernel and initrd beside it for a
# direct kernel boot (no bootloader, no partition table).
#
#   build-image.sh OUT_DIR MIRROR PUBKEY SOURCE_TAR PACKAGE...
#
# SOURCE_TAR: the checkout's files; .ci/setup.sh runs once here, at native
# speed, so the image carries /root/ustack/.venv and the guest's own run of
# setup.sh only checks it (tools/vm-test.sh --fresh-venv redoes it inside).
# OUT_DIR gets root.img, vmlinuz, initrd.img, known_hosts (the guest's host key
# under the alias "ustack-vm"). Runs as root; never touches the host outside
# OUT_DIR.partial (removed on every exit path).
set -euo pipefail
out=$1 mirror=$2 pubkey=$3 source_tar=$4
shift 4
extra=("$@")
work="$out.partial"
root="$work/root"

cleanup() {
    # Unmount before removing; --one-file-system keeps rm out of any mount
    # that failed to come off.
    umount -l "$root/proc" 2>/dev/null || true
    rm -rf --one-file-system "$work"
}
trap cleanup EXIT
# Without these, a TERM (timeout, Ctrl-C) would end bash without the EXIT trap.
trap 'exit 143' TERM
trap 'exit 130' INT
say() { printf 'vm-build: [%s] %s\n' "$(date -u +%T)" "$*"; }

# Retries for everything that downloads: mirrors drop connections now and then.
retry() {
    local n
    for n in 1 2 3 4; do
        "$@" && return 0
        say "attempt $n of: $* failed; retrying in $((n * 10)) s" >&2
        sleep $((n * 10))
    done
    "$@"
}
in_root() { chroot "$root" /usr/bin/env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin \
    DEBIAN_FRONTEND=noninteractive LC_ALL=C.UTF-8 "$@"; }

rm -rf --one-file-system "$work"
mkdir -p "$work"

say "debootstrap bookworm (minbase) from $mirror"
fresh_root() { rm -rf --one-file-system "$root"; mkdir -p "$root"
    debootstrap --variant=minbase bookworm "$root" "$mirror" >"$work/debootstrap.log" 2>&1 \
        || { tail -n 20 "$work/debootstrap.log" >&2; return 1; }; }
retry fresh_root

mount -t proc proc "$root/proc"
# No service may start inside the chroot.
printf '#!/bin/sh\nexit 101\n' >"$root/usr/sbin/policy-rc.d"
chmod 755 "$root/usr/sbin/policy-rc.d"

cat >"$root/etc/apt/apt.conf.d/90ustack-vm" <<'APT'
APT::Install-Recommends "false";
Acquire::Retries "5";
Acquire::http::Timeout "60";
APT
# A small initrd: only what mounts the root disk (virtio-blk, ext4). The
# default (MODULES=most) is ~5x larger and slower to unpack under TCG.
mkdir -p "$root/etc/initramfs-tools/conf.d"
echo MODULES=list >"$root/etc/initramfs-tools/conf.d/ustack-vm"
printf '%s\n' virtio_pci virtio_blk ext4 crc32c_generic >>"$root/etc/initramfs-tools/modules"
echo '/dev/vda / ext4 defaults,noatime 0 1' >"$root/etc/fstab"
echo ustack-vm >"$root/etc/hostname"
printf '127.0.0.1 localhost\n127.0.1.1 ustack-vm\n' >"$root/etc/hosts"
echo "wireshark-common wireshark-common/install-setuid boolean false" \
    | in_root debconf-set-selections

# rsync and qemu-guest-agent: for the Vagrantfile (rsync synced folder; the
# agent tells vagrant-libvirt that the guest is up when it has no DHCP lease).
packages=(systemd-sysv udev kmod openssh-server linux-image-amd64 iproute2 rsync qemu-guest-agent
    ca-certificates "${extra[@]}")
say "apt-get install ${packages[*]}"
retry in_root apt-get update -qq
retry in_root apt-get install -y -qq "${packages[@]}" >"$work/apt.log" 2>&1 \
    || { tail -n 30 "$work/apt.log" >&2; exit 1; }

say "configuring the guest"
# Network: qemu user-mode networking, static address, nothing else; the host
# side reaches the guest only through the SSH port forward.
cat >"$root/etc/systemd/network/10-eth0.network" <<'NET'
[Match]
Name=eth0

[Network]
Address=10.0.2.15/24
Gateway=10.0.2.2
LinkLocalAddressing=no
IPv6AcceptRA=no
NET
in_root systemctl enable -q systemd-networkd ssh
# Nothing that runs on a timer or waits for a network that never comes.
in_root systemctl mask -q systemd-networkd-wait-online.service apt-daily.timer \
    apt-daily-upgrade.timer e2scrub_all.timer fstrim.timer 2>/dev/null || true
# The guest's apt goes through the host's allow-list proxy (tools/vm/proxy.py).
cat >"$root/etc/apt/apt.conf.d/91ustack-vm-proxy" <<'APT'
Acquire::http::Proxy "http://10.0.2.100:3128";
APT
cat >"$root/etc/ssh/sshd_config.d/ustack-vm.conf" <<'SSH'
PermitRootLogin prohibit-password
PasswordAuthentication no
UseDNS no
SSH
install -d -m 700 "$root/root/.ssh"
install -m 600 "$pubkey" "$root/root/.ssh/authorized_keys"
passwd_locked=$(in_root passwd -S root | cut -d' ' -f2)
[[ $passwd_locked == L ]] || in_root passwd -q -l root

say "provisioning /root/ustack with .ci/setup.sh (native speed, in the chroot)"
# Trust what the host trusts: its local CAs (a TLS-inspecting egress proxy has
# its own); tools/vm-test.sh refreshes them in the guest at each run.
if compgen -G "/usr/local/share/ca-certificates/*.crt" >/dev/null; then
    cp /usr/local/share/ca-certificates/*.crt "$root/usr/local/share/ca-certificates/"
    in_root update-ca-certificates >/dev/null
fi
mkdir -p "$root/root/ustack"
tar -C "$root/root/ustack" -xzf "$source_tar"
provision() { in_root PIP_CERT=/etc/ssl/certs/ca-certificates.crt PIP_DEFAULT_TIMEOUT=60 PIP_RETRIES=10 PIP_DISABLE_PIP_VERSION_CHECK=1 \
    /bin/bash -c 'cd /root/ustack && ./.ci/setup.sh' >"$work/setup.log" 2>&1 \
    || { grep -v "Location .* is ignored" "$work/setup.log" | tail -n 20 >&2; return 1; }; }
retry provision
# Only the venv stays: each run copies the checkout in afresh beside it.
find "$root/root/ustack" -mindepth 1 -maxdepth 1 ! -name .venv -exec rm -rf {} +
: >"$root/etc/resolv.conf"

# Smaller image: drop what a headless VM never loads.
kver=$(basename "$(ls -d "$root"/lib/modules/*)")
for d in sound drivers/gpu drivers/media drivers/net/wireless drivers/infiniband \
    drivers/staging drivers/bluetooth drivers/iio drivers/input/touchscreen \
    drivers/scsi drivers/usb drivers/net/ethernet drivers/isdn net/wireless \
    net/bluetooth net/mac80211; do
    rm -rf "$root/lib/modules/$kver/kernel/$d"
done
in_root depmod -a "$kver"
rm -rf "$root"/usr/share/doc/* "$root"/usr/share/man/* "$root"/var/cache/apt/*.bin \
    "$root"/var/cache/apt/archives/*.deb "$root"/var/lib/apt/lists/*_Packages
rm -f "$root/usr/sbin/policy-rc.d"
# Each boot gets a fresh machine-id (first-boot semantics are not wanted).
: >"$root/etc/machine-id"

cp "$root/boot/vmlinuz-$kver" "$work/vmlinuz"
cp "$root/boot/initrd.img-$kver" "$work/initrd.img"
echo "ustack-vm $(cut -d' ' -f1,2 "$root/etc/ssh/ssh_host_ed25519_key.pub")" \
    >"$work/known_hosts"
umount "$root/proc"

# Room for the venv and the tests' files; the file is sparse, and each run
# writes to its own qcow2 overlay, so this image stays as built.
used_mb=$(du -sm "$root" | cut -f1)
say "packing ${used_mb} MB into an ext4 image"
mkfs.ext4 -q -F -L ustack-root -d "$root" "$work/root.img" "$((used_mb + 3072))M"
rm -rf --one-file-system "$root"
rm -f "$work"/*.log
rm -rf --one-file-system "$out"
mv "$work" "$out"
say "image ready: $out"
