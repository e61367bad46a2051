#!/usr/bin/env bash
# Runs critest (v1.37.0, our conformance bar, then v1.26.1) against a capsa
# daemon of its own and prints a summary per version. Everything is private
# to the run: a loopback registry on a free port serving hack/critest/
# images.sh's images, a CNI bridge with a free subnet, capsa's root, state
# and socket in a temp dir under /tmp, no metrics port, an IPC namespace.
#
#   hack/critest/run.sh [-v VERSION]... [-k] [-- CRITEST_ARGS...]
#     -v v1.37.0|v1.26.1   a version to run (repeatable; default both)
#     -k                   keep the temp dir (capsa's root and log) afterwards
#     CRITEST_ARGS         extra critest flags, e.g. --ginkgo.focus='Image Manager'
#
# Exit code: 0 when every version ran with no failed spec.
# Reports: $CAPSA_CRITEST_OUT (default /var/cache/capsa-critest/runs/latest):
#   critest-VERSION.txt (critest's output), .json (ginkgo report),
#   .summary.tsv (state, spec, first line of the failure), capsa.log.
#
# Specs that need the internet are skipped (see internet_bound below).
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
cache="${CAPSA_CRITEST_CACHE:-/var/cache/capsa-critest}"
out="${CAPSA_CRITEST_OUT:-$cache/runs/latest}"
versions=()
keep=0
while getopts "v:kh" o; do
  case $o in
    v) versions+=("$OPTARG") ;;
    k) keep=1 ;;
    *)
      sed -n '2,19p' "$0"
      exit 2
      ;;
  esac
done
shift $((OPTIND - 1))
[[ "${1:-}" == "--" ]] && shift
((${#versions[@]})) || versions=(v1.37.0 v1.26.1)
[[ $(id -u) -eq 0 ]] || {
  echo "critest/run: must run as root" >&2
  exit 1
}

# Specs that cannot pass offline, for any runtime: the image is named by the
# digest of a manifest on gcr.io, which no local build can reproduce.
internet_bound='public image with digest'

log() { echo "== critest/run: $*" >&2; }

bash "$root/hack/critest/build.sh" "${versions[@]}" >/dev/null
bash "$root/hack/critest/images.sh"
[[ -f "$root/dist/src/cli.js" ]] || {
  echo "critest/run: capsa is not built (bash hack/setup.sh)" >&2
  exit 1
}

tmp=$(mktemp -d /tmp/capsa-critest.XXXXXX)
mkdir -p "$out"
rm -f "$out"/critest-* "$out/capsa.log"
sock=$tmp/state/capsa.sock
tag=$(od -An -N2 -tx1 /dev/urandom | tr -d ' \n')
bridge=capsa-c$tag
reg_pid=
capsa_pid=

cleanup() {
  set +e
  if [[ -n "$capsa_pid" ]] && kill -0 "$capsa_pid" 2>/dev/null; then
    # Whatever critest left behind goes with the daemon's help: containers
    # outlive the daemon by design.
    "$cache/bin/crictl" -r "unix://$sock" -i "unix://$sock" rmp -af >/dev/null 2>&1
    kill -TERM "$capsa_pid"
    for _ in $(seq 100); do kill -0 "$capsa_pid" 2>/dev/null || break; sleep 0.1; done
    kill -KILL "$capsa_pid" 2>/dev/null
  fi
  [[ -n "$reg_pid" ]] && kill "$reg_pid" 2>/dev/null
  cp "$tmp/capsa.log" "$out/capsa.log" 2>/dev/null
  ip link del "$bridge" 2>/dev/null
  # Mounts capsa left under its root (none when it cleaned up), deepest first.
  awk -v t="$tmp/" 'index($5, t) == 1 { print $5 }' /proc/self/mountinfo | sort -r | xargs -r -n1 umount -l
  if [[ $keep == 1 ]]; then log "kept $tmp"; else rm -rf "$tmp"; fi
}
trap cleanup EXIT

free_port() { python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }
# A 10.x /24 that no route on this machine touches.
free_subnet() {
  local routes s
  routes=$(ip -4 route show table all)
  for _ in $(seq 100); do
    s="10.$((200 + RANDOM % 50)).$((RANDOM % 256))"
    [[ $routes == *"$s."* ]] || {
      echo "$s.0/24"
      return
    }
  done
  echo "critest/run: no free 10.x subnet" >&2
  return 1
}

# ------------------------------------------------------------------ registry
reg=127.0.0.1:$(free_port)
cat >"$tmp/registry.yml" <<EOF
version: 0.1
log:
  level: warn
storage:
  filesystem:
    rootdirectory: $cache/registry
http:
  addr: $reg
EOF
docker-registry serve "$tmp/registry.yml" >"$tmp/registry.log" 2>&1 </dev/null &
reg_pid=$!
for _ in $(seq 100); do
  curl -sf "http://$reg/v2/" >/dev/null && break
  sleep 0.1
done
curl -sf "http://$reg/v2/" >/dev/null || {
  cat "$tmp/registry.log" >&2
  exit 1
}

# ------------------------------------------------------------------ capsa
mkdir -p "$tmp/net.d"
cat >"$tmp/net.d/10-critest.conflist" <<EOF
{
  "cniVersion": "1.0.0",
  "name": "capsa-critest",
  "plugins": [
    { "type": "bridge", "bridge": "$bridge", "isGateway": true, "ipMasq": true, "hairpinMode": true,
      "ipam": { "type": "host-local", "ranges": [[{ "subnet": "$(free_subnet)" }]],
                "routes": [{ "dst": "0.0.0.0/0" }], "dataDir": "$tmp/ipam" } },
    { "type": "portmap", "capabilities": { "portMappings": true } },
    { "type": "loopback" }
  ]
}
EOF
{
  for host in registry.k8s.io k8s.gcr.io gcr.io public.ecr.aws; do
    printf '[registries."%s"]\nmirrors = ["http://%s"]\n' "$host" "$reg"
  done
} >"$tmp/capsa.toml"
# capsa and critest share an IPC namespace of their own: critest's HostIpc
# specs make SysV shm segments with ipcmk on the "host" and never remove
# them; here they go when the namespace does.
unshare --ipc node "$root/dist/src/cli.js" serve --config "$tmp/capsa.toml" --root "$tmp/root" --state "$tmp/state" \
  --socket "$sock" --metrics-address '' --cni-conf-dir "$tmp/net.d" --log-level "${CAPSA_LOG_LEVEL:-info}" \
  >"$tmp/capsa.log" 2>&1 </dev/null &
capsa_pid=$!
for _ in $(seq 300); do
  grep -q 'capsa is serving' "$tmp/capsa.log" && break
  kill -0 "$capsa_pid" 2>/dev/null || break
  sleep 0.1
done
grep -q 'capsa is serving' "$tmp/capsa.log" || {
  echo "critest/run: capsa did not start:" >&2
  tail -20 "$tmp/capsa.log" >&2
  exit 1
}
log "capsa pid $capsa_pid on $sock, registry $reg, bridge $bridge"

# ------------------------------------------------------------------ critest
rc=0
summary=()
for v in "${versions[@]}"; do
  log "critest $v"
  start=$(date +%s)
  set +e
  (cd "$tmp" && nsenter --ipc="/proc/$capsa_pid/ns/ipc" "$cache/bin/critest-$v" --runtime-endpoint "unix://$sock" --image-endpoint "unix://$sock" \
    --ginkgo.no-color --ginkgo.v --ginkgo.json-report="$out/critest-$v.json" \
    --ginkgo.skip="$internet_bound" "$@") >"$out/critest-$v.txt" 2>&1
  vrc=$?
  set -e
  secs=$(($(date +%s) - start))
  if [[ ! -s "$out/critest-$v.json" ]]; then
    log "critest $v produced no report (exit $vrc), see $out/critest-$v.txt"
    tail -20 "$out/critest-$v.txt" >&2
    rc=1
    continue
  fi
  jq -r '.[0].SpecReports[] | select(.LeafNodeType == "It") |
    [.State, ((.ContainerHierarchyTexts | join(" ")) + " " + .LeafNodeText),
     (.Failure.Message // "" | split("\n")[0] | .[0:300])] | @tsv' "$out/critest-$v.json" |
    sort >"$out/critest-$v.summary.tsv"
  counts=$(cut -f1 "$out/critest-$v.summary.tsv" | sort | uniq -c | awk '{ printf "%s %s, ", $1, $2 }')
  summary+=("critest $v: ${counts%, } in ${secs}s (exit $vrc)")
  if grep -qP '^(failed|panicked|timedout|interrupted|aborted)\t' "$out/critest-$v.summary.tsv" || ((vrc != 0)); then
    rc=1
  fi
done

echo
for s in "${summary[@]}"; do echo "$s"; done
for v in "${versions[@]}"; do
  [[ -f "$out/critest-$v.summary.tsv" ]] || continue
  grep -P '^(failed|panicked|timedout|interrupted|aborted)\t' "$out/critest-$v.summary.tsv" | sed "s/^/$v /" || true
done
echo "reports in $out"
exit $rc
