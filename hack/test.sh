#!/usr/bin/env bash
# The project's test command: set-up (with test dependencies), lint, format
# check, typecheck and the whole jest suite (unit + integration, as root).
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
