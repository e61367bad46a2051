# Shared settings and helpers of hack/k8s/{up,down,node-e2e}.sh (sourced).
# Everything the cluster makes lives under $K8S_DIR (persistent: certs, etcd,
# kubelet root, capsa root) and $K8S_RUN (pids, logs, configs); down.sh
# removes both.

K8S_HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
CAPSA_TOP=$(cd "$K8S_HERE/../.." && pwd)
K8S_CACHE=${CAPSA_K8S_CACHE:-/var/cache/capsa-k8s}
K8S_BIN=$K8S_CACHE/bin
K8S_DIR=${CAPSA_K8S_DIR:-/var/lib/capsa-k8s}
K8S_RUN=${CAPSA_K8S_RUN:-/run/capsa-k8s}
K8S_LOGS=$K8S_RUN/logs
K8S_PIDS=$K8S_RUN/pids
NODE_NAME=${CAPSA_K8S_NODE:-capsa-node}
CAPSA_SOCKET=${CAPSA_K8S_SOCKET:-/run/capsa/capsa.sock}
CAPSA_STATE=$(dirname "$CAPSA_SOCKET")
CAPSA_ROOT=$K8S_DIR/capsa
CNI_CONF_DIR=$K8S_RUN/cni/net.d
CNI_IPAM_DIR=$K8S_RUN/cni/ipam
CNI_BRIDGE=${CAPSA_K8S_BRIDGE:-capsak8s0}
POD_CIDR=${CAPSA_K8S_POD_CIDR:-10.244.0.0/24}
CLUSTER_CIDR=${CAPSA_K8S_CLUSTER_CIDR:-10.244.0.0/16}
SERVICE_CIDR=${CAPSA_K8S_SERVICE_CIDR:-10.96.0.0/16}
APISERVER_PORT=${CAPSA_K8S_APISERVER_PORT:-6443}
ETCD_PORT=${CAPSA_K8S_ETCD_PORT:-23790}
REGISTRY_ADDR=${CAPSA_K8S_REGISTRY:-127.0.0.1:5100}
KUBELET_PORT=${CAPSA_K8S_KUBELET_PORT:-10250}
KUBELET_HEALTHZ_PORT=${CAPSA_K8S_KUBELET_HEALTHZ_PORT:-10248}
# kubelet's cgroup root: "/" (kubepods at the top, as on a real node), or a
# cgroup of its own so this cluster's kubelet can share the machine with
# another kubelet (a node e2e run) without either touching the other's pods.
CGROUP_ROOT=${CAPSA_K8S_CGROUP_ROOT:-/}
KUBECONFIG_ADMIN=$K8S_DIR/pki/admin.kubeconfig
# The components in start order; down.sh stops them in reverse.
K8S_COMPONENTS=(etcd kube-apiserver kube-controller-manager kube-scheduler capsa kubelet)

k8s_log() { echo "[$(date +%T)] k8s: $*" >&2; }
k8s_die() {
  k8s_log "error: $*"
  exit 1
}

# The address other components reach this node at: the first global IPv4
# address (the apiserver refuses a loopback advertise address).
node_ip() {
  if [ -n "${CAPSA_K8S_NODE_IP:-}" ]; then
    echo "$CAPSA_K8S_NODE_IP"
    return
  fi
  ip -4 -o addr show scope global | awk '{ split($4, a, "/"); print a[1]; exit }'
}

pid_of() {
  local f=$K8S_PIDS/$1.pid pid
  [ -f "$f" ] || return 1
  pid=$(cat "$f")
  [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null || return 1
  # a recycled pid is not ours: the command line must still name the binary
  tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null | grep -q -- "$(cat "$K8S_PIDS/$1.match" 2>/dev/null || echo "$1")" || return 1
  echo "$pid"
}

running() { pid_of "$1" >/dev/null; }

# start NAME MATCH CMD...: runs CMD in its own session, logs to $K8S_LOGS/NAME.log.
start_bg() {
  local name=$1 match=$2
  shift 2
  mkdir -p "$K8S_LOGS" "$K8S_PIDS"
  echo "$match" >"$K8S_PIDS/$name.match"
  setsid "$@" >>"$K8S_LOGS/$name.log" 2>&1 </dev/null &
  local pid=$! i
  echo "$pid" >"$K8S_PIDS/$name.pid"
  # Until the child has exec'd, its command line is still this shell's and
  # pid_of would call it gone (seen under load: "kubelet exited" at once):
  # wait, bounded, for the binary to show, or for the child to die.
  for ((i = 0; i < 100; i++)); do
    pid_of "$name" >/dev/null && return 0
    kill -0 "$pid" 2>/dev/null || return 0
    sleep 0.05
  done
}

# stop NAME [SIGNAL] [SECONDS]: signal, wait, then SIGKILL.
stop_bg() {
  local name=$1 sig=${2:-TERM} secs=${3:-20} pid i
  pid=$(pid_of "$name") || {
    rm -f "$K8S_PIDS/$name.pid"
    return 0
  }
  kill -"$sig" "$pid" 2>/dev/null || true
  for ((i = 0; i < secs * 10; i++)); do
    kill -0 "$pid" 2>/dev/null || break
    sleep 0.1
  done
  if kill -0 "$pid" 2>/dev/null; then
    k8s_log "$name ($pid) did not stop after SIG$sig within ${secs}s: SIGKILL"
    kill -KILL "$pid" 2>/dev/null || true
    sleep 0.2
  fi
  rm -f "$K8S_PIDS/$name.pid"
}

# wait_for SECONDS WHAT CMD...: polls CMD until it succeeds; CMD exiting 3
# means "will never succeed" (e.g. the process it waits for died).
wait_for() {
  local secs=$1 what=$2 i rc
  shift 2
  for ((i = 0; i < secs * 4; i++)); do
    rc=0
    "$@" >/dev/null 2>&1 || rc=$?
    [ $rc = 0 ] && return 0
    if [ $rc = 3 ]; then
      k8s_log "gave up waiting for $what"
      return 1
    fi
    sleep 0.25
  done
  k8s_log "timed out after ${secs}s waiting for $what"
  return 1
}

kc() { "$K8S_BIN/kubectl" --kubeconfig "$KUBECONFIG_ADMIN" "$@"; }

# The cgroup dirs of $CGROUP_ROOT (one per v1 hierarchy, or the v2 one).
cgroup_root_dirs() {
  local h
  if [ -f /sys/fs/cgroup/cgroup.controllers ]; then
    echo "/sys/fs/cgroup${CGROUP_ROOT%/}"
    return
  fi
  for h in /sys/fs/cgroup/*/; do
    [ -f "$h/cgroup.procs" ] && echo "${h%/}${CGROUP_ROOT%/}"
  done
}
