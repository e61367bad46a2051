#!/usr/bin/env bash
# The project's test command: set-up (with test dependencies), lint, format
# check, typecheck, the CRI API against upstream (hack/check-api.sh), the
# whole jest suite (unit + integration, as root), the unit tests and daemon
# smoke tests again on Node 24 (hack/test-node24.sh), critest v1.37.0
# (hack/critest/run.sh: builds critest from Go modules on first use, then
# about two minutes; CAPSA_SKIP_CRITEST=1 leaves it out), then the kubelet
# end-to-end suites on a one-node cluster (hack/k8s/test.sh; set
# CAPSA_SKIP_K8S=1 to leave them out of a local run).
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
if [[ "${CAPSA_SKIP_CRITEST:-0}" != 1 ]]; then
  echo "== critest v1.37.0"
  bash hack/critest/run.sh -v v1.37.0
fi
if [[ "${CAPSA_SKIP_K8S:-0}" != 1 ]]; then
  echo "== kubelet e2e"
  bash hack/k8s/test.sh
fi
