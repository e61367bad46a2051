#!/usr/bin/env bash
# Stops the cluster of hack/k8s/up.sh and leaves nothing behind: pods are
# removed through capsa (their containers, cgroups, netns, IPs, mounts), then
# kubelet's own leftovers (volume mounts, QoS cgroups, pod logs), the CNI
# bridge, and every process, file and directory the cluster made.
#   hack/k8s/down.sh           everything
#   hack/k8s/down.sh --keep-data   stop processes and pods, keep certs/etcd/images
set -uo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
[ "$(id -u)" = 0 ] || k8s_die "must run as root"
keep=0
[ "${1:-}" = --keep-data ] && keep=1

crictl() { "$K8S_BIN/crictl" --runtime-endpoint "unix://$CAPSA_SOCKET" --image-endpoint "unix://$CAPSA_SOCKET" --timeout 60s "$@"; }

# Let kubelet tear the pods down itself while it can (its volume mounts, log
# files and symlinks go with them): no controller to recreate them, static
# pod manifests removed, every pod deleted with a short grace period.
stop_bg kube-controller-manager TERM 20
rm -f "$K8S_DIR"/manifests/*
if running kubelet && running kube-apiserver; then
  kc delete pods --all --all-namespaces --grace-period=1 --wait=true --timeout=90s >/dev/null 2>&1 ||
    k8s_log "kubelet did not remove every pod in 90s; capsa removes the rest"
fi
stop_bg kubelet TERM 30
if running capsa || { [ -S "$CAPSA_SOCKET" ] && crictl version >/dev/null 2>&1; }; then
  if ! running capsa; then
    k8s_log "capsa not running: starting it to remove the pods"
    start_bg capsa "$CAPSA_TOP/bin/capsa serve" node "$CAPSA_TOP/bin/capsa" serve --config "$K8S_RUN/capsa.toml"
    wait_for 60 capsa crictl version || true
  fi
  pods=$(crictl pods -q 2>/dev/null || true)
  if [ -n "$pods" ]; then
    k8s_log "removing $(echo "$pods" | wc -l) pod(s) through capsa"
    # shellcheck disable=SC2086
    crictl stopp $pods >/dev/null 2>&1 || true
    # shellcheck disable=SC2086
    crictl rmp -f $pods >/dev/null || k8s_log "some pods could not be removed"
  fi
elif [ -f "$K8S_RUN/capsa.toml" ]; then
  k8s_log "capsa did not come up: its pods (if any) are left; see $K8S_LOGS/capsa.log"
fi
stop_bg capsa TERM 20
for c in kube-scheduler kube-controller-manager kube-apiserver etcd; do stop_bg "$c" TERM 20; done

# kubelet's volume mounts (tmpfs for secrets and tokens, emptyDir medium
# Memory, bind mounts of subPaths) under its root dir, deepest first.
if [ -d "$K8S_DIR/kubelet" ]; then
  # (kubelet also bind-mounts its root dir onto itself to make it shared)
  awk -v d="$K8S_DIR/kubelet" '$5 == d || index($5, d "/") == 1 { print $5 }' /proc/self/mountinfo | sort -r |
    while read -r m; do umount -l "$m" 2>/dev/null || k8s_log "cannot unmount $m"; done
fi
# QoS and pod cgroups kubelet made (kubepods under every v1 hierarchy, or v2).
# With the systemd driver they are kubelet's transient slices: stopped through
# systemd, which removes their cgroups (the v1 hierarchies systemd does not
# manage keep kubelet's own mkdirs: the loop below takes those).
if [ -d /run/systemd/system ] && systemctl list-units --all --plain --no-legend kubepods.slice 2>/dev/null | grep -q .; then
  systemctl stop kubepods.slice || k8s_log "systemctl stop kubepods.slice failed"
fi
for r in $(cgroup_root_dirs); do
  for h in "$r/kubepods" "$r/kubepods.slice"; do
    [ -d "$h" ] || continue
    find "$h" -depth -type d -exec rmdir {} \; 2>/dev/null
    [ -d "$h" ] && k8s_log "cgroup $h still has processes: $(find "$h" -name cgroup.procs -exec cat {} + 2>/dev/null | tr '\n' ' ')"
  done
  # a cgroup root of the cluster's own goes too
  [ "$CGROUP_ROOT" = / ] || rmdir "$r" 2>/dev/null || true
done
# The CNI bridge and the host-local leases (CNI DEL removed the veths and NAT rules).
ip link del "$CNI_BRIDGE" 2>/dev/null || true
rm -rf "$CNI_IPAM_DIR"
# kubelet's /var/log/containers symlinks into this cluster's pod logs.
find /var/log/containers -maxdepth 1 -type l -lname "$K8S_DIR/pod-logs/*" -delete 2>/dev/null
rm -rf "$K8S_DIR/pod-logs"

if [ $keep = 1 ]; then
  k8s_log "stopped; data kept in $K8S_DIR"
  exit 0
fi
rm -rf "$K8S_RUN" "$K8S_DIR/etcd" "$K8S_DIR/kubelet" "$K8S_DIR/manifests" "$K8S_DIR/pki"
# capsa's root: its images stay unless asked (re-pulling them is slow).
if [ "${CAPSA_K8S_WIPE_IMAGES:-0}" = 1 ]; then rm -rf "$CAPSA_ROOT"; fi
k8s_log "down"
