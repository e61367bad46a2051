#!/usr/bin/env bash
# Runs the cgroup-focused integration tests on a real cgroup v2 host: a qemu
# VM (hack/vm/run.sh: Debian's kernel, pure cgroup v2, no systemd) whose
# root is this machine's / read-only plus a tmpfs overlay, against this
# repo's compiled dist/ (build first: bash hack/setup.sh, or npx tsc for TS
# changes). Exit code: jest's in the VM.
#
#   hack/test-cgroup-v2.sh [JEST ARGS...]
#
# Default selection: test/integration/cgroups-v2.test.ts (v2 files, limits,
# updates, stats, OOM, kill, cleanup) plus the tests of the pod and container
# suites that pass on either cgroup version (pod lifecycle; exit codes with
# OOMKilled; PID namespace modes); the others there read v1 paths. Extra
# arguments replace the selection (paths under dist/test).
# Software emulation: ~5 minutes; the VM gets at most CAPSA_VM_TIMEOUT
# seconds (default 540 here: the whole job stays within 10 minutes). The
# tests' hang-catching waits are CAPSA_TEST_SLOWDOWN times longer there
# (test/helpers/slowdown.ts; default 10 under emulation, 2 with KVM).
# Env: CAPSA_VM_* as in hack/vm/run.sh; CAPSA_VM_KEEP_OUT=DIR keeps the
# VM's console and job logs there.
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
images="${CAPSA_TEST_IMAGES_DIR:-/var/tmp/capsa-test-images}"
export CAPSA_VM_TIMEOUT="${CAPSA_VM_TIMEOUT:-540}"
if [ "${CAPSA_VM_ACCEL:-tcg}" = kvm ]; then slowdown="${CAPSA_TEST_SLOWDOWN:-2}"; else slowdown="${CAPSA_TEST_SLOWDOWN:-10}"; fi

[ -f dist/src/cli.js ] || {
  echo "no dist/: build first (npx tsc -p tsconfig.json)" >&2
  exit 2
}
bash hack/vm/build-assets.sh >/dev/null
# The test images are built here, where it is fast; the VM sees them read-only (+ overlay).
bash hack/make-test-images.sh "$images" >/dev/null

if [ $# -gt 0 ]; then
  jest_args=("$@")
else
  jest_args=(
    dist/test/integration/cgroups-v2.test.js
    dist/test/integration/pods.test.js dist/test/integration/containers.test.js
    -t 'cgroup v2|lifecycle: run, status|exit codes and reasons|PID namespace modes'
  )
fi

job="$(mktemp /tmp/capsa-cgv2-job.XXXXXX)"
# The VM mounts fresh tmpfs on /tmp, /run and /dev/shm, hiding the host's: a
# checkout there (a CI clone under /tmp) is shown to the VM through a bind
# mount of it under /var/tmp, which the VM sees through its 9p root.
vm_root=$root
src_bind=""
case "$root/" in
  /tmp/* | /run/* | /dev/shm/*)
    src_bind="$(mktemp -d /var/tmp/capsa-cgv2-src.XXXXXX)"
    mount --bind "$root" "$src_bind"
    vm_root=$src_bind
    ;;
esac
cleanup() {
  rm -f "$job"
  if [ -n "$src_bind" ]; then
    umount "$src_bind" 2>/dev/null || umount -l "$src_bind" 2>/dev/null || true
    rmdir "$src_bind" 2>/dev/null || true
  fi
}
trap cleanup EXIT
{
  echo 'set -eu'
  printf 'cd %q\n' "$vm_root"
  printf 'export CAPSA_TEST_IMAGES_DIR=%q CI=true CAPSA_TEST_SLOWDOWN=%q\n' "$images" "$slowdown"
  # shellcheck disable=SC2016 # expanded in the VM
  echo 'echo "== $(uname -r), cgroup2 controllers: $(cat /sys/fs/cgroup/cgroup.subtree_control)"'
  # The stats tests check pressure stall information: a kernel without it fails here, not by skipping them.
  echo '[ -r /proc/pressure/cpu ] || { echo "hack/test-cgroup-v2.sh: the VM kernel keeps no PSI (/proc/pressure)"; exit 1; }'
  # jest's default cache is under /tmp (a tmpfs in the VM); no watchman there.
  printf 'exec npx --no-install jest --ci --verbose --no-watchman --testTimeout=300000'
  printf ' %q' "${jest_args[@]}"
  echo
} >"$job"
bash hack/vm/run.sh "$job" ${CAPSA_VM_KEEP_OUT:+"$CAPSA_VM_KEEP_OUT"}
