#!/usr/bin/env bash
# The project's test command: set-up (with test dependencies), lint, format
# check, typecheck, the CRI API against upstream (hack/check-api.sh), the
# whole jest suite (unit + integration, as root), the unit tests and daemon
# smoke tests again on Node 24 (hack/test-node24.sh), the cgroup tests on a
# pure cgroup v2 host (hack/test-cgroup-v2.sh: a qemu VM under software
# emulation, ~5 minutes, at most 10; CAPSA_SKIP_CGROUP_V2=1 leaves it out),
# critest v1.37.0 (hack/critest/run.sh: builds critest from Go modules on
# first use, then about two minutes; CAPSA_SKIP_CRITEST=1 leaves it out),
# then the kubelet end-to-end suites on a one-node cluster (hack/k8s/test.sh;
# set CAPSA_SKIP_K8S=1 to leave them out of a local run), and the cluster
# again with kubelet --cgroup-driver=systemd under a real systemd
# (hack/sysd/k8s.sh, the systemd and resources suites: about two minutes, at
# most 10; CAPSA_SKIP_SYSD_K8S=1 leaves it out; `hack/sysd/k8s.sh test` runs
# every suite there, about six minutes).
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"

bash hack/setup.sh --test
echo "== lint"
npx --no-install eslint .
echo "== layers and import cycles"
npx --no-install depcruise src --config .dependency-cruiser.cjs
echo "== format"
npx --no-install prettier --check . --log-level warn
echo "== typecheck"
npx --no-install tsc -p tsconfig.json --noEmit
echo "== CRI API against k8s.io/cri-api"
bash hack/check-api.sh
echo "== jest"
npx --no-install jest "$@"
echo "== jest on Node 24: unit tests and daemon smoke tests (hack/test-node24.sh --all: the whole suite)"
bash hack/test-node24.sh
if [[ "${CAPSA_SKIP_CGROUP_V2:-0}" != 1 ]]; then
  echo "== cgroup v2 in a qemu VM (hack/test-cgroup-v2.sh; at most 10 minutes, CAPSA_SKIP_CGROUP_V2=1 leaves it out)"
  # timeout signals its whole process group: the VM (qemu) goes too.
  rc=0
  timeout --kill-after=15 600 bash hack/test-cgroup-v2.sh || rc=$?
  if ((rc == 124 || rc == 137)); then
    echo "hack/test.sh: the cgroup v2 VM job did not finish within 10 minutes" >&2
  elif ((rc == 99)); then
    echo "hack/test.sh: the cgroup v2 VM left no exit code (its console's tail is above)" >&2
  fi
  ((rc == 0)) || exit "$rc"
fi
if [[ "${CAPSA_SKIP_CRITEST:-0}" != 1 ]]; then
  echo "== critest v1.37.0"
  bash hack/critest/run.sh -v v1.37.0
fi
if [[ "${CAPSA_SKIP_K8S:-0}" != 1 ]]; then
  echo "== kubelet e2e"
  bash hack/k8s/test.sh
fi
if [[ "${CAPSA_SKIP_K8S:-0}" != 1 && "${CAPSA_SKIP_SYSD_K8S:-0}" != 1 ]]; then
  echo "== kubelet --cgroup-driver=systemd under a real systemd (hack/sysd/k8s.sh; at most 10 minutes, CAPSA_SKIP_SYSD_K8S=1 leaves it out)"
  rc=0
  timeout --kill-after=30 600 bash hack/sysd/k8s.sh test dist/test/e2e/systemd.test.js dist/test/e2e/resources.test.js || rc=$?
  if ((rc == 124 || rc == 137)); then
    echo "hack/test.sh: the systemd-driver cluster did not finish within 10 minutes" >&2
    bash hack/sysd/k8s.sh down || true # a timeout may have cut its own teardown short
  fi
  ((rc == 0)) || exit "$rc"
fi
