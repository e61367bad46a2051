#!/usr/bin/env bash
# The one-node cluster of hack/k8s (kubelet on capsa) with the systemd cgroup
# driver, under a real systemd: systemd 252 as PID 1 of its own namespaces
# (sysd-ns.sh, with a dbus-daemon system bus), the whole cluster inside it
# (kubelet and capsa must be: both talk to that systemd over its bus and hand
# it PIDs of its PID namespace), capsa with cgroup_driver = "systemd" and
# kubelet with --cgroup-driver=systemd. The network namespace is the host's:
# the image registry of hack/k8s/images.sh runs on the host, and kubectl on
# the host reaches the apiserver.
#
#   k8s.sh up          start systemd, then hack/k8s/up.sh inside (Node Ready)
#   k8s.sh exec CMD... run CMD inside (systemctl, cat of cgroup files, …)
#   k8s.sh down        hack/k8s/down.sh inside, then stop systemd (its cgroups go)
#   k8s.sh test [ARGS] up, the kubectl suites (jest.e2e.config.js, ARGS to jest)
#                      inside, down; the registry is started (and stopped
#                      again, if this started it) on the host
#
# Shared with the host (same paths inside): the checkout, $CAPSA_K8S_DIR
# (certs, etcd, kubelet's root, capsa's images) and $CAPSA_K8S_CACHE (the
# binaries). Everything else inside (/run: capsa's socket and state, the
# cluster's pids and logs; /tmp, /var/lib/kubelet) is the namespace's own and
# goes with it; `k8s.sh exec cat /run/capsa-k8s/logs/kubelet.log` reads a log.
set -euo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
top=$(cd "$here/../.." && pwd)
name=${CAPSA_SYSD_K8S_NAME:-k8s}
k8s_dir=${CAPSA_K8S_DIR:-/var/lib/capsa-k8s}
k8s_cache=${CAPSA_K8S_CACHE:-/var/cache/capsa-k8s}
log() { echo "[$(date +%T)] sysd-k8s: $*" >&2; }
[ "$(id -u)" = 0 ] || { log "must run as root"; exit 1; }

# What the cluster scripts inside are told (sysd-ns.sh exec passes its env on).
export CAPSA_K8S_CGROUP_DRIVER=systemd
export CAPSA_K8S_KUBELET_ARGS="--cgroup-driver=systemd ${CAPSA_K8S_KUBELET_ARGS:-}"

inside() { bash "$here/sysd-ns.sh" exec "$name" "$@"; }
running() { [ -e "/run/capsa-sysd/$name/pid" ] && [ -d "/proc/$(cat "/run/capsa-sysd/$name/pid")" ]; }

start_sysd() {
  running && return 0
  # one kubelet per machine (its device-plugin socket is a fixed path), and
  # the cluster's ports are the host's: not beside hack/k8s/up.sh's own
  local other
  [ -x /lib/systemd/systemd ] && command -v dbus-daemon >/dev/null ||
    { log "needs systemd and dbus installed (apt-get install systemd dbus); PID 1 may be anything"; exit 1; }
  other=$(pgrep -x kubelet | head -1 || true)
  [ -z "$other" ] || { log "a kubelet (pid $other) runs on this machine: stop it first (hack/k8s/down.sh)"; exit 1; }
  mkdir -p "$k8s_dir" "$k8s_cache"
  log "starting systemd ($name)"
  SYSD_DBUS=1 SYSD_SHARE="$top $k8s_dir $k8s_cache" bash "$here/sysd-ns.sh" start "$name" >/dev/null
  # kubelet's OOM watcher reads the kernel log and will not start without it
  # (the namespace's /dev is a tmpfs of its own holding only the basic nodes).
  inside sh -c '[ -e /dev/kmsg ] || mknod -m 600 /dev/kmsg c 1 11'
  log "systemd $(inside systemctl --version | awk 'NR == 1 { print $2 }') is PID 1 of $name ($(inside systemctl is-system-running || true)), cgroup $(if [ -f /sys/fs/cgroup/cgroup.controllers ]; then echo v2; elif [ -d /sys/fs/cgroup/unified ]; then echo "v1 (hybrid)"; else echo v1; fi)"
}

up() {
  start_sysd
  # capsa's CLI and the tests run on the node that runs the host's checkout;
  # up.sh starts every component inside (their parent is this exec).
  inside bash "$top/hack/k8s/up.sh"
}

down() {
  local rc=0
  if running; then
    inside bash "$top/hack/k8s/down.sh" || rc=$?
    bash "$here/sysd-ns.sh" stop "$name" || rc=$?
  fi
  return $rc
}

case "${1:-}" in
up) up ;;
down) down ;;
exec)
  shift
  inside "$@"
  ;;
test)
  shift
  t0=$(date +%s)
  bash "$top/hack/k8s/build.sh" >/dev/null
  started_registry=0
  # (the status read whole: grep -q ending the pipe early would fail it under pipefail)
  grep -q '^registry: running' <<<"$(bash "$top/hack/k8s/images.sh" status)" || started_registry=1
  bash "$top/hack/k8s/images.sh" start
  bash "$top/hack/k8s/images.sh" build
  cleanup() {
    local rc=$?
    down || rc=1
    [ "$started_registry" = 1 ] && [ ! -e "${CAPSA_NODE_E2E_RUN:-/run/capsa-node-e2e}" ] && bash "$top/hack/k8s/images.sh" stop
    log "done in $(($(date +%s) - t0)) s"
    exit $rc
  }
  trap cleanup EXIT
  start_sysd
  # jest inside too: its global setup runs up.sh there, and the tests read
  # the cluster's pid files and cgroups as the node sees them.
  inside sh -c 'cd "$1" && shift && exec npx --no-install jest -c jest.e2e.config.js "$@"' sh "$top" "$@"
  ;;
*)
  echo "usage: $0 up|down|test [JEST ARGS]|exec CMD..." >&2
  exit 2
  ;;
esac
