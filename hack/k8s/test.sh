#!/usr/bin/env bash
# The kubelet end-to-end suites (test/e2e, through kubectl) on a one-node
# cluster: builds the Kubernetes binaries and test images when missing
# (cached under /var/cache/capsa-k8s), runs the suites with the cluster
# brought up and torn down around them (jest.e2e.config.js), and stops the
# image registry. Extra arguments go to jest (e.g. -t 'exec').
#   CAPSA_E2E_KEEP=1 hack/k8s/test.sh    leave the cluster up afterwards
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
top=$(cd "$here/../.." && pwd)
cd "$top"
[ "$(id -u)" = 0 ] || { echo "hack/k8s/test.sh: must run as root" >&2; exit 1; }

t0=$(date +%s)
bash "$here/build.sh" >/dev/null
echo "k8s: binaries ready ($(($(date +%s) - t0)) s)"
# The registry is stopped afterwards only if this run started it, and not
# while a node e2e run (hack/k8s/node-e2e.sh, /run/capsa-node-e2e) pulls from it.
started_registry=0
# (the status read whole: grep -q ending the pipe early fails it under pipefail,
# and a registry running before was stopped afterwards)
grep -q '^registry: running' <<<"$(bash "$here/images.sh" status)" || started_registry=1
bash "$here/images.sh" start
bash "$here/images.sh" build
echo "k8s: images ready ($(($(date +%s) - t0)) s)"
stop_registry() {
  [ "$started_registry" = 1 ] && [ "${CAPSA_E2E_KEEP:-0}" != 1 ] && [ ! -e "${CAPSA_NODE_E2E_RUN:-/run/capsa-node-e2e}" ] &&
    bash "$here/images.sh" stop
  return 0
}
trap stop_registry EXIT
npx --no-install jest -c jest.e2e.config.js "$@"
echo "k8s: e2e done ($(($(date +%s) - t0)) s)"
