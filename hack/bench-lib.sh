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

# ---------------------------------------------------------------- the peers
# The runtimes capsa is compared with (issue 12): containerd 1.6 + runc from
# Debian, and containerd 2.4 + runc 1.5 built from Go modules by
# hack/peers/build.sh. Runtime names: capsa, containerd (1.6), containerd2.
PEERS_BIN=${CAPSA_PEERS_CACHE:-/var/cache/capsa-peers}/bin
DEBIAN_BIN=/var/cache/capsa-bench/debian/usr/bin
CTD16_BIN='' RUNC16='' # set by find_peers

# find_peers: CTD16_BIN (the first containerd 1.6 on PATH, else the unpacked
# Debian packages in DEBIAN_BIN: apt-get download containerd runc; dpkg -x)
# and RUNC16 (runc next to it, else PATH's); empty when not found.
find_peers() {
  CTD16_BIN='' RUNC16=''
  if command -v containerd >/dev/null && containerd --version | grep -q ' 1\.6\.'; then
    CTD16_BIN=$(dirname "$(command -v containerd)")
  elif [[ -x $DEBIAN_BIN/containerd ]]; then
    CTD16_BIN=$DEBIAN_BIN
  fi
  RUNC16=$(command -v runc 2>/dev/null || true)
  [[ -n $CTD16_BIN && -x $CTD16_BIN/runc ]] && RUNC16=$CTD16_BIN/runc
  return 0
}

# select_runtimes LIST: RUNTIMES (capsa first, then the peers, in that order)
# from a comma-separated subset of capsa,containerd,containerd2, or when LIST
# is empty capsa and every peer found; PEERS = RUNTIMES without capsa. Dies
# when a named peer is missing. Call find_peers first.
select_runtimes() {
  local -A want=()
  local r rts=()
  if [[ -n $1 ]]; then
    IFS=, read -ra rts <<<"$1"
    for r in "${rts[@]}"; do
      case $r in
        capsa | containerd | containerd2) want[$r]=1 ;;
        *) echo "$BENCH: unknown runtime $r (capsa, containerd, containerd2)" >&2; exit 2 ;;
      esac
    done
  else
    want[capsa]=1
    [[ -n $CTD16_BIN ]] && want[containerd]=1
    [[ -x $PEERS_BIN/containerd ]] && want[containerd2]=1
  fi
  if [[ -n ${want[containerd]:-} ]]; then
    [[ -n $CTD16_BIN ]] || die "containerd 1.6 not found (apt-get install containerd runc; or dpkg -x them into ${DEBIAN_BIN%/usr/bin})"
    [[ -n $RUNC16 ]] || die "runc not found next to containerd 1.6 nor on PATH"
  fi
  if [[ -n ${want[containerd2]:-} ]]; then
    [[ -x $PEERS_BIN/containerd && -x $PEERS_BIN/runc && -x $PEERS_BIN/containerd-shim-runc-v2 ]] ||
      die "no containerd 2 in $PEERS_BIN (hack/peers/build.sh)"
  fi
  RUNTIMES=() PEERS=()
  for r in capsa containerd containerd2; do
    [[ -n ${want[$r]:-} ]] || continue
    RUNTIMES+=("$r")
    [[ $r == capsa ]] || PEERS+=("$r")
  done
}

# peer_bins RT: PEER_BIN (containerd's dir) and PEER_RUNC for containerd or containerd2.
peer_bins() {
  if [[ $1 == containerd ]]; then PEER_BIN=$CTD16_BIN PEER_RUNC=$RUNC16; else PEER_BIN=$PEERS_BIN PEER_RUNC=$PEERS_BIN/runc; fi
}

# runtime_label RT: "capsa", "containerd 1.6.20 + runc 1.1.5", "containerd 2.4.2 + runc 1.5.3".
runtime_label() {
  [[ $1 == capsa ]] && { echo capsa; return; }
  peer_bins "$1"
  echo "containerd $("$PEER_BIN/containerd" --version | awk '{ print $3 }' | cut -d~ -f1 | sed 's/^v//') + runc $("$PEER_RUNC" --version | awk 'NR == 1 { print $3 }' | cut -d+ -f1)"
}

# start_containerd RT DIR STATE CNI_CONF CNI_BIN LOG_LEVEL: containerd 1.6
# (RT containerd) or 2.x (containerd2) with a config of our own in DIR
# (write_containerd_config; its runc named in it, whatever PATH holds;
# registries: the caller's DIR/certs.d/*/hosts.toml), its output in
# $WORK/RT.log, socket DIR/containerd.sock; LAST_PID is the daemon. In a
# mount namespace of its own with a tmpfs on /run: containerd 1.6 puts its
# shims' sockets in /run/containerd/s whatever its config says, and 2.x its
# NRI socket in /var/run/nri; the host's (a node e2e run's containerd) stay
# untouched, and the namespace's mounts go with its last process. Its shim is
# found next to it (PATH). Mounts of ours made before (the state tmpfs) are
# seen inside.
start_containerd() {
  local rt=$1 dir=$2 state=$3 conf=$4 cbin=$5 level=$6
  peer_bins "$rt"
  write_containerd_config "$dir" "$conf" "$cbin" "$state"
  sed -i "s|^\(\s*\)Root = \(.*\)$|&\n\1BinaryName = \"$PEER_RUNC\"|" "$dir/config.toml"
  # shellcheck disable=SC2016 # expanded by that sh
  start "$rt" unshare --mount --propagation private -- sh -c \
    'mount -t tmpfs -o mode=0755 capsabench-run /run && PATH="$1:$PATH" exec "$1/containerd" --config "$2" --log-level "$3"' \
    sh "$PEER_BIN" "$dir/config.toml" "$level"
}

# containerd_registry DIR HOST [MIRROR]: DIR/certs.d/HOST/hosts.toml; with
# MIRROR (HOST:PORT, plain HTTP) HOST (e.g. registry.k8s.io) is pulled through
# it, else HOST itself is reached over plain HTTP (a loopback registry).
containerd_registry() {
  local dir=$1 host=$2 via=${3:-$2}
  mkdir -p "$dir/certs.d/$host"
  if [[ -n ${3:-} ]]; then
    printf 'server = "https://%s"\n[host."http://%s"]\n  capabilities = ["pull", "resolve"]\n' "$host" "$via" >"$dir/certs.d/$host/hosts.toml"
  else
    printf 'server = "http://%s"\n[host."http://%s"]\n  capabilities = ["pull", "resolve"]\n' "$host" "$host" >"$dir/certs.d/$host/hosts.toml"
  fi
}

# free_port: a free loopback TCP port.
free_port() { python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }

# serve_registry STORE NAME: docker-registry serving the image store STORE
# (read-only use: no upload purging) on a free loopback port; REGISTRY=HOST:PORT,
# LAST_PID the registry; output in $WORK/NAME.log.
serve_registry() {
  local store=$1 name=$2 i
  REGISTRY=127.0.0.1:$(free_port)
  printf 'version: 0.1\nlog:\n  level: warn\nstorage:\n  filesystem:\n    rootdirectory: %s\n  maintenance:\n    uploadpurging:\n      enabled: false\nhttp:\n  addr: %s\n' \
    "$store" "$REGISTRY" >"$WORK/$name.yml"
  start "$name" docker-registry serve "$WORK/$name.yml"
  for ((i = 0; i < 100; i++)); do
    curl -sf -m 2 "http://$REGISTRY/v2/" >/dev/null && return 0
    kill -0 "$LAST_PID" 2>/dev/null || break
    sleep 0.1
  done
  tail -5 "$WORK/$name.log" >&2
  die "docker-registry did not come up on $REGISTRY"
}

# f1 V / f2 V: V with 1 / 2 decimals ("-" when empty); ratio A B: "A/Bx" ("-" when either is missing).
f1() { awk -v v="$1" 'BEGIN { if (v == "") print "-"; else printf "%.1f", v }'; }
f2() { awk -v v="$1" 'BEGIN { if (v == "") print "-"; else printf "%.2f", v }'; }
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { if (a == "" || b == "" || b == 0) print "-"; else printf "%.2fx", a / b }'; }

# rotated I WORD...: the words rotated left by I mod their count (interleaving:
# run I starts with a different runtime).
rotated() {
  local i=$1
  shift
  local n=$# a=("$@") k
  for ((k = 0; k < n; k++)); do printf '%s\n' "${a[(i + k) % n]}"; done
}

# ---------------------------------------------------------------- capsa and our leftovers
# snapshot_capsa_build: capsa runs from a copy of its build taken now (JS,
# addon, capsa-monitor, capsa-pause) in $WORK/capsa-build (CAPSA_BUILD;
# CAPSA_MONITOR and CAPSA_PAUSE exported): a rebuild in the work tree during
# the run (node-gyp wipes native/build) can then neither break nor change it.
# Waits (2 min at most) until the artifacts exist and have not changed for
# 5 s. CAPSA_REV: the commit, and whether src/ or native/ differ from it.
snapshot_capsa_build() {
  local arts=(dist/src/cli.js native/build/Release/capsa_native.node native/build/capsa-monitor native/pinns/capsa-pause)
  local i a ok
  for ((i = 0; ; i++)); do
    ok=true
    for a in "${arts[@]}"; do
      if [[ ! -f $REPO/$a ]] || (($(date +%s) - $(stat -c %Y "$REPO/$a") < 5)); then ok=false; fi
    done
    $ok && break
    ((i < 120)) || die "capsa's build is incomplete or changing (${arts[*]}); run hack/setup.sh --test"
    ((i == 0)) && log "waiting for capsa's build to be complete and settled"
    sleep 1
  done
  CAPSA_BUILD=$WORK/capsa-build
  mkdir -p "$CAPSA_BUILD/native/build/Release" "$CAPSA_BUILD/native/pinns"
  cp -a "$REPO/bin" "$REPO/dist" "$REPO/package.json" "$CAPSA_BUILD/"
  cp -a "$REPO/native/build/Release/capsa_native.node" "$CAPSA_BUILD/native/build/Release/"
  cp -a "$REPO/native/build/capsa-monitor" "$CAPSA_BUILD/native/build/"
  cp -a "$REPO/native/pinns/capsa-pause" "$CAPSA_BUILD/native/pinns/"
  ln -s "$REPO/node_modules" "$CAPSA_BUILD/node_modules"
  export CAPSA_MONITOR=$CAPSA_BUILD/native/build/capsa-monitor CAPSA_PAUSE=$CAPSA_BUILD/native/pinns/capsa-pause
  CAPSA_REV=$(git -C "$REPO" rev-parse --short HEAD 2>/dev/null || echo '?')
  if [[ -n $(git -C "$REPO" status --porcelain -- src native 2>/dev/null) ]]; then
    CAPSA_REV+=" + uncommitted changes in src/ or native/"
  fi
}

# The functions below use the caller's WORK, CG_PARENT (the cgroup parent of
# its pods), CAPSA_CG_TAG (capsa's default parent /capsa/r-<tag> for its root)
# and CAPSA_CG_EXISTED (whether /capsa existed before the run).

# our_pids: processes whose command line names the temp dir (capsa-monitor and
# capsa-pause take their run/state dir as arguments, the shims our socket)
# plus every process in our cgroups (the containers' own processes).
our_pids() {
  local d cmd h f
  for d in /proc/[0-9]*; do
    [[ ${d#/proc/} == "$$" || ${d#/proc/} == "$BASHPID" ]] && continue
    cmd=$(tr '\0' ' ' 2>/dev/null <"$d/cmdline") || continue
    [[ $cmd == *"$WORK/"* ]] && echo "${d#/proc/}"
  done
  for h in /sys/fs/cgroup/*/; do
    [[ -d $h${CG_PARENT#/} ]] || continue
    find "$h${CG_PARENT#/}" -name cgroup.procs -print0 2>/dev/null | while IFS= read -r -d '' f; do cat "$f" 2>/dev/null; done
  done
}

# kill_our_pids [KEEP_PID]: SIGKILL to what our_pids finds (but KEEP_PID), up to 3 rounds.
kill_our_pids() {
  local i pid
  for ((i = 0; i < 3; i++)); do
    pid=$(our_pids | grep -vx "${1:-x}" || true)
    [[ -n $pid ]] || break
    # shellcheck disable=SC2086 # one pid per word
    kill -KILL $pid 2>/dev/null
    sleep 0.2
  done
  return 0
}

# remove_cgroups: our pods' cgroups (below CG_PARENT and capsa's default
# parent for our root), deepest first, retried for 5 s while they empty.
remove_cgroups() {
  local h i dirs=()
  for h in /sys/fs/cgroup/*/; do
    [[ -d $h${CG_PARENT#/} ]] && dirs+=("$h${CG_PARENT#/}")
    # capsa's default parent for a daemon with this root (pods with no cgroup_parent)
    [[ -d ${h}capsa/r-$CAPSA_CG_TAG ]] && dirs+=("${h}capsa/r-$CAPSA_CG_TAG")
  done
  for ((i = 0; i < 50 && ${#dirs[@]}; i++)); do
    local left=()
    for h in "${dirs[@]}"; do
      find "$h" -depth -type d -exec rmdir {} + 2>/dev/null || true
      [[ -d $h ]] && left+=("$h")
    done
    dirs=("${left[@]+"${left[@]}"}")
    ((${#dirs[@]})) && sleep 0.1
  done
  if [[ $CAPSA_CG_EXISTED == false ]]; then
    for h in /sys/fs/cgroup/*/capsa; do [[ -d $h ]] && rmdir "$h" 2>/dev/null; done
  fi
  return 0
}
