#!/usr/bin/env bash
# Installs a capsa .deb into a throwaway Debian 12 root the way an operator
# would (apt resolving its Depends from Debian's mirror, maintainer scripts
# run), then runs capsa there: `capsa version`, `capsa config default`, the
# files postinst wrote, `capsa serve` answering on its socket, and a purge
# that keeps /var/lib/capsa. Prints "deb-root-test: ok" last.
#   hack/deb-root-test.sh DEB
# The root has Debian's archive only (no nodejs >= 20 anywhere: the package
# carries its own Node). The gRPC calls go through the socket from the
# package's own Node and grpc-js; crictl too when the host has one built
# (hack/critest/build.sh). Downloaded packages are cached in
# /var/cache/capsa-deb/apt, so later runs only unpack.
set -euo pipefail

deb="$(readlink -f "$1")"
cache=/var/cache/capsa-deb
mirror="${CAPSA_DEBIAN_MIRROR:-http://deb.debian.org/debian}"

extra=()
for c in /var/cache/capsa-critest/bin/crictl /var/cache/capsa-k8s/bin/crictl; do
  if [[ -x "$c" ]]; then
    extra+=(--customize-hook="copy-in $c /tmp")
    break
  fi
done
mkdir -p "$cache/apt"

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
echo "== no nodejs package, the bundled Node"
if dpkg-query -W nodejs >/dev/null 2>&1; then echo "nodejs is installed" >&2; exit 1; fi
if command -v node >/dev/null; then echo "a node on PATH: $(command -v node)" >&2; exit 1; fi
head -n1 /usr/lib/capsa/bin/capsa
echo "bundled node $(/usr/lib/capsa/node/bin/node --version)"
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
echo "== gRPC through the socket"
/usr/lib/capsa/node/bin/node -e '
const grpc = require("/usr/lib/capsa/node_modules/@grpc/grpc-js");
const api = require("/usr/lib/capsa/dist/src/gen/runtime/v1/api.js");
const target = "unix:///run/capsa/capsa.sock";
const rt = new api.RuntimeServiceClient(target, grpc.credentials.createInsecure());
const im = new api.ImageServiceClient(target, grpc.credentials.createInsecure());
const call = (c, m, req) => new Promise((ok, no) => c[m](req, (e, r) => (e ? no(e) : ok(r))));
(async () => {
  const v = await call(rt, "version", { version: "v1" });
  console.log(`grpc Version: ${v.runtimeName} ${v.runtimeVersion} ${v.runtimeApiVersion}`);
  const s = await call(rt, "status", {});
  console.log(`grpc Status: ${s.status.conditions.map((c) => `${c.type}=${c.status}`).join(" ")}`);
  const p = await call(rt, "listPodSandbox", {});
  console.log(`grpc ListPodSandbox: ${p.items.length} pods`);
  const f = await call(im, "imageFsInfo", {});
  console.log(`grpc ImageFsInfo: ${f.imageFilesystems[0].fsId.mountpoint}`);
  rt.close(); im.close();
})().catch((e) => { console.error(e); process.exit(1); });
'
if [ -x /tmp/crictl ]; then
  echo "== crictl"
  /tmp/crictl --runtime-endpoint unix:///run/capsa/capsa.sock version
  /tmp/crictl --runtime-endpoint unix:///run/capsa/capsa.sock pods
fi
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
  --include="$deb" \
  --customize-hook="sync-out /var/cache/apt/archives $cache/apt" \
  --customize-hook="copy-in $checks /tmp" \
  "${extra[@]}" \
  --customize-hook="chroot \"\$1\" /tmp/$(basename "$checks")" \
  bookworm "$root" "$mirror"
rm -f "$checks" "$cache"/apt/capsa_*.deb "$cache"/apt/nodejs_*.deb
echo "deb-root-test: root built and checked in $(($(date +%s) - start)) s"
echo "deb-root-test: ok"
