#!/usr/bin/env bash
# A real systemd (Debian's /lib/systemd/systemd) as PID 1 of new PID, mount,
# cgroup, UTS and IPC namespaces, on an overlay of the host's /, for testing
# the systemd cgroup driver on hosts whose PID 1 is not systemd (CI, this VM).
# The network namespace is the host's (a test registry on 127.0.0.1 works).
#
#   sysd-ns.sh start NAME       prints the host pid of the namespace's PID 1 once
#                               systemd answers on its private bus
#   sysd-ns.sh exec NAME CMD... runs CMD inside, in the root cgroup of every
#                               hierarchy (v1), or a leaf of systemd's tree (v2)
#   sysd-ns.sh stop NAME        poweroff, SIGKILL if it hangs, remove the cgroups
#
# Env for start:
#   SYSD_DBUS=1 (default)  a dbus-daemon system bus inside (/run/dbus/system_bus_socket);
#                          0: only systemd's private socket /run/systemd/private
#   SYSD_SHARE="DIR ..."   host directories bind-mounted at the same path inside
#                          (a test's root, state and socket), read-write
#   SYSD_LOG_LEVEL         systemd's log level (info); its console is STATE/console.log
# Needs root, util-linux (unshare, nsenter, script) and the systemd and dbus packages.
set -euo pipefail
cmd=${1:-}
name=${2:-capsa-sysd}
[[ "$name" =~ ^[A-Za-z0-9_.-]+$ ]] || { echo "sysd-ns: bad name '$name'" >&2; exit 2; }
state=/run/capsa-sysd/$name
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)

# "mountpoint path" of every hierarchy this process is in.
own_cgroups() {
  local line id rest ctrls path mp
  while IFS= read -r line; do
    id=${line%%:*}; rest=${line#*:}; ctrls=${rest%%:*}; path=${rest#*:}
    if [ "$id" = 0 ]; then
      if [ -d /sys/fs/cgroup/unified ]; then mp=/sys/fs/cgroup/unified; else mp=/sys/fs/cgroup; fi
    else
      mp=/sys/fs/cgroup/${ctrls#name=}
    fi
    [ -d "$mp" ] && echo "$mp ${path%/}"
  done </proc/self/cgroup
}

# Breadth-first over the descendants of $1: the one whose last NSpid is 1
# (script may run its command through a shell, so the depth varies).
find_pid1() {
  local queue=("$1") p
  while [ ${#queue[@]} -gt 0 ]; do
    p=${queue[0]}
    queue=("${queue[@]:1}")
    if awk '/^NSpid:/ { exit !(NF > 2 && $NF == 1) }' "/proc/$p/status" 2>/dev/null; then
      echo "$p"
      return 0
    fi
    # shellcheck disable=SC2207 # pids: no spaces
    queue+=($(cat /proc/"$p"/task/*/children 2>/dev/null || true))
  done
  return 1
}

case "$cmd" in
start)
  [ ! -e "$state/pid" ] || { echo "sysd-ns: $name is running (stop it first)" >&2; exit 1; }
  mkdir -p "$state"
  : >"$state/cgroups"
  # A private cgroup in every hierarchy: systemd's root, removed by stop. Each
  # line of the state file: that cgroup, and the one to put our helpers back in.
  while read -r mp rel; do
    base="$mp$rel"
    if [ "$(stat -f -c %T "$mp")" = cgroup2fs ] && [ "$mp" = /sys/fs/cgroup ] && [ -n "$rel" ]; then
      # Pure v2: a cgroup with processes (ours) cannot give controllers to
      # children, so systemd's root is a sibling of it, under a parent that
      # passes every controller down (the root does; a parent with processes
      # of its own cannot and the v2 checks of the suite will say so).
      base="$mp${rel%/*}"
      for c in $(cat "$base/cgroup.controllers"); do
        echo "+$c" >"$base/cgroup.subtree_control" 2>/dev/null || true
      done
    fi
    d="$base/capsa-sysd-$name"
    mkdir -p "$d"
    echo "$d $mp$rel" >>"$state/cgroups"
    if [ "$(stat -f -c %T "$mp")" != cgroup2fs ] && [ -f "$d/cpuset.cpus" ] && [ -z "$(cat "$d/cpuset.cpus")" ]; then
      # v1 cpuset children start empty
      cat "$base/cpuset.cpus" >"$d/cpuset.cpus"
      cat "$base/cpuset.mems" >"$d/cpuset.mems"
    fi
  done < <(own_cgroups)
  printf '%s\n' ${SYSD_SHARE:-} >"$state/share"
  (
    while read -r d _; do echo "$BASHPID" >"$d/cgroup.procs"; done <"$state/cgroups"
    # script(1) gives systemd a pty for /dev/console, logged to console.log.
    exec setsid script -qfec "unshare --pid --fork --mount --cgroup --uts --ipc --propagation private $here/stage2.sh $name" \
      "$state/console.log" >/dev/null 2>&1 </dev/null
  ) &
  spid=$!
  pid1=''
  for _ in $(seq 1 200); do # the first descendant of script that is PID 1 of a new PID namespace
    pid1=$(find_pid1 "$spid" || true)
    [ -n "$pid1" ] && break
    sleep 0.05
  done
  [ -n "$pid1" ] || { echo "sysd-ns: no PID 1 appeared" >&2; exit 1; }
  echo "$pid1" >"$state/pid"
  # script, its shell and unshare stay host processes: out of systemd's root
  # cgroups before it starts (on v2 a process left there, invisible to
  # systemd, keeps it from passing controllers down).
  while read -r d orig; do
    for p in $(cat "$d/cgroup.procs"); do
      [ "$p" = "$pid1" ] || echo "$p" 2>/dev/null >"$orig/cgroup.procs" || true
    done
  done <"$state/cgroups"
  touch "$state/go"
  for _ in $(seq 1 600); do
    st=$(nsenter -t "$pid1" -m -p -C -u -i systemctl is-system-running 2>/dev/null || true)
    case "$st" in running | degraded)
      echo "$pid1"
      exit 0
      ;;
    esac
    [ -d /proc/"$pid1" ] || break
    sleep 0.05
  done
  echo "sysd-ns: systemd did not come up; console:" >&2
  cat "$state/console.log" >&2 || true
  exit 1
  ;;
exec)
  shift 2
  pid1=$(cat "$state/pid")
  if [ "$(stat -f -c %T /sys/fs/cgroup)" = cgroup2fs ]; then
    # v2: a leaf of systemd's tree, joined from out here (inside the cgroup
    # namespace a move from a cgroup outside it is refused, and the root
    # itself has controllers on: no processes allowed there).
    leaf="$(awk 'NR == 1 { print $1 }' "$state/cgroups")/capsa-sysd-exec"
    mkdir -p "$leaf"
    echo $$ >"$leaf/cgroup.procs"
    exec nsenter -t "$pid1" -m -p -C -u -i --wdns=/ -- "$@"
  fi
  # v1/hybrid: the root of every hierarchy, as a host daemon would be.
  exec nsenter -t "$pid1" -m -p -C -u -i --wdns=/ -- /bin/sh -c \
    'for f in /sys/fs/cgroup/*/cgroup.procs; do echo $$ >"$f"; done; exec "$@"' sh "$@"
  ;;
stop)
  pid1=$(cat "$state/pid" 2>/dev/null || true)
  if [ -n "$pid1" ] && [ -d /proc/"$pid1" ]; then
    kill -s SIGRTMIN+4 "$pid1" 2>/dev/null || true # poweroff.target
    for _ in $(seq 1 100); do [ -d /proc/"$pid1" ] || break; sleep 0.1; done
    kill -9 "$pid1" 2>/dev/null || true # takes the whole PID namespace with it
    for _ in $(seq 1 100); do [ -d /proc/"$pid1" ] || break; sleep 0.1; done
  fi
  rc=0
  if [ -f "$state/cgroups" ]; then
    while read -r d _; do
      [ -d "$d" ] && find "$d" -depth -type d -exec rmdir {} \; 2>/dev/null || true
      if [ -d "$d" ]; then echo "sysd-ns: could not remove $d" >&2; rc=1; fi
    done <"$state/cgroups"
  fi
  rm -rf "$state"
  exit $rc
  ;;
*)
  echo "usage: $0 start|exec|stop NAME [CMD...]" >&2
  exit 2
  ;;
esac
