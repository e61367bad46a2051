#!/usr/bin/env bash
# Installs a capsa .deb into a throwaway Debian 12 root the way an operator
# would (apt resolving its Depends from Debian's mirror, maintainer scripts
# run), then runs capsa there: `capsa version`, `capsa config default`, the
# files postinst wrote, `capsa serve` answering on its socket, and a purge
# that keeps /var/lib/capsa. Prints "deb-root-test: ok" last.
#   hack/deb-root-test.sh DEB
# nodejs >= 20 is not in Debian 12 (it has 18): the host's own nodejs
# package is repacked (uncompressed, cached) and installed beside it, as an
# operator installs Node 20+ from elsewhere first. Downloaded packages are
# cached in /var/cache/capsa-deb/apt, so later runs only unpack.
set -euo pipefail

deb="$(readlink -f "$1")"
top="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cache=/var/cache/capsa-deb
mirror="${CAPSA_DEBIAN_MIRROR:-http://deb.debian.org/debian}"
mkdir -p "$cache/apt" "$cache/node"

node_version="$(dpkg-query -W -f='${Version}' nodejs)"
node_deb="$(find "$cache/node" -name "nodejs_${node_version//+/?}_*.deb" | head -n1)"
if [[ -z "$node_deb" ]]; then
  tmp="$(mktemp -d)"
  (cd "$tmp" && dpkg-repack --deb-option=-Znone nodejs >/dev/null)
  mv "$tmp"/nodejs_*.deb "$cache/node/"
  rmdir "$tmp"
  node_deb="$(find "$cache/node" -name 'nodejs_*.deb' | head -n1)"
fi

root="$(mktemp -d /tmp/capsa-debroot.XXXXXX)"
cleanup() {
  # Nothing may stay mounted below the root before it goes.
  { grep -o " $root[^ ]*" /proc/self/mountinfo || true; } | sort -r | while read -r m; do umount -l "$m" || true; done
  rm -rf "$root"
}
trap cleanup EXIT

# The checks run in the root as customize hooks; mmdebstrap mounts /proc, /sys and /dev for them.
checks="$(mktemp)"
cat >"$checks" <<'EOF'
#!/bin/sh
set -eu
echo "== dpkg -s capsa"
dpkg-query -W -f='${Package} ${Version} ${Status}\n' capsa
echo "== capsa version"
capsa version
echo "== capsa config default"
capsa config default >/tmp/default.toml
cat /tmp/default.toml
echo "== /etc/capsa/capsa.toml is the default"
cmp /tmp/default.toml /etc/capsa/capsa.toml
echo "== /etc/crictl.yaml"
cat /etc/crictl.yaml
echo "== unit"
grep '^ExecStart=' /lib/systemd/system/capsa.service
grep '^KillMode=' /lib/systemd/system/capsa.service
echo "== capsa serve"
mkdir -p /var/lib/capsa
capsa serve --metrics-address 127.0.0.1:0 --cgroup-driver cgroupfs >/tmp/serve.log 2>&1 &
pid=$!
i=0
until grep -q 'capsa is serving' /tmp/serve.log; do
  i=$((i + 1))
  if [ "$i" -gt 300 ] || ! kill -0 "$pid" 2>/dev/null; then cat /tmp/serve.log; exit 1; fi
  sleep 0.1
done
test -S /run/capsa/capsa.sock
grep -o '"msg":"capsa is serving"' /tmp/serve.log
kill -TERM "$pid"
wait "$pid"
echo "== purge"
dpkg --purge capsa
test ! -e /usr/bin/capsa
test ! -e /etc/capsa/capsa.toml
test -d /var/lib/capsa
echo "state kept: /var/lib/capsa"
EOF
chmod 0755 "$checks"

start=$(date +%s)
# shellcheck disable=SC2016
mmdebstrap --mode=root --variant=apt --skip=essential/unlink --skip=cleanup/apt/cache \
  --setup-hook='mkdir -p "$1"/var/cache/apt/archives/' \
  --setup-hook="sync-in $cache/apt /var/cache/apt/archives/" \
  --hook-dir=/usr/share/mmdebstrap/hooks/file-mirror-automount \
  --include="$node_deb" --include="$deb" \
  --customize-hook="sync-out /var/cache/apt/archives $cache/apt" \
  --customize-hook="copy-in $checks /tmp" \
  --customize-hook="chroot \"\$1\" /tmp/$(basename "$checks")" \
  bookworm "$root" "$mirror"
rm -f "$checks" "$cache"/apt/capsa_*.deb "$cache"/apt/nodejs_*.deb
echo "deb-root-test: root built and checked in $(($(date +%s) - start)) s"
echo "deb-root-test: ok"
