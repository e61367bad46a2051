#!/usr/bin/env bash
# The project's test command: set-up (with test dependencies), lint, format
# check, typecheck, the whole jest suite (unit + integration, as root), then
# the kubelet end-to-end suites on a one-node cluster (hack/k8s/test.sh; set
# CAPSA_SKIP_K8S=1 to leave them out of a local run).
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"

bash hack/setup.sh --test
echo "== lint"
npx --no-install eslint .
echo "== format"
npx --no-install prettier --check . --log-level warn
echo "== typecheck"
npx --no-install tsc -p tsconfig.json --noEmit
echo "== jest"
npx --no-install jest "$@"
if [[ "${CAPSA_SKIP_K8S:-0}" != 1 ]]; then
  echo "== kubelet e2e"
  bash hack/k8s/test.sh
fi
