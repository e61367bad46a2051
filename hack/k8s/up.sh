#!/usr/bin/env bash
# A one-node Kubernetes cluster on capsa, on this machine:
#   etcd + kube-apiserver (loopback and the node IP, certs made here),
#   kube-controller-manager, kube-scheduler, capsa on /run/capsa/capsa.sock
#   and a kubelet using it as its container runtime (cgroup driver from
#   capsa's RuntimeConfig, pod CIDR from the controller-manager, CNI through
#   capsa). Waits until the Node is Ready.
#
#   hack/k8s/up.sh            start whatever is not running (idempotent: after
#                             a crash of one component, up.sh starts it again)
#   hack/k8s/down.sh          stop everything and leave nothing behind
#
# Needs the binaries of hack/k8s/build.sh (built when missing) and the images
# of hack/k8s/images.sh (registry on $CAPSA_K8S_REGISTRY, default
# 127.0.0.1:5100). Settings (env): CAPSA_K8S_DIR (/var/lib/capsa-k8s),
# CAPSA_K8S_RUN (/run/capsa-k8s), CAPSA_K8S_NODE (capsa-node),
# CAPSA_K8S_KUBELET_ARGS (extra kubelet flags), CAPSA_K8S_FEATURE_GATES
# (kubelet feature gates, default PodAndContainerStatsFromCRI=true: kubelet's
# cAdvisor knows only containerd and CRI-O containers, so capsa gives kubelet
# its stats through the CRI; e.g. add EventedPLEG=true, or "" for kubelet's
# defaults), CAPSA_K8S_CAPSA_ARGS, CAPSA_K8S_CGROUP_DRIVER (capsa's
# cgroup_driver and kubelet's cgroupDriver; unset: capsa's default, which
# kubelet takes from its RuntimeConfig; "systemd" needs systemd as PID 1, see
# hack/sysd/k8s.sh).
#   export KUBECONFIG=/var/lib/capsa-k8s/pki/admin.kubeconfig
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

[ "$(id -u)" = 0 ] || k8s_die "must run as root"
[ -x "$K8S_BIN/kubelet" ] && [ -x "$K8S_BIN/etcd" ] || bash "$K8S_HERE/build.sh" >/dev/null
[ -f "$CAPSA_TOP/dist/src/cli.js" ] || bash "$CAPSA_TOP/hack/setup.sh"
mkdir -p "$K8S_DIR" "$K8S_RUN" "$K8S_LOGS" "$K8S_PIDS"
NODE_IP=$(node_ip)
[ -n "$NODE_IP" ] || k8s_die "no global IPv4 address on this machine (set CAPSA_K8S_NODE_IP)"

# ---- certificates (made once; kept until down.sh) -------------------------
PKI=$K8S_DIR/pki
mkcert() { # name CN O [SANs]
  local name=$1 cn=$2 org=$3 sans=${4:-} subj
  [ -f "$PKI/$name.crt" ] && return 0
  subj="/CN=$cn"
  [ -n "$org" ] && subj="/O=$org$subj"
  openssl req -new -newkey rsa:2048 -nodes -keyout "$PKI/$name.key" -subj "$subj" -out "$PKI/$name.csr" 2>/dev/null
  {
    echo "basicConstraints=CA:FALSE"
    echo "keyUsage=critical,digitalSignature,keyEncipherment"
    echo "extendedKeyUsage=serverAuth,clientAuth"
    [ -n "$sans" ] && echo "subjectAltName=$sans"
  } >"$PKI/$name.ext"
  openssl x509 -req -in "$PKI/$name.csr" -CA "$PKI/ca.crt" -CAkey "$PKI/ca.key" -CAcreateserial \
    -days 365 -sha256 -extfile "$PKI/$name.ext" -out "$PKI/$name.crt" 2>/dev/null
  rm -f "$PKI/$name.csr" "$PKI/$name.ext"
}
kubeconfig() { # name cert
  local f=$PKI/$1.kubeconfig
  [ -f "$f" ] && return 0
  cat >"$f" <<EOF
apiVersion: v1
kind: Config
clusters:
- name: capsa
  cluster:
    server: https://127.0.0.1:$APISERVER_PORT
    certificate-authority: $PKI/ca.crt
users:
- name: $1
  user:
    client-certificate: $PKI/$2.crt
    client-key: $PKI/$2.key
contexts:
- name: capsa
  context: {cluster: capsa, user: $1}
current-context: capsa
EOF
}
mkdir -p "$PKI"
chmod 700 "$PKI"
if [ ! -f "$PKI/ca.crt" ]; then
  k8s_log "making certificates in $PKI"
  openssl req -x509 -new -newkey rsa:2048 -nodes -keyout "$PKI/ca.key" -subj "/CN=capsa-k8s-ca" \
    -days 365 -sha256 -out "$PKI/ca.crt" 2>/dev/null
fi
svc_ip=$(echo "$SERVICE_CIDR" | awk -F'[./]' '{ print $1"."$2"."$3"."$4+1 }')
mkcert apiserver kube-apiserver "" \
  "DNS:localhost,DNS:kubernetes,DNS:kubernetes.default,DNS:kubernetes.default.svc,DNS:kubernetes.default.svc.cluster.local,IP:127.0.0.1,IP:$NODE_IP,IP:$svc_ip"
mkcert apiserver-kubelet-client kube-apiserver-kubelet-client system:masters
mkcert admin capsa-admin system:masters
mkcert controller-manager system:kube-controller-manager ""
mkcert scheduler system:kube-scheduler ""
mkcert kubelet "system:node:$NODE_NAME" system:nodes
[ -f "$PKI/sa.key" ] || {
  openssl genrsa -out "$PKI/sa.key" 2048 2>/dev/null
  openssl rsa -in "$PKI/sa.key" -pubout -out "$PKI/sa.pub" 2>/dev/null
}
kubeconfig admin admin
kubeconfig controller-manager controller-manager
kubeconfig scheduler scheduler
kubeconfig kubelet kubelet

# ---- etcd + kube-apiserver -------------------------------------------------
if ! running etcd; then
  k8s_log "starting etcd"
  start_bg etcd "$K8S_BIN/etcd" "$K8S_BIN/etcd" --name capsa --data-dir "$K8S_DIR/etcd" \
    --listen-client-urls "http://127.0.0.1:$ETCD_PORT" --advertise-client-urls "http://127.0.0.1:$ETCD_PORT" \
    --listen-peer-urls "http://127.0.0.1:$((ETCD_PORT + 1))" \
    --initial-advertise-peer-urls "http://127.0.0.1:$((ETCD_PORT + 1))" \
    --initial-cluster "capsa=http://127.0.0.1:$((ETCD_PORT + 1))" \
    --listen-metrics-urls "" --unsafe-no-fsync --quota-backend-bytes 2147483648
fi
wait_for 60 etcd curl -sf "http://127.0.0.1:$ETCD_PORT/health" || k8s_die "etcd: see $K8S_LOGS/etcd.log"

if ! running kube-apiserver; then
  k8s_log "starting kube-apiserver on $NODE_IP:$APISERVER_PORT"
  start_bg kube-apiserver "$K8S_BIN/kube-apiserver" "$K8S_BIN/kube-apiserver" \
    --etcd-servers "http://127.0.0.1:$ETCD_PORT" \
    --bind-address 0.0.0.0 --advertise-address "$NODE_IP" --secure-port "$APISERVER_PORT" \
    --tls-cert-file "$PKI/apiserver.crt" --tls-private-key-file "$PKI/apiserver.key" \
    --client-ca-file "$PKI/ca.crt" \
    --kubelet-client-certificate "$PKI/apiserver-kubelet-client.crt" \
    --kubelet-client-key "$PKI/apiserver-kubelet-client.key" \
    --kubelet-preferred-address-types InternalIP,Hostname \
    --service-account-issuer https://kubernetes.default.svc.cluster.local \
    --service-account-key-file "$PKI/sa.pub" --service-account-signing-key-file "$PKI/sa.key" \
    --service-cluster-ip-range "$SERVICE_CIDR" \
    --authorization-mode Node,RBAC --enable-admission-plugins NodeRestriction \
    --allow-privileged=true --profiling=false --v=1
fi
wait_for 120 kube-apiserver kc get --raw /readyz || k8s_die "kube-apiserver: see $K8S_LOGS/kube-apiserver.log"

if ! running kube-controller-manager; then
  k8s_log "starting kube-controller-manager"
  start_bg kube-controller-manager "$K8S_BIN/kube-controller-manager" "$K8S_BIN/kube-controller-manager" \
    --kubeconfig "$PKI/controller-manager.kubeconfig" \
    --authentication-kubeconfig "$PKI/controller-manager.kubeconfig" \
    --authorization-kubeconfig "$PKI/controller-manager.kubeconfig" \
    --bind-address 127.0.0.1 --leader-elect=false \
    --service-account-private-key-file "$PKI/sa.key" --root-ca-file "$PKI/ca.crt" \
    --use-service-account-credentials=true \
    --cluster-signing-cert-file "$PKI/ca.crt" --cluster-signing-key-file "$PKI/ca.key" \
    --allocate-node-cidrs=true --cluster-cidr "$CLUSTER_CIDR" --node-cidr-mask-size 24 \
    --service-cluster-ip-range "$SERVICE_CIDR" --v=1
fi
if ! running kube-scheduler; then
  k8s_log "starting kube-scheduler"
  start_bg kube-scheduler "$K8S_BIN/kube-scheduler" "$K8S_BIN/kube-scheduler" \
    --kubeconfig "$PKI/scheduler.kubeconfig" \
    --authentication-kubeconfig "$PKI/scheduler.kubeconfig" \
    --authorization-kubeconfig "$PKI/scheduler.kubeconfig" \
    --bind-address 127.0.0.1 --leader-elect=false --v=1
fi

# ---- capsa -----------------------------------------------------------------
# A CNI network of its own (bridge + host-local on the node's pod CIDR, which
# the controller-manager hands out as the first /24 of the cluster CIDR).
mkdir -p "$CNI_CONF_DIR" "$CNI_IPAM_DIR"
cat >"$CNI_CONF_DIR/10-capsa-k8s.conflist" <<EOF
{
  "cniVersion": "1.0.0",
  "name": "capsa-k8s",
  "plugins": [
    {
      "type": "bridge", "bridge": "$CNI_BRIDGE", "isGateway": true, "ipMasq": true, "hairpinMode": true,
      "ipam": {
        "type": "host-local", "dataDir": "$CNI_IPAM_DIR",
        "ranges": [[{ "subnet": "$POD_CIDR" }]], "routes": [{ "dst": "0.0.0.0/0" }]
      }
    },
    { "type": "portmap", "capabilities": { "portMappings": true } },
    { "type": "loopback" }
  ]
}
EOF
cat >"$K8S_RUN/capsa.toml" <<EOF
# written by hack/k8s/up.sh
root = "$CAPSA_ROOT"
state = "$CAPSA_STATE"
socket = "$CAPSA_SOCKET"
cni_conf_dir = "$CNI_CONF_DIR"
metrics_address = "127.0.0.1:9095"
log_level = "${CAPSA_K8S_LOG_LEVEL:-debug}"
sync_layers = false
${CAPSA_K8S_CGROUP_DRIVER:+cgroup_driver = \"$CAPSA_K8S_CGROUP_DRIVER\"}
[registries."registry.k8s.io"]
mirrors = ["http://$REGISTRY_ADDR"]
[registries."docker.io"]
mirrors = ["http://$REGISTRY_ADDR"]
[registries."gcr.io"]
mirrors = ["http://$REGISTRY_ADDR"]
[registries."$REGISTRY_ADDR"]
insecure = true
EOF
if ! running capsa; then
  [ -S "$CAPSA_SOCKET" ] && "$K8S_BIN/crictl" --runtime-endpoint "unix://$CAPSA_SOCKET" version >/dev/null 2>&1 &&
    k8s_die "another runtime already serves $CAPSA_SOCKET (not ours: stop it first)"
  k8s_log "starting capsa on $CAPSA_SOCKET"
  # shellcheck disable=SC2086
  start_bg capsa "$CAPSA_TOP/bin/capsa serve" node "$CAPSA_TOP/bin/capsa" serve --config "$K8S_RUN/capsa.toml" \
    ${CAPSA_K8S_CAPSA_ARGS:-}
fi
# a socket file alone may be a stale one of a capsa that was killed: ask it
capsa_serves() { "$K8S_BIN/crictl" --runtime-endpoint "unix://$CAPSA_SOCKET" --timeout 2s version; }
wait_for 60 capsa capsa_serves || k8s_die "capsa: see $K8S_LOGS/capsa.log"

# ---- kubelet ---------------------------------------------------------------
# kubelet >= 1.35 refuses cgroup v1 unless failCgroupV1 is false; on a v2 host
# the setting is ignored.
KUBELET_DIR=$K8S_DIR/kubelet
mkdir -p "$KUBELET_DIR" "$K8S_DIR/manifests"
gates=""
FEATURE_GATES=${CAPSA_K8S_FEATURE_GATES-PodAndContainerStatsFromCRI=true}
if [ -n "$FEATURE_GATES" ]; then
  gates="featureGates:"$'\n'
  IFS=, read -ra gl <<<"$FEATURE_GATES"
  for g in "${gl[@]}"; do gates+="  ${g%%=*}: ${g#*=}"$'\n'; done
fi
cat >"$K8S_RUN/kubelet.yaml" <<EOF
apiVersion: kubelet.config.k8s.io/v1beta1
kind: KubeletConfiguration
containerRuntimeEndpoint: unix://$CAPSA_SOCKET
imageServiceEndpoint: unix://$CAPSA_SOCKET
failCgroupV1: false
failSwapOn: false
authentication:
  anonymous: {enabled: false}
  webhook: {enabled: true}
  x509: {clientCAFile: $PKI/ca.crt}
authorization: {mode: Webhook}
staticPodPath: $K8S_DIR/manifests
fileCheckFrequency: 5s
syncFrequency: 10s
clusterDomain: cluster.local
resolvConf: /etc/resolv.conf
healthzBindAddress: 127.0.0.1
cgroupsPerQOS: true
cgroupRoot: $CGROUP_ROOT
port: $KUBELET_PORT
healthzPort: $KUBELET_HEALTHZ_PORT
readOnlyPort: 0
enforceNodeAllocatable: [pods]
serializeImagePulls: false
rotateCertificates: false
evictionHard: {memory.available: 100Mi, nodefs.available: 1%, imagefs.available: 1%, nodefs.inodesFree: 1%}
imageGCHighThresholdPercent: 100
imageGCLowThresholdPercent: 99
volumePluginDir: $KUBELET_DIR/volume-plugins
podLogsDir: $K8S_DIR/pod-logs
${CAPSA_K8S_CGROUP_DRIVER:+cgroupDriver: $CAPSA_K8S_CGROUP_DRIVER}
$gates
EOF
if ! running kubelet; then
  # Not even beside another cgroup root and other ports: kubelet keeps its
  # device plugin registration socket at /var/lib/kubelet/device-plugins
  # whatever its --root-dir, so the kubelet started last takes it over and the
  # other's device plugins (the node e2e Device Plugin specs) fail.
  other=$(pgrep -x kubelet | head -1 || true)
  [ -z "$other" ] ||
    k8s_die "another kubelet (pid $other) runs on this machine: both would serve /var/lib/kubelet/device-plugins/kubelet.sock (a fixed path); wait for it to end"
  if [ "$CGROUP_ROOT" != / ]; then
    for d in $(cgroup_root_dirs); do mkdir -p "$d"; done
  fi
  k8s_log "starting kubelet ($NODE_NAME, $NODE_IP)"
  # shellcheck disable=SC2086
  start_bg kubelet "$K8S_BIN/kubelet" "$K8S_BIN/kubelet" --config "$K8S_RUN/kubelet.yaml" \
    --kubeconfig "$PKI/kubelet.kubeconfig" --root-dir "$KUBELET_DIR" --cert-dir "$KUBELET_DIR/pki" \
    --hostname-override "$NODE_NAME" --node-ip "$NODE_IP" --v=${CAPSA_K8S_KUBELET_V:-2} ${CAPSA_K8S_KUBELET_ARGS:-}
fi
node_ready() {
  running kubelet || return 3
  [ "$(kc get node "$NODE_NAME" -o jsonpath='{.status.conditions[?(@.type=="Ready")].status}')" = True ]
}
wait_for 180 "node $NODE_NAME Ready" node_ready || k8s_die "node not Ready (kubelet $(running kubelet && echo running || echo exited)): see $K8S_LOGS/kubelet.log"
# pods need the default service account, made by the controller-manager
wait_for 60 "the default service account" kc get serviceaccount default -n default ||
  k8s_die "no default service account: see $K8S_LOGS/kube-controller-manager.log"
k8s_log "node $NODE_NAME Ready; export KUBECONFIG=$KUBECONFIG_ADMIN"
