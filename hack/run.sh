#!/usr/bin/env bash
# The README's run command: installs and builds what is missing, then runs
# the daemon in the foreground with /etc/capsa/capsa.toml when present and
# built-in defaults otherwise. Extra arguments go to `capsa serve`.
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"

if [[ $(id -u) -ne 0 ]]; then
  echo "capsa runs containers and must run as root (try: sudo make run)" >&2
  exit 1
fi
bash hack/setup.sh
node dist/src/network/cni/install-default.js "$@" # default CNI network when the conf dir has none
# The memory settings of packaging/systemd/capsa.service.
MALLOC_ARENA_MAX=2 exec node --v8-pool-size=2 bin/capsa serve "$@"
