#!/usr/bin/env bash
# Stage 2 of sysd-ns.sh: PID 1 of the new namespaces. Builds a root for
# systemd (an overlay of the host's / with a tmpfs upper, fresh /proc, /dev,
# /run and /tmp, read-only /sys, the host's cgroup hierarchies as seen from
# the new cgroup namespace), a minimal unit set, then execs systemd.
set -euo pipefail
name=$1
state=/run/capsa-sysd/$name
s=$state/mnt
mkdir -p "$s"
mount -t tmpfs -o mode=755 capsa-sysd "$s"
mkdir -p "$s/upper" "$s/work" "$s/root"
mount -t overlay overlay -o "lowerdir=/,upperdir=$s/upper,workdir=$s/work" "$s/root"
r=$s/root
mount -t proc proc "$r/proc"
mount -t sysfs -o ro,nosuid,nodev,noexec sysfs "$r/sys"
if [ "$(stat -f -c %T /sys/fs/cgroup)" = cgroup2fs ]; then
  mount -t cgroup2 -o nosuid,nodev,noexec cgroup2 "$r/sys/fs/cgroup"
else
  # v1 or hybrid: the same hierarchies as the host, each showing the cgroup namespace's root.
  mount -t tmpfs -o mode=755,nosuid,nodev,noexec cgroup "$r/sys/fs/cgroup"
  for h in /sys/fs/cgroup/*; do
    n=${h##*/}
    mkdir -p "$r/sys/fs/cgroup/$n"
    if [ "$(stat -f -c %T "$h")" = cgroup2fs ]; then
      mount -t cgroup2 -o nosuid,nodev,noexec cgroup2 "$r/sys/fs/cgroup/$n"
    else
      opts=$(awk -v m="$h" '$2==m {print $4}' /proc/mounts | tr ',' '\n' |
        grep -vE '^(rw|ro|relatime|nosuid|nodev|noexec)$' | paste -sd,)
      case "$opts" in name=*) opts="none,$opts" ;; esac
      mount -t cgroup -o "nosuid,nodev,noexec,$opts" cgroup "$r/sys/fs/cgroup/$n"
    fi
  done
  # Read-only: systemd must not mount hierarchies the host lacks (they would be host-wide).
  mount -o remount,ro,bind "$r/sys/fs/cgroup" 2>/dev/null || true
fi
mount -t tmpfs -o mode=755,nosuid dev "$r/dev"
for d in null zero full random urandom tty; do
  touch "$r/dev/$d"
  mount --bind "/dev/$d" "$r/dev/$d"
done
mkdir -p "$r/dev/pts" "$r/dev/shm" "$r/dev/mqueue"
mount -t devpts -o newinstance,ptmxmode=0666,mode=620 devpts "$r/dev/pts"
ln -s pts/ptmx "$r/dev/ptmx"
mount -t tmpfs -o mode=1777 shm "$r/dev/shm"
ln -s /proc/self/fd "$r/dev/fd"
touch "$r/dev/console"
mount --bind /proc/self/fd/1 "$r/dev/console"
mount -t tmpfs -o mode=755,nosuid,nodev run "$r/run"
mount -t tmpfs -o mode=1777,nosuid,nodev tmp "$r/tmp"
while read -r d; do
  [ -n "$d" ] || continue
  mkdir -p "$r$d"
  mount --bind "$d" "$r$d"
done <"$state/share"
hostname "capsa-sysd-$name"

# Units: only what a runtime needs (no getty, logind, generators, sysinit services).
e=$r/etc/systemd/system
mkdir -p "$e/capsa-sysd.target.wants" "$r/etc/systemd/system-generators"
for g in /lib/systemd/system-generators/*; do ln -sf /dev/null "$r/etc/systemd/system-generators/${g##*/}"; done
for u in $(ls /lib/systemd/system/sysinit.target.wants /etc/systemd/system/sysinit.target.wants \
  /lib/systemd/system/sockets.target.wants /etc/systemd/system/multi-user.target.wants 2>/dev/null |
  grep -vE '^(dbus\.socket|.*:)?$') systemd-logind.service getty.target; do
  ln -sf /dev/null "$e/$u"
done
printf '[Unit]\nDescription=capsa systemd-driver tests\nDefaultDependencies=no\nAllowIsolate=yes\n' >"$e/capsa-sysd.target"
if [ "${SYSD_DBUS:-1}" = 1 ]; then
  mkdir -p "$e/dbus.socket.d" "$e/dbus.service.d"
  printf '[Unit]\nDefaultDependencies=no\n' >"$e/dbus.socket.d/nodeps.conf"
  printf '[Unit]\nDefaultDependencies=no\n' >"$e/dbus.service.d/nodeps.conf"
  ln -sf /lib/systemd/system/dbus.socket "$e/capsa-sysd.target.wants/dbus.socket"
else
  ln -sf /dev/null "$e/dbus.socket"
fi
ln -sf capsa-sysd.target "$e/default.target"
[ -s "$r/etc/machine-id" ] || systemd-id128 new >"$r/etc/machine-id"

# Wait until sysd-ns.sh moved our host-side parents out of systemd's root cgroups.
for _ in $(seq 1 500); do
  [ -e "$state/go" ] && break
  sleep 0.01
done
cd "$r"
pivot_root . .
umount -l .
cd /
export container=capsa-sysd
exec /lib/systemd/systemd --system --unit=capsa-sysd.target --log-target=console --log-level="${SYSD_LOG_LEVEL:-info}"
