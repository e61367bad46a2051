#!/usr/bin/env bash
# Brings a Debian 12 machine (Node 20, npm, python3, make, g++) to a built
# capsa: Debian packages through apt, npm packages, the generated protocol
# bindings, the native addon and monitor, the TypeScript build.
# Idempotent and quick when nothing changed.
#   hack/setup.sh          what the daemon needs
#   hack/setup.sh --test   plus what the test suite needs
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"

# Runtime: protoc for the bindings; iproute2/iptables and the CNI plugins for
# pod networking; zstd to unpack zstd layers.
pkgs=(protobuf-compiler iproute2 iptables containernetworking-plugins zstd ca-certificates libseccomp-dev runc crun)
if [[ "${1:-}" == "--test" ]]; then
  # Tests: a real registry, image build tools, Debian's busybox for test
  # images, htpasswd for the auth registry, openssl for TLS/token tests;
  # systemd and dbus for the systemd cgroup driver's suite (hack/sysd).
  # curl: the kubelet e2e cluster's health checks (hack/k8s).
  pkgs+=(docker-registry skopeo umoci busybox apache2-utils openssl jq systemd dbus curl)
  # The package's test (make deb, hack/deb-root-test.sh): a Debian 12 root
  # from Debian's mirror alone (the package carries its own Node).
  pkgs+=(mmdebstrap)
  # A real Prometheus scraping capsa, promtool for the shipped rules (packaging/prometheus).
  pkgs+=(prometheus)
  # The cgroup v2 VM (hack/vm, hack/test-cgroup-v2.sh): qemu, and cpio/xz to pack its initramfs
  # from Debian's kernel (hack/vm/build-assets.sh fetches that into /var/tmp/capsa-vm-assets).
  pkgs+=(qemu-system-x86 cpio xz-utils)
fi

missing=()
for p in "${pkgs[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
done
if ((${#missing[@]})); then
  if [[ $(id -u) -ne 0 ]]; then
    echo "setup: need root to install: ${missing[*]}" >&2
    exit 1
  fi
  echo "setup: installing Debian packages: ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
  # The Debian registry and prometheus packages start system services; tests run their own.
  for svc in docker-registry prometheus; do
    if [[ " ${missing[*]} " == *" $svc "* ]] && command -v systemctl >/dev/null 2>&1; then
      systemctl disable --now "$svc" >/dev/null 2>&1 || true
    fi
  done
fi

# npm packages: reinstall only when the lock file changed since the last install.
stamp=node_modules/.capsa-lock-stamp
if [[ ! -f "$stamp" ]] || ! cmp -s package-lock.json "$stamp"; then
  # A fresh clone (CI) gets `npm ci`: exactly the lock file, never rewritten
  # (the lock lists every platform's optional packages, as `npm install`
  # writes it; without them `npm ci` refuses it as out of sync). A tree that
  # has node_modules is updated in place by `npm install`, which with a
  # complete lock installs the same versions: `npm ci` would first delete
  # node_modules under whatever is running from it.
  if [[ -d node_modules ]]; then
    echo "setup: npm install"
    npm install --no-audit --no-fund --loglevel=error
  else
    echo "setup: npm ci"
    npm ci --no-audit --no-fund --loglevel=error
  fi
  cp package-lock.json "$stamp"
fi

npm run --silent gen
echo "setup: building native addon and monitor"
npx --no-install node-gyp rebuild --directory native --loglevel=error >/dev/null
# node-gyp rebuild wipes native/build, so the C helpers are built after it.
make -s -C native/monitor
make -s -C native/pinns
echo "setup: compiling TypeScript"
npx --no-install tsc -p tsconfig.json
