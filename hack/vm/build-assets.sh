#!/usr/bin/env bash
# Builds what hack/vm/run.sh boots, from Debian packages only, into
# $CAPSA_VM_DIR (default /var/tmp/capsa-vm-assets):
#   kernel/vmlinuz          Debian's stock kernel (linux-image-amd64's current dependency)
#   kernel/modules/         the few modules mounting the host root over 9p needs
#   kver                    KVER
#   initrd.cpio.gz          static busybox + virtio/9p/overlay modules + hack/vm/init.sh
# Idempotent: the kernel is downloaded once (~8 MB kept); the initrd is rebuilt (~1 s).
#
# busybox-static conflicts with Debian's dynamic busybox, which the test
# images need, so its binary is taken out of the .deb instead of installed.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
assets="${CAPSA_VM_DIR:-/var/tmp/capsa-vm-assets}"
mkdir -p "$assets"
cd "$assets"

# A fresh machine may have no package lists yet: fetch them once, before the first apt-get that needs them.
updated=0
lists() {
  if [ "$updated" = 0 ]; then
    apt-get update -qq
    updated=1
  fi
}
need=()
command -v qemu-system-x86_64 >/dev/null || need+=(qemu-system-x86)
command -v cpio >/dev/null || need+=(cpio)
command -v xz >/dev/null || need+=(xz-utils)
if [ "${#need[@]}" -gt 0 ]; then
  lists
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${need[@]}"
fi

if [ ! -x bin/busybox ]; then
  apt-cache show busybox-static >/dev/null 2>&1 || lists
  rm -rf bb.tmp && mkdir bb.tmp
  (cd bb.tmp && apt-get download -o APT::Sandbox::User=root busybox-static >/dev/null)
  dpkg-deb -x bb.tmp/busybox-static_*.deb bb.tmp/x
  mkdir -p bin && install -m755 bb.tmp/x/bin/busybox bin/busybox
  rm -rf bb.tmp
fi

kernel_pkg() {
  apt-cache depends linux-image-amd64 2>/dev/null | awk '/Depends: linux-image-[0-9]/ {print $2; exit}'
}
pkg="$(kernel_pkg)"
if [ -z "$pkg" ]; then
  lists
  pkg="$(kernel_pkg)"
fi
[ -n "$pkg" ] || {
  echo "build-assets: no linux-image-<version> behind linux-image-amd64" >&2
  exit 1
}
if [ ! -f kernel/vmlinuz ] || [ "$(cat kver 2>/dev/null)" != "${pkg#linux-image-}" ]; then
  rm -rf k.tmp && mkdir k.tmp
  # Stale package lists name a kernel the mirror no longer has: fetch the lists and ask again.
  if ! (cd k.tmp && apt-get download -o APT::Sandbox::User=root "$pkg" >/dev/null); then
    lists
    pkg="$(kernel_pkg)"
    (cd k.tmp && apt-get download -o APT::Sandbox::User=root "$pkg" >/dev/null)
  fi
  kver="${pkg#linux-image-}"
  dpkg-deb -x k.tmp/"$pkg"_*.deb k.tmp/x
  # Keep only the modules mounting the host root over 9p needs (the rest is built in).
  mods="k.tmp/x/lib/modules/$kver/kernel"
  mkdir -p k.tmp/kernel/modules
  for m in drivers/virtio/virtio_ring drivers/virtio/virtio drivers/virtio/virtio_pci_modern_dev \
    drivers/virtio/virtio_pci_legacy_dev drivers/virtio/virtio_pci fs/netfs/netfs fs/fscache/fscache \
    net/9p/9pnet net/9p/9pnet_virtio fs/9p/9p fs/overlayfs/overlay; do
    name="${m##*/}"
    if [ -f "$mods/$m.ko" ]; then
      cp "$mods/$m.ko" "k.tmp/kernel/modules/$name.ko"
    elif [ -f "$mods/$m.ko.xz" ]; then
      xz -dc "$mods/$m.ko.xz" > "k.tmp/kernel/modules/$name.ko"
    fi
  done
  mv "k.tmp/x/boot/vmlinuz-$kver" k.tmp/kernel/vmlinuz
  # Replaced only once the new one is complete: a failure part-way leaves the previous one whole.
  rm -rf kernel && mv k.tmp/kernel kernel
  rm -rf k.tmp
  echo "$kver" > kver
fi
kver="$(cat kver)"

# The initramfs: static busybox, those modules, init.sh.
rm -rf initrd.tmp
mkdir -p initrd.tmp/{bin,proc,sys,dev,lib,lower,rw,newroot}
cp bin/busybox initrd.tmp/bin/busybox
cp -r kernel/modules initrd.tmp/lib/modules
install -m755 "$here/init.sh" initrd.tmp/init
(cd initrd.tmp && find . | cpio -o -H newc 2>/dev/null | gzip -1 > ../initrd.cpio.gz.new)
mv initrd.cpio.gz.new initrd.cpio.gz
rm -rf initrd.tmp
echo "hack/vm: assets for kernel $kver in $assets"
