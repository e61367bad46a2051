#!/usr/bin/env bash
# `make deb`: a Debian package of a built checkout, with dpkg-deb.
#   hack/deb.sh [OUTDIR]     (default /var/cache/capsa-deb; prints the .deb's path last)
# The tree is hack/install.sh's with PREFIX=/usr (the unit in
# /lib/systemd/system). /etc/capsa/capsa.toml and /etc/crictl.yaml are not
# in the package: postinst writes them from `capsa config default` when
# absent (so the cgroup driver is detected on the node, not here), and purge
# removes the config. Upgrades never stop the daemon before the new files
# are in (prerm leaves it running) and then restart it: the unit's
# KillMode=process keeps every container running across the restart, and
# the new daemon re-adopts them.
set -euo pipefail

top="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$top"
out="${1:-/var/cache/capsa-deb}"

version="$(node -p "require('./package.json').version")"
arch="$(dpkg --print-architecture)"
work="$(mktemp -d /tmp/capsa-deb.XXXXXX)"
trap 'rm -rf "$work"' EXIT
pkg="$work/pkg"

DESTDIR="$pkg" PREFIX=/usr UNITDIR=/lib/systemd/system CAPSA_INSTALL_CONFIG=0 CAPSA_INSTALL_CRICTL=0 \
  bash hack/install.sh install >/dev/null
# install.sh marks the unit it writes; in a package dpkg owns it.
sed -i '1{/^# installed by capsa hack\/install.sh$/d}' "$pkg/lib/systemd/system/capsa.service"
install -m 0644 README.md "$pkg/usr/share/doc/capsa/README.md"
install -m 0644 docs/operators-guide.md "$pkg/usr/share/doc/capsa/operators-guide.md"
mkdir -p "$pkg/usr/share/doc/capsa/examples"
mv "$pkg/usr/share/doc/capsa/crictl.yaml" "$pkg/usr/share/doc/capsa/examples/crictl.yaml"
rm -f "$pkg/usr/share/doc/capsa/capsa.service.orig"

mkdir -p "$pkg/DEBIAN"
size="$(du -sk --exclude=DEBIAN "$pkg" | cut -f1)"
cat >"$pkg/DEBIAN/control" <<EOF
Package: capsa
Version: $version
Architecture: $arch
Maintainer: capsa maintainers <capsa@localhost>
Installed-Size: $size
Depends: nodejs (>= 20), containernetworking-plugins, iptables, iproute2, zstd, ca-certificates, libc6, libstdc++6
Recommends: systemd
Section: admin
Priority: optional
Homepage: https://kubernetes.io/docs/setup/production-environment/container-runtimes/
Description: Kubernetes container runtime (CRI) built as a unified containerizer
 capsa serves the CRI v1 RuntimeService and ImageService over gRPC on
 /run/capsa/capsa.sock for kubelet and crictl. Pod sandboxes and containers
 are made by a native launcher (capsa-monitor), isolators (namespaces,
 cgroups, CNI networking) and a provisioner that runs OCI and Docker images
 without any other daemon.
EOF

cat >"$pkg/DEBIAN/postinst" <<'EOF'
#!/bin/sh
# capsa postinst: configuration written once, unit enabled on first install,
# daemon restarted after an upgrade (containers keep running: KillMode=process).
set -e
if [ "$1" = configure ]; then
  mkdir -p /etc/capsa
  if [ ! -e /etc/capsa/capsa.toml ]; then
    /usr/bin/capsa config default >/etc/capsa/capsa.toml.dpkg-new
    mv /etc/capsa/capsa.toml.dpkg-new /etc/capsa/capsa.toml
  fi
  if [ ! -e /etc/crictl.yaml ]; then
    cp /usr/share/doc/capsa/examples/crictl.yaml /etc/crictl.yaml
  fi
  if [ -d /run/systemd/system ]; then
    systemctl daemon-reload || true
    if [ -z "$2" ]; then
      # First install: enabled and started, as Debian does for services.
      systemctl enable capsa.service || true
      systemctl start capsa.service || true
    else
      # Upgrade: the new daemon replaces the old one; containers stay.
      systemctl try-restart capsa.service || true
    fi
  elif [ -z "$2" ]; then
    systemctl enable capsa.service >/dev/null 2>&1 || true
  fi
fi
exit 0
EOF

cat >"$pkg/DEBIAN/prerm" <<'EOF'
#!/bin/sh
# capsa prerm: on upgrade nothing is stopped (postinst restarts the daemon
# once the new files are in). On remove the daemon stops; containers keep
# running (KillMode=process) until removed through a runtime.
set -e
case "$1" in
  remove|deconfigure)
    if [ -d /run/systemd/system ]; then
      systemctl stop capsa.service || true
    fi
    if grep -q ' /var/lib/capsa/' /proc/self/mountinfo 2>/dev/null; then
      echo "capsa: containers are still running; they keep running without a runtime (remove them first: crictl rmp -fa)" >&2
    fi
    ;;
esac
exit 0
EOF

# postrm runs after the package's files are gone: it knows the example by its checksum.
crictl_sum="$(sha256sum <"$pkg/usr/share/doc/capsa/examples/crictl.yaml" | cut -d' ' -f1)"
cat >"$pkg/DEBIAN/postrm" <<'EOF'
#!/bin/sh
# capsa postrm: the unit is disabled on remove; purge drops the generated
# configuration. The state (/var/lib/capsa: images, checkpoints) is never
# removed by the package.
set -e
case "$1" in
  remove)
    if [ -d /run/systemd/system ]; then systemctl daemon-reload || true; fi
    systemctl disable capsa.service >/dev/null 2>&1 || true
    ;;
  purge)
    rm -f /etc/capsa/capsa.toml
    rmdir /etc/capsa 2>/dev/null || true
    if [ -f /etc/crictl.yaml ] && echo "@CRICTL_SUM@  /etc/crictl.yaml" | sha256sum -c --status 2>/dev/null; then
      rm -f /etc/crictl.yaml
    fi
    if [ -d /var/lib/capsa ]; then
      echo "capsa: /var/lib/capsa (images, checkpoints) is left in place; remove it by hand if you are done with it" >&2
    fi
    ;;
esac
exit 0
EOF
sed -i "s/@CRICTL_SUM@/$crictl_sum/" "$pkg/DEBIAN/postrm"
chmod 0755 "$pkg/DEBIAN/postinst" "$pkg/DEBIAN/prerm" "$pkg/DEBIAN/postrm"

mkdir -p "$out"
deb="$out/capsa_${version}_${arch}.deb"
dpkg-deb --root-owner-group -Zxz -z3 --build "$pkg" "$deb" >/dev/null
echo "$deb"
