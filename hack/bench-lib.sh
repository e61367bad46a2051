# shellcheck shell=bash
# Shared helpers of the hack/bench-* scripts (sourced, never run by itself).
#
# The sourcing script sets, before calling anything here:
#   BENCH   its own name, for messages ("bench-pull")
#   WORK    its temp dir (logs, daemon roots, crictl.yaml)
# and keeps its own cleanup trap, which calls stop_all and umount_below.
#
# Processes started with `start` are remembered in PIDS; stop_pid stops one of
# them (never anything else), stop_all all that are left.

PIDS=() # every process we started and have not stopped yet
LAST_PID=

log() { echo "== $*" >&2; }
die() {
  echo "$BENCH: $*" >&2
  exit 1
}

# stop_pid PID: SIGTERM, then SIGKILL after 15 s; only ever our own children.
stop_pid() {
  local pid=$1 i
  if kill -TERM "$pid" 2>/dev/null; then
    for ((i = 0; i < 150; i++)); do
      kill -0 "$pid" 2>/dev/null || break
      sleep 0.1
    done
    kill -KILL "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
  fi
  local keep=() p
  for p in "${PIDS[@]+"${PIDS[@]}"}"; do [[ $p == "$pid" ]] || keep+=("$p"); done
  PIDS=("${keep[@]+"${keep[@]}"}")
}

# stop_all: every process `start` started and nobody stopped yet, newest first.
stop_all() {
  local i
  for ((i = ${#PIDS[@]} - 1; i >= 0; i--)); do stop_pid "${PIDS[i]}"; done
}

# start NAME CMD...: starts CMD in the background, its output in $WORK/NAME.log;
# its pid in LAST_PID. setpriv --pdeathsig: should the script be SIGKILLed (no
# trap runs), the child dies with it instead of running on.
start() {
  local name=$1
  shift
  setpriv --pdeathsig KILL "$@" >"$WORK/$name.log" 2>&1 &
  LAST_PID=$!
  PIDS+=("$LAST_PID")
}

# umount_below DIR: unmounts whatever is still mounted at or below DIR, deepest
# first (lazily when busy).
umount_below() {
  local m
  awk -v d="$1/" 'index($5 "/", d) == 1 { print $5 }' /proc/self/mountinfo | sort -r | while read -r m; do
    umount "$m" 2>/dev/null || umount -l "$m" 2>/dev/null || true
  done
}

# crictl_at SOCK ARGS...: crictl against one daemon. crictl reads
# /etc/crictl.yaml by default; an empty config of our own keeps the host's
# settings (endpoints, debug) out.
crictl_at() {
  local sock=$1
  shift
  [[ -f $WORK/crictl.yaml ]] || : >"$WORK/crictl.yaml"
  crictl --config "$WORK/crictl.yaml" --runtime-endpoint "unix://$sock" --image-endpoint "unix://$sock" \
    --timeout 600s "$@"
}

# wait_cri SOCK PID NAME: until the daemon answers CRI (30 s at most); NAME.log
# is its output.
wait_cri() {
  local i
  for ((i = 0; i < 300; i++)); do
    crictl_at "$1" --timeout 2s version >/dev/null 2>&1 && return 0
    kill -0 "$2" 2>/dev/null || {
      echo "$BENCH: $3 exited" >&2
      tail -20 "$WORK/$3.log" >&2
      exit 1
    }
    sleep 0.1
  done
  echo "$BENCH: $3 did not answer on $1" >&2
  tail -20 "$WORK/$3.log" >&2
  exit 1
}

# write_containerd_config DIR CNI_CONF_DIR CNI_BIN_DIR [STATE_DIR]: a
# containerd config of our own in DIR/config.toml: root, sockets and plugin
# dirs below DIR, its state (default DIR/state; /run/containerd on a real
# node, a tmpfs), runc's state and the pod netns pins below the state dir (no
# system containerd is touched); the CRI plugin with registry.k8s.io/pause:3.9
# as sandbox image, registries configured through DIR/certs.d (hosts.toml
# files, the caller's).
write_containerd_config() {
  local dir=$1 conf=$2 bin=$3 state=${4:-$1/state}
  mkdir -p "$dir/certs.d"
  cat >"$dir/config.toml" <<EOF
version = 2
root = "$dir/root"
state = "$state"
[grpc]
  address = "$dir/containerd.sock"
[ttrpc]
  address = "$dir/containerd.sock.ttrpc"
[plugins."io.containerd.internal.v1.opt"]
  # default /opt/containerd; keep everything in the temp dir
  path = "$dir/opt"
[plugins."io.containerd.grpc.v1.cri"]
  sandbox_image = "registry.k8s.io/pause:3.9"
  restrict_oom_score_adj = true
  # pod netns pins below the state dir, not in /var/run/netns
  netns_mounts_under_state_dir = true
  [plugins."io.containerd.grpc.v1.cri".containerd]
    snapshotter = "overlayfs"
    default_runtime_name = "runc"
    [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
      runtime_type = "io.containerd.runc.v2"
      [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc.options]
        # runc's state (default /run/containerd/runc) in the temp dir too
        Root = "$state/runc"
        SystemdCgroup = false
  [plugins."io.containerd.grpc.v1.cri".cni]
    bin_dir = "$bin"
    conf_dir = "$conf"
  [plugins."io.containerd.grpc.v1.cri".registry]
    config_path = "$dir/certs.d"
EOF
}

# ms_to_s MS: "1.234"
ms_to_s() { awk -v m="$1" 'BEGIN { printf "%.3f", m / 1000 }'; }

# median < "n n n …": the median of whitespace-separated numbers (empty input: empty).
median() {
  tr -s '[:blank:]' '\n' | { grep . || true; } | sort -g | awk '{ v[NR] = $1 } END { if (NR) print (NR % 2 ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2) }'
}

# percentile P < "n n n …": nearest-rank P-th percentile (P in 1..100).
percentile() {
  tr -s '[:blank:]' '\n' | { grep . || true; } | sort -g | awk -v p="$1" '{ v[NR] = $1 } END { if (NR) { k = int((p * NR + 99) / 100); if (k < 1) k = 1; print v[k] } }'
}
