#!/usr/bin/env bash
# `make install` / `make uninstall`: capsa on a node the conventional way,
# from a built checkout (`make build`). Layout (PREFIX default /usr/local):
#   $PREFIX/lib/capsa/            the program: bin/capsa, dist/src, package.json,
#                                 the production node_modules, the native addon
#   $PREFIX/lib/capsa/bin/        capsa-monitor and capsa-pause beside bin/capsa
#   $PREFIX/bin/capsa             -> ../lib/capsa/bin/capsa
#   $SYSCONFDIR/capsa/capsa.toml  `capsa config default`, only if absent
#   $UNITDIR/capsa.service        packaging/systemd/capsa.service, ExecStart = $PREFIX/bin/capsa
#   $PREFIX/share/doc/capsa/      crictl.yaml example (also $SYSCONFDIR/crictl.yaml if absent),
#                                 prometheus/capsa-rules.yml (recording and alerting rules)
# Uninstall removes those (not the config) and never touches the state
# (/var/lib/capsa, /run/capsa) unless PURGE=1, which also removes the
# config, and refuses while a container's mounts are still there.
#
#   hack/install.sh install|uninstall
# Environment: PREFIX, DESTDIR (staging root, for packages), SYSCONFDIR
# (/etc), UNITDIR (/etc/systemd/system; /lib/systemd/system when PREFIX=/usr),
# CAPSA_INSTALL_CONFIG=0 / CAPSA_INSTALL_CRICTL=0 (packages write those in
# postinst), PURGE=1, CAPSA_ROOT (/var/lib/capsa), CAPSA_STATE (/run/capsa).
set -euo pipefail

top="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$top"

PREFIX="${PREFIX:-/usr/local}"
DESTDIR="${DESTDIR:-}"
SYSCONFDIR="${SYSCONFDIR:-/etc}"
if [[ -z "${UNITDIR:-}" ]]; then
  if [[ "$PREFIX" == /usr ]]; then UNITDIR=/lib/systemd/system; else UNITDIR=/etc/systemd/system; fi
fi
lib="$DESTDIR$PREFIX/lib/capsa"
bindir="$DESTDIR$PREFIX/bin"
docdir="$DESTDIR$PREFIX/share/doc/capsa"
unit="$DESTDIR$UNITDIR/capsa.service"
# Marks the files this script wrote, so uninstall removes only those.
MARK='# installed by capsa hack/install.sh'

die() {
  echo "install: $*" >&2
  exit 1
}

crictl_yaml() {
  cat <<'EOF'
# crictl talking to capsa (see capsa's README)
runtime-endpoint: unix:///run/capsa/capsa.sock
image-endpoint: unix:///run/capsa/capsa.sock
timeout: 30
EOF
}

# The production dependencies' directories, relative to the checkout (npm's own view of the tree).
prod_modules() {
  npm ls --omit=dev --all --parseable 2>/dev/null | sed -n "s|^$top/||p" | grep '^node_modules/' | sort -u |
    awk '{ for (i = 1; i <= n; i++) if (index($0, kept[i] "/") == 1) next; kept[++n] = $0; print }'
}

do_install() {
  for f in dist/src/cli.js native/build/Release/capsa_native.node native/build/capsa-monitor native/pinns/capsa-pause; do
    [[ -e "$f" ]] || die "$f is missing: build first (make build)"
  done
  command -v node >/dev/null || die "node is not on PATH"

  # The program goes in whole or not at all: staged beside, then swapped in
  # (a running daemon keeps the files it has open; a new one starts whole).
  local stage="$lib.new.$$"
  rm -rf "$stage"
  mkdir -p "$stage/bin" "$stage/dist" "$stage/native/build/Release"
  # shellcheck disable=SC2064 # expanded now: $stage is local, the trap may run after return
  trap "rm -rf '$stage' '$stage.files'" EXIT
  install -m 0644 package.json "$stage/package.json"
  install -m 0755 bin/capsa "$stage/bin/capsa"
  install -m 0755 native/build/capsa-monitor "$stage/bin/capsa-monitor"
  install -m 0755 native/pinns/capsa-pause "$stage/bin/capsa-pause"
  install -m 0644 native/build/Release/capsa_native.node "$stage/native/build/Release/capsa_native.node"
  # The compiled sources only: a .js left in dist/ by a source since removed stays out.
  (cd src && find . -name '*.ts' ! -name '*.d.ts' -printf 'src/%P\n') | sed 's/\.ts$/.js/' >"$stage.files"
  tar -C dist -cf - -T "$stage.files" | tar -C "$stage/dist" -xf -
  rm -f "$stage.files"
  local mods
  mods="$(prod_modules)"
  [[ -n "$mods" ]] || die "npm ls found no production dependencies (run npm install)"
  # shellcheck disable=SC2086
  tar -cf - $mods | tar -C "$stage" -xf -
  chmod -R u=rwX,go=rX "$stage"
  if [[ -e "$lib" ]]; then
    mv "$lib" "$lib.old.$$"
    mv "$stage" "$lib"
    rm -rf "$lib.old.$$"
  else
    mkdir -p "$(dirname "$lib")"
    mv "$stage" "$lib"
  fi
  trap - EXIT

  mkdir -p "$bindir"
  ln -sfn ../lib/capsa/bin/capsa "$bindir/capsa"

  # The unit, as shipped, with ExecStart pointing at this PREFIX.
  mkdir -p "$(dirname "$unit")"
  {
    echo "$MARK"
    sed -e "s|^ExecStart=.*/capsa serve|ExecStart=$PREFIX/bin/capsa serve|" packaging/systemd/capsa.service
  } >"$unit.tmp"
  grep -q "^ExecStart=$PREFIX/bin/capsa serve\$" "$unit.tmp" || die "packaging/systemd/capsa.service has no ExecStart=…/capsa serve line"
  chmod 0644 "$unit.tmp"
  mv "$unit.tmp" "$unit"

  mkdir -p "$docdir"
  crictl_yaml >"$docdir/crictl.yaml"
  install -m 0644 packaging/systemd/capsa.service "$docdir/capsa.service.orig"
  mkdir -p "$docdir/prometheus"
  install -m 0644 packaging/prometheus/capsa-rules.yml "$docdir/prometheus/capsa-rules.yml"
  chmod 0644 "$docdir/crictl.yaml"

  local conf="$DESTDIR$SYSCONFDIR/capsa/capsa.toml"
  if [[ "${CAPSA_INSTALL_CONFIG:-1}" == 1 ]]; then
    if [[ -e "$conf" ]]; then
      echo "install: $conf exists; left as it is (capsa config default shows every key)"
    else
      mkdir -p "$(dirname "$conf")"
      node "$lib/bin/capsa" config default >"$conf.tmp"
      chmod 0644 "$conf.tmp"
      mv "$conf.tmp" "$conf"
    fi
  fi
  local crictl="$DESTDIR$SYSCONFDIR/crictl.yaml"
  if [[ "${CAPSA_INSTALL_CRICTL:-1}" == 1 && ! -e "$crictl" ]]; then
    crictl_yaml >"$crictl"
    chmod 0644 "$crictl"
  fi

  if [[ -z "$DESTDIR" && -d /run/systemd/system ]]; then
    systemctl daemon-reload
  fi
  echo "install: capsa $(node "$lib/bin/capsa" version | awk '{print $2}') in $lib; $PREFIX/bin/capsa; unit $unit"
  if [[ -z "$DESTDIR" ]]; then
    echo "install: start it with 'systemctl enable --now capsa' (or '$PREFIX/bin/capsa serve' without systemd)"
  fi
}

# True when something is still mounted at or below $1.
mounted_below() {
  awk -v d="$1" '$5 == d || index($5, d "/") == 1 { found = 1 } END { exit !found }' /proc/self/mountinfo
}

do_uninstall() {
  if [[ -z "$DESTDIR" && -d /run/systemd/system ]] && systemctl is-enabled --quiet capsa.service 2>/dev/null; then
    # KillMode=process: stopping capsa stops the daemon only, containers keep running.
    systemctl disable --now capsa.service || true
  fi
  if [[ -f "$unit" ]] && head -n1 "$unit" | grep -qxF "$MARK"; then
    rm -f "$unit"
    [[ -z "$DESTDIR" && -d /run/systemd/system ]] && systemctl daemon-reload
  fi
  if [[ -L "$bindir/capsa" && "$(readlink "$bindir/capsa")" == ../lib/capsa/bin/capsa ]]; then
    rm -f "$bindir/capsa"
  fi
  rm -rf "$lib" "$docdir"
  local conf="$DESTDIR$SYSCONFDIR/capsa/capsa.toml"
  local crictl="$DESTDIR$SYSCONFDIR/crictl.yaml"
  if [[ "${PURGE:-0}" == 1 ]]; then
    local root="${CAPSA_ROOT:-/var/lib/capsa}" state="${CAPSA_STATE:-/run/capsa}"
    for d in "$DESTDIR$root" "$DESTDIR$state"; do
      if mounted_below "$d"; then
        die "PURGE: something is still mounted below $d (pods or containers left): remove them first (crictl rmp -fa), then run this again"
      fi
    done
    rm -f "$conf"
    rmdir "$(dirname "$conf")" 2>/dev/null || true
    if [[ -f "$crictl" ]] && cmp -s "$crictl" <(crictl_yaml); then rm -f "$crictl"; fi
    rm -rf "$DESTDIR$root" "$DESTDIR$state"
    echo "uninstall: removed capsa, its configuration and its state ($root, $state)"
  else
    echo "uninstall: removed capsa; kept ${conf} and the state (/var/lib/capsa): PURGE=1 removes them"
  fi
}

case "${1:-}" in
  install) do_install ;;
  uninstall) do_uninstall ;;
  *) die "usage: $0 install|uninstall" ;;
esac
