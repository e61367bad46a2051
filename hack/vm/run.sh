#!/usr/bin/env bash
# Boots Debian's kernel under qemu on a pure cgroup v2 host (no systemd;
# hack/vm/init.sh mounts cgroup2 and enables every controller; psi=1: pressure
# stall information on, whatever the kernel's default) and runs JOB
# there as root, then powers off. Exit code = JOB's (99: no result, e.g. a
# timeout; the console log says why).
#
#   hack/vm/run.sh JOB.sh [OUTDIR]
#
# The host / is the VM's root, read-only over 9p under a tmpfs overlay
# (writes stay in the VM); OUTDIR (default: a new temp dir, removed at the
# end unless given) is shared read-write as /mnt/out and also JOB's working
# directory. JOB gets CAPSA_VM=1 and CAPSA_VM_OUT=/mnt/out.
# Env: CAPSA_VM_DIR (assets, from hack/vm/build-assets.sh), CAPSA_VM_TIMEOUT
# (seconds, default 900), CAPSA_VM_MEM (MiB, default 3072), CAPSA_VM_CPUS
# (default: the host's, at most 4), CAPSA_VM_ACCEL (tcg, the default:
# software emulation, Node ~10x slower; or kvm where nested KVM works).
set -euo pipefail

if [ $# -lt 1 ] || [ $# -gt 2 ]; then
  echo "usage: $0 JOB.sh [OUTDIR]" >&2
  exit 2
fi
job="$1"
assets="${CAPSA_VM_DIR:-/var/tmp/capsa-vm-assets}"
if [ ! -f "$assets/initrd.cpio.gz" ] || [ ! -f "$assets/kernel/vmlinuz" ]; then
  echo "no VM assets in $assets: run hack/vm/build-assets.sh" >&2
  exit 2
fi
if [ $# -eq 2 ]; then
  out="$2"
  mkdir -p "$out"
  keep=1
else
  out="$(mktemp -d /tmp/capsa-vm.XXXXXX)"
  keep=0
fi
out="$(cd "$out" && pwd)"
qemu_pid=
tail_pid=
# shellcheck disable=SC2317 # called by the EXIT trap
cleanup() {
  if [ -n "$qemu_pid" ]; then kill "$qemu_pid" 2>/dev/null || true; fi
  if [ -n "$tail_pid" ]; then kill "$tail_pid" 2>/dev/null || true; fi
  if [ "$keep" = 0 ]; then rm -rf "$out"; fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM
rm -f "$out/job.rc" "$out/job.log" "$out/console.log"
cp "$job" "$out/job.sh"
: > "$out/job.log"

# TCG by default: on this workplace's machines /dev/kvm opens and creates VMs, but
# (nested) guests hang in early boot or die on an MSR; KVM is opt-in.
accel="${CAPSA_VM_ACCEL:-tcg}"
case "$accel" in
  kvm) accel_args=(-accel kvm -cpu host) ;;
  tcg) accel_args=(-accel "tcg,thread=multi" -cpu max) ;;
  *)
    echo "CAPSA_VM_ACCEL: kvm or tcg" >&2
    exit 2
    ;;
esac
cpus="${CAPSA_VM_CPUS:-$(nproc)}"
[ "$cpus" -le 4 ] || cpus=4

t0=$(date +%s)
timeout --kill-after=10 "${CAPSA_VM_TIMEOUT:-900}" qemu-system-x86_64 -machine q35 "${accel_args[@]}" \
  -smp "$cpus" -m "${CAPSA_VM_MEM:-3072}" -nographic -nodefaults -serial stdio -no-reboot -nic none \
  -kernel "$assets/kernel/vmlinuz" -initrd "$assets/initrd.cpio.gz" \
  -append "console=ttyS0 quiet panic=-1 cgroup_no_v1=all psi=1" \
  -virtfs "local,path=/,mount_tag=hostroot,security_model=passthrough,readonly=on,multidevs=remap" \
  -virtfs "local,path=$out,mount_tag=out,security_model=passthrough,multidevs=remap" \
  </dev/null >"$out/console.log" 2>&1 &
qemu_pid=$!
tail -n +1 -F "$out/job.log" 2>/dev/null &
tail_pid=$!
wait "$qemu_pid" || true
qemu_pid=
sleep 0.5
kill "$tail_pid" 2>/dev/null || true
wait "$tail_pid" 2>/dev/null || true
tail_pid=
echo "hack/vm: $accel VM ran $(($(date +%s) - t0)) s; out=$out" >&2
if [ ! -f "$out/job.rc" ]; then
  echo "hack/vm: JOB left no exit code; console:" >&2
  tail -n 60 "$out/console.log" >&2
  exit 99
fi
exit "$(cat "$out/job.rc")"
