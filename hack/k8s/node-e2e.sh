#!/usr/bin/env bash
# Kubernetes node conformance on this machine: the [NodeConformance] specs of
# k8s.io/kubernetes/test/e2e_node (the suite containerd and CRI-O run in their
# CI) against capsa, or against containerd 2.4 + runc 1.5 built from Go
# modules (hack/peers), for comparison.
#
#   hack/k8s/node-e2e.sh [capsa|containerd] [--wait]
#   hack/k8s/node-e2e.sh cleanup           remove what a killed run left behind
#
# What upstream CI runs (kubernetes/test-infra config/jobs/kubernetes/sig-node,
# e.g. ci-cos-cgroupv1-containerd-node-e2e, ci-node-crio-conformance): focus
# \[NodeConformance\], skip \[Flaky\]|\[Slow\]|\[Serial\], kubelet flags
# --cgroups-per-qos=true --cgroup-root=/ (--fail-cgroupv1=false on v1 hosts),
# the suite starting its own etcd, kube-apiserver, namespace controller and
# kubelet (test/e2e_node/services). Same here, with these differences, each
# forced by this machine (see hack/k8s/README.md, "Node conformance"):
#   - the images come from hack/k8s/images.sh's loopback registry through
#     the runtime's mirror settings, pulled before the run through the CRI
#     (--prepull-images=false: the suite's own pre-pull list names images no
#     spec of this focus runs and that cannot be built offline: cadvisor,
#     perl, the node-perf workloads, etcd, node-problem-detector, device
#     plugins);
#   - PID 1 is not systemd, yet systemd-run is installed: the suite would
#     start kubelet through systemd-run, so it runs with a PATH that hides it;
#   - the suite's non-systemd defaults would make kubelet move every process
#     of the root cgroup (this machine's own services, other users' work) into
#     /system: --system-cgroups= turns that off, so kubelet has no "misc"
#     system container;
#   - the runtime runs in a cgroup of its own (/node-e2e-runtime, given to
#     kubelet as --runtime-cgroups) as containerd.service is in CI;
#   - ginkgo --procs=$CAPSA_NODE_E2E_PROCS (default 4, CI uses 8): 2 shared cores.
#
# Refuses to start while a kubelet runs (only one may run on a machine: ports
# 10250/10248/10255, /var/lib/kubelet, /kubepods); --wait polls every 30 s
# until none does. Leaves nothing behind: kubelet, the runtime, pods, mounts,
# cgroups, netns, the CNI bridge, /var/lib/kubelet, the runtime's root and
# state (capsa: --root/--state under $CAPSA_NODE_E2E_DIR and
# $CAPSA_NODE_E2E_RUN; containerd: its root, state, shims and runc state).
# The report (ginkgo JSON and JUnit, kubelet, runtime and suite logs, a
# per-spec table summary.txt) goes to $CAPSA_NODE_E2E_REPORTS/<runtime>-<time>
# (default /var/tmp/capsa-node-e2e), outside the repository.
#
# Settings (env): CAPSA_NODE_E2E_DIR (/var/lib/capsa-node-e2e),
# CAPSA_NODE_E2E_RUN (/run/capsa-node-e2e), CAPSA_NODE_E2E_REPORTS,
# CAPSA_NODE_E2E_PROCS (4), CAPSA_NODE_E2E_FOCUS, CAPSA_NODE_E2E_SKIP (regexps
# replacing the CI ones), CAPSA_NODE_E2E_TIMEOUT (3h), CAPSA_NODE_E2E_LOG_LEVEL
# (capsa's, debug), CAPSA_NODE_E2E_FEATURE_GATES (kubelet's and the suite's;
# capsa: PodAndContainerStatsFromCRI=true, containerd: none). kubelet takes
# container stats from the cAdvisor it links in, which has handlers for
# containerd and CRI-O only (pkg/kubelet/cadvisor/cadvisor_linux.go): any
# other CRI runtime gives kubelet its stats through the CRI, the beta
# PodAndContainerStatsFromCRI gate (with it the suite skips its
# /metrics/cadvisor spec, which reads cAdvisor).
set -euo pipefail
# bash reads a script as it runs it: a run lasts most of an hour, so it runs
# from a copy, and editing this file meanwhile cannot derail it
if [ -z "${NODE_E2E_COPY:-}" ]; then
  copy=$(mktemp /tmp/node-e2e.XXXXXX.sh)
  cp "${BASH_SOURCE[0]}" "$copy"
  NODE_E2E_COPY=$copy NODE_E2E_HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd) exec bash "$copy" "$@"
fi
rm -f "$NODE_E2E_COPY"
source "$NODE_E2E_HERE/lib.sh"

E2E_DIR=${CAPSA_NODE_E2E_DIR:-/var/lib/capsa-node-e2e}
E2E_RUN=${CAPSA_NODE_E2E_RUN:-/run/capsa-node-e2e}
REPORTS=${CAPSA_NODE_E2E_REPORTS:-/var/tmp/capsa-node-e2e}
PROCS=${CAPSA_NODE_E2E_PROCS:-4}
FOCUS=${CAPSA_NODE_E2E_FOCUS:-'\[NodeConformance\]'}
SKIP=${CAPSA_NODE_E2E_SKIP:-'\[Flaky\]|\[Slow\]|\[Serial\]'}
TIMEOUT=${CAPSA_NODE_E2E_TIMEOUT:-3h}
PEERS_BIN=${CAPSA_PEERS_CACHE:-/var/cache/capsa-peers}/bin
# kubelet's root: fixed by the suite (test/e2e_node/services.KubeletRootDirectory)
KUBELET_ROOT=/var/lib/kubelet
POD_LOGS=/var/log/pods
# kubelet's podCIDR in the suite's config (test/e2e_node/jenkins/default-kubelet-config.yaml)
E2E_POD_CIDR=10.100.0.0/24
E2E_BRIDGE=cnie2e0
RUNTIME_CGROUP=node-e2e-runtime
# the cgroup hierarchies a process is placed in: every v1 one (named ones
# included) and, on a hybrid host, the v2 one (runc makes cgroups there too)
cgroup_mounts() { awk '$3 == "cgroup" || $3 == "cgroup2" { print $2 }' /proc/self/mounts; }

ne_log() { echo "[$(date +%T)] node-e2e: $*" >&2; }
ne_die() {
  ne_log "error: $*"
  exit 1
}

runtime=capsa
wait=0
for a in "$@"; do
  case "$a" in
    capsa | containerd | cleanup) runtime=$a ;;
    --wait) wait=1 ;;
    *) ne_die "unknown argument $a (usage: node-e2e.sh [capsa|containerd|cleanup] [--wait])" ;;
  esac
done
[ "$(id -u)" = 0 ] || ne_die "must run as root"

SOCK_capsa=$E2E_RUN/capsa/capsa.sock
# containerd's default socket, as in CI: kubelet's cAdvisor finds containerd
# (for /metrics/cadvisor's container series) only there
SOCK_containerd=/run/containerd/containerd.sock
crictl_on() { "$K8S_BIN/crictl" --config /dev/null --runtime-endpoint "unix://$1" --image-endpoint "unix://$1" --timeout 60s "${@:2}"; }

# ---- cleanup: everything a run made, also after a crash ----------------------
# stop_pid FILE SECONDS: TERM the pid in FILE (if it still is the command the
# .match file names), wait, KILL.
stop_pidfile() {
  local f=$1 secs=$2 pid i
  pid=$(cat "$f" 2>/dev/null) || return 0
  if [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null &&
    tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null | grep -qF -- "$(cat "$f.match" 2>/dev/null || echo //)"; then
    kill -TERM "$pid" 2>/dev/null || true
    for ((i = 0; i < secs * 10; i++)); do
      kill -0 "$pid" 2>/dev/null || break
      sleep 0.1
    done
    kill -0 "$pid" 2>/dev/null && kill -KILL "$pid" 2>/dev/null
  fi
  rm -f "$f" "$f.match"
}
# the pids of a v1 cgroup (any hierarchy), recursively
cgroup_pids() { find /sys/fs/cgroup/pids/"$1" -name cgroup.procs -exec cat {} + 2>/dev/null || true; }
cleanup() {
  set +e
  local s pods m h d n
  # the suite stops kubelet itself; after a kill -9 of the suite it may not have
  stop_pidfile "$E2E_RUN/ginkgo.pid" 30
  # its kubelet and services process, known by our work dir in their arguments
  for pid in $(pgrep -x kubelet) $(pgrep -x e2e_node.test); do
    if tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null | grep -qF -- "$E2E_RUN/work/"; then
      ne_log "stopping the suite's $(cat "/proc/$pid/comm" 2>/dev/null) ($pid)"
      kill -TERM "$pid"
      sleep 3
      kill -0 "$pid" 2>/dev/null && kill -KILL "$pid"
    fi
  done
  # pods through the runtime that ran them (their containers, cgroups, netns, IPs)
  local socks=("$SOCK_capsa")
  [ -f "$E2E_RUN/made-run-containerd" ] && socks+=("$SOCK_containerd")
  for s in "${socks[@]}"; do
    [ -S "$s" ] && crictl_on "$s" version >/dev/null 2>&1 || continue
    pods=$(crictl_on "$s" pods -q 2>/dev/null)
    if [ -n "$pods" ]; then
      ne_log "removing $(echo "$pods" | wc -l) pod(s) through $s"
      # shellcheck disable=SC2086
      crictl_on "$s" stopp $pods >/dev/null 2>&1
      # shellcheck disable=SC2086
      crictl_on "$s" rmp -f $pods >/dev/null 2>&1 || ne_log "some pods could not be removed"
    fi
  done
  stop_pidfile "$E2E_RUN/capsa.pid" 20
  stop_pidfile "$E2E_RUN/containerd.pid" 20
  [ -f "$E2E_RUN/made-run-containerd" ] && rm -rf /run/containerd
  # containerd's shims (and anything else) left in the runtime's cgroup
  for pid in $(cgroup_pids "$RUNTIME_CGROUP"); do kill -KILL "$pid" 2>/dev/null; done
  sleep 0.5
  # mounts under kubelet's root, the runtimes' dirs and the netns they pinned
  # (kubelet bind-mounts its root dir onto itself)
  for d in "$KUBELET_ROOT" "$E2E_DIR" "$E2E_RUN"; do
    awk -v d="$d" '$5 == d || index($5, d "/") == 1 { print $5 }' /proc/self/mountinfo | sort -r |
      while read -r m; do umount -l "$m" 2>/dev/null || ne_log "cannot unmount $m"; done
  done
  # cgroups: kubelet's QoS tree, its own, the runtime's
  for h in $(cgroup_mounts); do
    for n in kubepods kubelet "$RUNTIME_CGROUP"; do
      [ -d "$h/$n" ] || continue
      find "$h/$n" -depth -type d -exec rmdir {} \; 2>/dev/null
      [ -d "$h/$n" ] && ne_log "cgroup $h/$n still has processes: $(cgroup_pids "$n" | tr '\n' ' ')"
    done
  done
  ip link del "$E2E_BRIDGE" 2>/dev/null
  # kubelet's pod logs and their /var/log/containers links, its root dir
  find /var/log/containers -maxdepth 1 -type l -lname "$POD_LOGS/*" -newer "$E2E_RUN/started" -delete 2>/dev/null
  [ -f "$E2E_RUN/started" ] && find "$POD_LOGS" -mindepth 1 -maxdepth 1 -newer "$E2E_RUN/started" -exec rm -rf {} + 2>/dev/null
  rmdir "$POD_LOGS" 2>/dev/null
  rm -rf "$KUBELET_ROOT" "$E2E_DIR"
  # the registry, if this run started it and the cluster of up.sh (which
  # shares it) has not come up meanwhile
  [ -f "$E2E_RUN/registry-started" ] && [ ! -d "$K8S_RUN" ] && bash "$K8S_HERE/images.sh" stop >/dev/null 2>&1
  rm -rf "$E2E_RUN"
  set -e
}
if [ "$runtime" = cleanup ]; then
  cleanup
  ne_log "cleaned up"
  exit 0
fi

# ---- one kubelet per machine -------------------------------------------------
busy() {
  pgrep -x kubelet >/dev/null && {
    echo "a kubelet runs (pid $(pgrep -x kubelet | tr '\n' ' '))"
    return 0
  }
  local p
  for p in 6443 10248 10250 10255; do
    ss -Hltn "sport = :$p" | grep -q . && {
      echo "port $p is in use"
      return 0
    }
  done
  # a run, or the cleanup after one (which removes $E2E_RUN last)
  [ -e "$E2E_RUN" ] && {
    echo "another node-e2e run or its cleanup ($E2E_RUN exists; hack/k8s/node-e2e.sh cleanup if it is dead)"
    return 0
  }
  return 1
}
while why=$(busy); do
  [ $wait = 1 ] || ne_die "$why: refusing to start (--wait to wait for it)"
  ne_log "$why: waiting"
  sleep 30
done

# ---- binaries, images ---------------------------------------------------------
for b in kubelet crictl e2e_node.test ginkgo; do
  [ -x "$K8S_BIN/$b" ] || {
    bash "$K8S_HERE/build.sh" --e2e-node >/dev/null
    break
  }
done
case $runtime in
  capsa) [ -f "$CAPSA_TOP/dist/src/cli.js" ] || bash "$CAPSA_TOP/hack/setup.sh" ;;
  containerd) bash "$CAPSA_TOP/hack/peers/build.sh" >/dev/null ;;
esac

mkdir -p "$E2E_RUN/work" "$E2E_DIR"
touch "$E2E_RUN/started"
trap cleanup EXIT
trap 'exit 130' INT TERM
curl -sf -m 2 -o /dev/null "http://$REGISTRY_ADDR/v2/" || touch "$E2E_RUN/registry-started"
bash "$K8S_HERE/images.sh" build >&2 || ne_die "hack/k8s/images.sh build failed"
mapfile -t IMAGES < <(bash "$K8S_HERE/images.sh" list)

REPORT=$REPORTS/$runtime-$(date +%Y%m%d-%H%M%S)
mkdir -p "$REPORT"
ne_log "report: $REPORT"

# ---- CNI: one bridge network on the suite's pod CIDR, for either runtime -----
CNI_DIR=$E2E_RUN/cni
mkdir -p "$CNI_DIR/net.d" "$CNI_DIR/ipam"
cat >"$CNI_DIR/net.d/10-node-e2e.conflist" <<EOF
{
  "cniVersion": "1.0.0",
  "name": "node-e2e",
  "plugins": [
    {
      "type": "bridge", "bridge": "$E2E_BRIDGE", "isGateway": true, "ipMasq": true, "hairpinMode": true,
      "ipam": {
        "type": "host-local", "dataDir": "$CNI_DIR/ipam",
        "ranges": [[{ "subnet": "$E2E_POD_CIDR" }]], "routes": [{ "dst": "0.0.0.0/0" }]
      }
    },
    { "type": "portmap", "capabilities": { "portMappings": true } },
    { "type": "loopback" }
  ]
}
EOF

# ---- the runtime, in a cgroup of its own -------------------------------------
for h in $(cgroup_mounts); do
  mkdir -p "$h/$RUNTIME_CGROUP"
  # cpuset needs cpus/mems before a task may join
  if [ -f "$h/cpuset.cpus" ]; then
    cat "$h/cpuset.cpus" >"$h/$RUNTIME_CGROUP/cpuset.cpus"
    cat "$h/cpuset.mems" >"$h/$RUNTIME_CGROUP/cpuset.mems"
  fi
done
# in_cgroup CMD...: runs CMD (exec) after joining the runtime cgroup everywhere
in_cgroup() {
  local hs
  hs=$(cgroup_mounts | tr '\n' ' ')
  # shellcheck disable=SC2016
  setsid sh -c 'for h in '"$hs"'; do echo $$ >"$h/'"$RUNTIME_CGROUP"'/cgroup.procs"; done; exec "$@"' sh "$@" \
    >>"$REPORT/$runtime.log" 2>&1 </dev/null &
  echo $! >"$E2E_RUN/$runtime.pid"
}

case $runtime in
  capsa)
    SOCK=$SOCK_capsa
    cat >"$E2E_RUN/capsa.toml" <<EOF
# written by hack/k8s/node-e2e.sh
root = "$E2E_DIR/capsa"
state = "$E2E_RUN/capsa"
socket = "$SOCK"
cni_conf_dir = "$CNI_DIR/net.d"
metrics_address = ""
log_level = "${CAPSA_NODE_E2E_LOG_LEVEL:-debug}"
sync_layers = false
# the handler the suite's RuntimeClass specs expect preconfigured
runtime_handlers = ["test-handler"]
$(bash "$K8S_HERE/images.sh" capsa-config)
EOF
    echo "$CAPSA_TOP/bin/capsa serve" >"$E2E_RUN/capsa.pid.match"
    in_cgroup "$CAPSA_TOP/bin/capsa" serve --config "$E2E_RUN/capsa.toml"
    PROC_NAME=node
    ;;
  containerd)
    SOCK=$SOCK_containerd
    CTD_STATE=$E2E_RUN/containerd
    [ -e /run/containerd ] && ne_die "/run/containerd exists: another containerd? (its socket is the one this run uses)"
    touch "$E2E_RUN/made-run-containerd"
    mkdir -p "$CTD_STATE/certs.d"
    # registry mirrors as hosts.toml files (containerd's config_path), the
    # same hosts capsa mirrors
    for host in registry.k8s.io docker.io gcr.io; do
      mkdir -p "$CTD_STATE/certs.d/$host"
      cat >"$CTD_STATE/certs.d/$host/hosts.toml" <<EOF
server = "https://$host"
[host."http://$REGISTRY_ADDR"]
  capabilities = ["pull", "resolve"]
  skip_verify = true
EOF
    done
    # Without CAP_SYS_RESOURCE (this machine's root lacks it) no process may
    # lower a child's oom_score_adj below its own: runc then fails every pod
    # (the sandbox asks for -998). containerd's setting for such hosts clamps
    # the scores to its own, which is what capsa does by itself.
    restrict_oom=false
    (($((16#$(awk '$1 == "CapEff:" { print $2 }' /proc/self/status))) >> 24 & 1)) || restrict_oom=true
    # containerd's own defaults (`containerd config default`) but for the
    # paths: nothing under /run/containerd, /var/lib/containerd, /opt
    cat >"$E2E_RUN/containerd.toml" <<EOF
# written by hack/k8s/node-e2e.sh
version = 4
root = "$E2E_DIR/containerd"
state = "$CTD_STATE"
[debug]
  level = "debug"
[plugins."io.containerd.server.v1.grpc"]
  address = "$SOCK"
[plugins."io.containerd.server.v1.ttrpc"]
  address = "$SOCK.ttrpc"
[plugins."io.containerd.shim.v1.manager"]
  socket_dir = "$CTD_STATE/s"
[plugins."io.containerd.internal.v1.opt"]
  path = "$E2E_DIR/containerd-opt"
[plugins."io.containerd.nri.v1.nri"]
  socket_path = "$CTD_STATE/nri.sock"
[plugins."io.containerd.cri.v1.images"]
  snapshotter = "overlayfs"
  [plugins."io.containerd.cri.v1.images".pinned_images]
    sandbox = "$(printf '%s\n' "${IMAGES[@]}" | grep '/pause:')"
  [plugins."io.containerd.cri.v1.images".registry]
    config_path = "$CTD_STATE/certs.d"
[plugins."io.containerd.cri.v1.runtime"]
  restrict_oom_score_adj = $restrict_oom
  [plugins."io.containerd.cri.v1.runtime".containerd]
    default_runtime_name = "runc"
    [plugins."io.containerd.cri.v1.runtime".containerd.runtimes.runc]
      runtime_type = "io.containerd.runc.v2"
      [plugins."io.containerd.cri.v1.runtime".containerd.runtimes.runc.options]
        BinaryName = "$PEERS_BIN/runc"
        Root = "$CTD_STATE/runc"
        SystemdCgroup = false
    # the handler the suite's RuntimeClass specs expect preconfigured (upstream
    # CI's configure-helper.sh adds the same): runc again under another name
    [plugins."io.containerd.cri.v1.runtime".containerd.runtimes.test-handler]
      runtime_type = "io.containerd.runc.v2"
      [plugins."io.containerd.cri.v1.runtime".containerd.runtimes.test-handler.options]
        BinaryName = "$PEERS_BIN/runc"
        Root = "$CTD_STATE/runc"
        SystemdCgroup = false
  [plugins."io.containerd.cri.v1.runtime".cni]
    bin_dirs = ["/usr/lib/cni"]
    conf_dir = "$CNI_DIR/net.d"
EOF
    echo "$PEERS_BIN/containerd" >"$E2E_RUN/containerd.pid.match"
    # the shim and runc are found through PATH
    PATH=$PEERS_BIN:$PATH in_cgroup "$PEERS_BIN/containerd" --config "$E2E_RUN/containerd.toml"
    PROC_NAME=containerd
    ;;
esac
for ((i = 0; i < 240; i++)); do
  crictl_on "$SOCK" version >/dev/null 2>&1 && break
  kill -0 "$(cat "$E2E_RUN/$runtime.pid")" 2>/dev/null || ne_die "$runtime exited: $(tail -5 "$REPORT/$runtime.log")"
  sleep 0.25
done
crictl_on "$SOCK" version >&2 || ne_die "$runtime did not answer on $SOCK"

# the images, through the CRI (what the suite's pre-pull would do)
ne_log "pulling ${#IMAGES[@]} images into $runtime"
for img in "${IMAGES[@]}"; do
  crictl_on "$SOCK" pull "$img" >/dev/null || ne_die "pull $img through $runtime failed"
done

# ---- the suite ---------------------------------------------------------------
# a PATH without systemd-run (and journalctl: the suite would read kubelet's
# log from a journal this machine does not keep)
NOSD=$E2E_RUN/path
mkdir -p "$NOSD"
for f in /usr/bin/*; do
  case ${f##*/} in systemd-run | journalctl) continue ;; esac
  ln -s "$f" "$NOSD/${f##*/}"
done
# ginkgo runs a compiled suite in the suite's directory, and the suite writes
# its kubeconfig, kubelet config and static pod dirs into its working
# directory and looks for kubelet next to itself: it runs as a link in our
# work dir, not in the build cache.
ln -sf "$K8S_BIN/e2e_node.test" "$E2E_RUN/work/e2e_node.test"
ln -sf "$K8S_BIN/kubelet" "$E2E_RUN/work/kubelet"
cat >"$E2E_RUN/work/kubelet-base.yaml" <<EOF
# test/e2e_node/jenkins/default-kubelet-config.yaml, plus failCgroupV1: false
apiVersion: kubelet.config.k8s.io/v1beta1
kind: KubeletConfiguration
cgroupDriver: cgroupfs
cgroupRoot: /
failCgroupV1: false
podCIDR: "$E2E_POD_CIDR"
volumeStatsAggPeriod: 10s
fileCheckFrequency: 10s
evictionPressureTransitionPeriod: 30s
evictionHard:
  memory.available: 250Mi
  nodefs.available: 10%
  nodefs.inodesFree: 5%
evictionMinimumReclaim:
  nodefs.available: 5%
  nodefs.inodesFree: 5%
serializeImagePulls: false
EOF
kubelet_flags="--cgroups-per-qos=true --cgroup-root=/ --runtime-cgroups=/$RUNTIME_CGROUP --system-cgroups="
if [ "$runtime" = capsa ]; then
  FEATURE_GATES=${CAPSA_NODE_E2E_FEATURE_GATES-PodAndContainerStatsFromCRI=true}
else
  FEATURE_GATES=${CAPSA_NODE_E2E_FEATURE_GATES-}
fi
gate_args=()
[ -n "$FEATURE_GATES" ] && gate_args=(--feature-gates="$FEATURE_GATES")
ne_log "running [NodeConformance] against $runtime ($PROCS procs, timeout $TIMEOUT, feature gates: ${FEATURE_GATES:-none})"
start=$(date +%s)
set +e
(
  cd "$E2E_RUN/work" &&
    PATH=$NOSD:/usr/local/sbin:/usr/local/bin:/usr/sbin exec setsid "$K8S_BIN/ginkgo" \
      --procs="$PROCS" --timeout="$TIMEOUT" --focus="$FOCUS" --skip="$SKIP" --no-color \
      --output-dir="$REPORT" --json-report=report.json --junit-report=junit.xml \
      "$E2E_RUN/work/e2e_node.test" -- \
      --node-name="$(hostname)" --report-dir="$REPORT" \
      --container-runtime-endpoint="unix://$SOCK" --image-service-endpoint="unix://$SOCK" \
      --container-runtime-process-name="$PROC_NAME" --container-runtime-pid-file="$E2E_RUN/$runtime.pid" \
      --kubelet-config-file="$E2E_RUN/work/kubelet-base.yaml" --kubelet-flags="$kubelet_flags" \
      "${gate_args[@]}" --prepull-images=false --v=4
) >"$REPORT/ginkgo.log" 2>&1 &
echo $! >"$E2E_RUN/ginkgo.pid"
echo "$K8S_BIN/ginkgo" >"$E2E_RUN/ginkgo.pid.match"
# What others on the machine can do to the run, noted as evidence: another
# kubelet shares what kubelet keeps at fixed paths whatever its --root-dir
# (/var/lib/kubelet/device-plugins, whose registration socket the device
# plugin specs dial), and the registry may be stopped under it.
(
  while kill -0 "$(cat "$E2E_RUN/ginkgo.pid" 2>/dev/null)" 2>/dev/null; do
    for pid in $(pgrep -x kubelet); do
      tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null | grep -qF -- "$E2E_RUN/work/" ||
        echo "$(date +%T) another kubelet: pid $pid: $(tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null | cut -c1-300)"
    done
    curl -sf -m 5 -o /dev/null "http://$REGISTRY_ADDR/v2/" || echo "$(date +%T) the registry on $REGISTRY_ADDR does not answer"
    sleep 30
  done
) >>"$REPORT/interference.log" 2>/dev/null &
wait "$(cat "$E2E_RUN/ginkgo.pid")"
rc=$?
set -e
rm -f "$E2E_RUN/ginkgo.pid"
ne_log "suite exited $rc after $(($(date +%s) - start)) s"
if [ -s "$REPORT/interference.log" ]; then
  ne_log "warning: the run was disturbed (another kubelet, or the registry gone; see $REPORT/interference.log)"
fi

# ---- the table ---------------------------------------------------------------
bash "$K8S_HERE/node-e2e-summary.sh" "$REPORT/report.json" "$runtime" "$(($(date +%s) - start))" |
  tee "$REPORT/summary.txt"
ne_log "report: $REPORT"
