#!/usr/bin/env bash
# The container images the kubectl end-to-end suite (test/e2e) and the node
# e2e [NodeConformance] specs of the Kubernetes release go.mod pins pull, built
# here without any container tooling and served by a loopback docker-registry
# under their upstream repository paths. capsa's registry mirror settings
# (`images.sh capsa-config`, hack/k8s/up.sh writes the same) then answer
# `registry.k8s.io/e2e-test-images/busybox:1.37.0-2` from it.
#
#   images.sh start          start docker-registry on $CAPSA_K8S_REGISTRY (default
#                            127.0.0.1:5100), storage and pidfile in $CAPSA_K8S_CACHE/registry;
#                            a registry this script started earlier is reused
#   images.sh build          start, then build what changed and push what the registry lacks
#   images.sh stop           stop the registry `start` started (by its pidfile)
#   images.sh status         the registry's pid and the references it serves
#   images.sh list           the references this script provides
#   images.sh capsa-config   capsa TOML: registry.k8s.io, docker.io and gcr.io mirrored to the registry
#
# Tags come from test/utils/image/manifest.go of the pinned k8s.io/kubernetes.
# Every reference is a one-entry (linux/amd64) Docker manifest list, as
# upstream's are multi-arch. The images are stand-ins assembled from this
# machine's Debian packages (glibc, not Alpine's musl) that keep what the specs
# rely on: commands, ports, users, files.
#   e2e-test-images/busybox      busybox 1.37.0 (the release the official image is), its defconfig,
#                                dynamic against glibc, every applet hardlinked in /bin (as the
#                                official image), CMD sh; see busybox_bin
#   e2e-test-images/agnhost      agnhost built from k8s.io/kubernetes/test/images/agnhost (static,
#                                main.Version = the tag) on the busybox layer, plus bash, curl, ip, ss,
#                                ipcs; /agnhost-2 symlink, /uploads, porter's localhost.{crt,key},
#                                user-defined-in-image (1000) in group-defined-in-image (50000),
#                                /var/registry holding pause:testing for `agnhost fake-registry-server`;
#                                ENTRYPOINT /agnhost, CMD pause
#   e2e-test-images/kitten, nautilus   agnhost + the picture and data.json, CMD test-webserver
#   e2e-test-images/nginx        Debian's nginx: port 80, pid /var/run/nginx.pid, worker user nginx,
#                                logs to stdout/stderr, CMD nginx -g 'daemon off;', STOPSIGNAL SIGQUIT
#   e2e-test-images/httpd        Debian's apache2 as /usr/local/apache2/bin/httpd (official httpd image
#                                layout): port 80, CMD httpd-foreground, STOPSIGNAL SIGWINCH
#                                (2.4.38-4 and 2.4.39-4: the last tags upstream published)
#   e2e-test-images/nonroot      busybox, USER 1234
#   e2e-test-images/nonewprivs   busybox + setuid-root /usr/local/bin/nnp built from
#                                k8s.io/kubernetes/test/images/nonewprivs, CMD nnp
#   e2e-test-images/ipc-utils    busybox + util-linux ipcs, ipcmk, ipcrm
#   e2e-test-images/glibc-dns-testing  busybox + Debian's hostname, dash as /bin/sh, bash, getent
#   pause                        build/pause/linux/pause.c of the pinned release, static;
#                                USER 65535:65535, ENTRYPOINT /pause
# Not provided (cannot be rebuilt faithfully offline, or no NodeConformance spec
# runs them): see hack/k8s/README.md.
#
# Idempotent: a build whose inputs (this script, the tools module, toolchain,
# installed packages, fetched .debs) match the last one and whose references the
# registry still holds returns in a second ($CAPSA_K8S_CACHE/images/built.key).
# Otherwise the Go programs are rebuilt only when go.mod/go.sum/tools.go change
# (stamp files next to them in $CAPSA_K8S_CACHE/bin), layers are cached by
# content (diff_id), Debian packages not installed here are fetched once
# (apt-get download) into $CAPSA_K8S_CACHE/images/debs, and a reference whose
# manifest list the registry already has is not pushed again. Layer tars are
# sorted, owned by numeric ids, dated $EPOCH and gzipped with -n, so digests
# repeat from run to run (and from machine to machine with the same packages).
# Needs (apt): docker-registry, skopeo, jq, curl, gcc + libc6-dev, make, bzip2, dpkg,
# util-linux, iproute2, bash, dash, hostname; Go for agnhost/nnp. Runs as root.
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
SELF=$HERE/$(basename "${BASH_SOURCE[0]}")
CACHE=${CAPSA_K8S_CACHE:-/var/cache/capsa-k8s}
BIN=$CACHE/bin
IMG=$CACHE/images
REGDIR=$CACHE/registry
REG=${CAPSA_K8S_REGISTRY:-127.0.0.1:5100}
EPOCH=1700000000             # every layer entry and config is dated here: reproducible digests
CREATED=2023-11-14T22:13:20Z # = $EPOCH
PATHS=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
T_LIST=application/vnd.docker.distribution.manifest.list.v2+json
T_MANIFEST=application/vnd.docker.distribution.manifest.v2+json
T_CONFIG=application/vnd.docker.container.image.v1+json
T_LAYER=application/vnd.docker.image.rootfs.diff.tar.gzip

log() { echo "[$(date +%T)] images: $*" >&2; }
die() {
  log "error: $*"
  exit 1
}
usage() {
  sed -n '/^#   images.sh start/,/^#   images.sh capsa-config/p' "$SELF" | sed 's/^# \{0,1\}//' >&2
  exit 2
}

# ---------------------------------------------------------------- registry
reg_pid() {
  local pid
  pid=$(cat "$REGDIR/registry.pid" 2>/dev/null) || return 1
  [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null || return 1
  # a recycled pid is not ours: it must still be docker-registry with our config
  tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null | grep -qF "docker-registry serve $REGDIR/config.yml" || return 1
  echo "$pid"
}
reg_up() { curl -sf -m 2 -o /dev/null "http://$REG/v2/"; }

cmd_start() {
  local pid i
  if pid=$(reg_pid); then
    reg_up || die "docker-registry $pid runs but http://$REG/v2/ does not answer (see $REGDIR/registry.log)"
    log "registry already running (pid $pid) on $REG"
    return 0
  fi
  command -v docker-registry >/dev/null || die "docker-registry not found (apt-get install docker-registry)"
  reg_up && die "something that is not our registry already answers on $REG: stop it or set CAPSA_K8S_REGISTRY"
  mkdir -p "$REGDIR/data"
  cat >"$REGDIR/config.yml" <<EOF
# written by hack/k8s/images.sh
version: 0.1
log:
  level: warn
  accesslog:
    disabled: true
storage:
  filesystem:
    rootdirectory: $REGDIR/data
  delete:
    enabled: true
http:
  addr: $REG
EOF
  # The pid is written by the process that becomes docker-registry: setsid forks
  # when its caller leads a process group, so $! is not always it. 9>&-: the
  # registry must not inherit the build lock.
  rm -f "$REGDIR/registry.pid"
  setsid sh -c 'echo $$ >"$1"; exec docker-registry serve "$2"' sh "$REGDIR/registry.pid" "$REGDIR/config.yml" \
    >>"$REGDIR/registry.log" 2>&1 </dev/null 9>&- &
  for ((i = 0; i < 100; i++)); do
    pid=$(cat "$REGDIR/registry.pid" 2>/dev/null || true)
    [ -n "$pid" ] && reg_up && break
    [ -n "$pid" ] && ! kill -0 "$pid" 2>/dev/null && die "docker-registry exited: $(tail -5 "$REGDIR/registry.log")"
    sleep 0.1
  done
  reg_up || die "docker-registry did not answer on $REG within 10s (see $REGDIR/registry.log)"
  log "registry started (pid $pid) on $REG, storage $REGDIR/data"
}

cmd_stop() {
  local pid i
  if ! pid=$(reg_pid); then
    rm -f "$REGDIR/registry.pid"
    log "registry not running"
    return 0
  fi
  kill -TERM "$pid"
  for ((i = 0; i < 100; i++)); do
    kill -0 "$pid" 2>/dev/null || break
    sleep 0.1
  done
  kill -0 "$pid" 2>/dev/null && kill -KILL "$pid"
  rm -f "$REGDIR/registry.pid"
  log "registry (pid $pid) stopped"
}

cmd_capsa_config() {
  cat <<EOF
# registry mirrors for the images of hack/k8s/images.sh (loopback, plain HTTP)
[registries."registry.k8s.io"]
mirrors = ["http://$REG"]
[registries."docker.io"]
mirrors = ["http://$REG"]
[registries."gcr.io"]
mirrors = ["http://$REG"]
[registries."$REG"]
insecure = true
EOF
}

# ---------------------------------------------------------------- what to build
K8S_VERSION=$(awk '$1 == "k8s.io/kubernetes" { print $2; exit }' "$HERE/go.mod")
k8s_src() {
  local d
  d="$(go env GOMODCACHE)/k8s.io/kubernetes@$K8S_VERSION"
  if [ ! -f "$d/test/utils/image/manifest.go" ]; then
    (cd "$HERE" && GOFLAGS=-mod=mod go mod download k8s.io/kubernetes) >&2
  fi
  [ -f "$d/test/utils/image/manifest.go" ] || die "k8s.io/kubernetes@$K8S_VERSION source not found in $d"
  echo "$d"
}
# tag_of ID: the version manifest.go gives image ID (configs[ID] = Config{registry, name, version})
tag_of() {
  local t
  t=$(sed -nE "s/^[[:space:]]*configs\[$1\] = Config\{[^,]+, \"[^\"]+\", \"([^\"]+)\"\}.*/\1/p" "$MANIFEST_GO")
  [ -n "$t" ] || die "no configs[$1] in $MANIFEST_GO"
  echo "$t"
}
# refs: "local-name repository:tag" lines (repositories under the registry root)
refs() {
  MANIFEST_GO=$(k8s_src)/test/utils/image/manifest.go
  local e=e2e-test-images
  cat <<EOF
pause pause:$(tag_of Pause)
busybox $e/busybox:$(tag_of BusyBox)
agnhost $e/agnhost:$(tag_of Agnhost)
kitten $e/kitten:$(tag_of Kitten)
nautilus $e/nautilus:$(tag_of Nautilus)
nginx $e/nginx:$(tag_of Nginx)
nginx $e/nginx:$(tag_of NginxNew)
httpd $e/httpd:2.4.38-4
httpd $e/httpd:2.4.39-4
nonroot $e/nonroot:$(tag_of NonRoot)
nonewprivs $e/nonewprivs:$(tag_of Nonewprivs)
ipc-utils $e/ipc-utils:$(tag_of IpcUtils)
glibc-dns-testing $e/glibc-dns-testing:$(tag_of GlibcDnsTesting)
EOF
}

cmd_list() { refs | awk '{ print "registry.k8s.io/" $2 }'; }

cmd_status() {
  local pid r
  if pid=$(reg_pid); then echo "registry: running, pid $pid, http://$REG, storage $REGDIR/data"; else
    echo "registry: not running"
    return 0
  fi
  while read -r _ r; do
    printf '%-60s %s\n' "registry.k8s.io/$r" "$(list_digest_in_registry "$r" || echo missing)"
  done < <(refs)
}

# ---------------------------------------------------------------- Go programs and pause
# gobuild NAME PACKAGE LDFLAGS: a static binary into $BIN/NAME unless its stamp (the
# tools module, the Go version, the package and flags) is current
gobuild() {
  local name=$1 pkg=$2 ldflags=$3 stamp
  stamp=$(cat "$HERE/go.mod" "$HERE/go.sum" "$HERE/tools.go" <(go version) <(echo "$pkg $ldflags") | sha256sum | cut -c1-16)
  if [ -x "$BIN/$name" ] && [ "$(cat "$BIN/.$name.stamp" 2>/dev/null)" = "$stamp" ]; then return 0; fi
  log "building $name from $pkg ($K8S_VERSION)"
  # upstream builds these with CGO_ENABLED=0 (image-util.sh); -p 1 and nice keep
  # the machine usable for whatever else runs on it
  (cd "$HERE" && CGO_ENABLED=0 GOFLAGS="-mod=mod -buildvcs=false" GOCACHE=${GOCACHE_K8S:-$CACHE/go-build} \
    nice -n 10 go build -p 1 -trimpath -ldflags "$ldflags" -o "$BIN/$name.new" "$pkg")
  mv "$BIN/$name.new" "$BIN/$name"
  echo "$stamp" >"$BIN/.$name.stamp"
}

# ---------------------------------------------------------------- Debian files
DEBS=$IMG/debs
installed() { [ "$(dpkg-query -W -f='${Status}' "$1" 2>/dev/null || true)" = "install ok installed" ]; }
# pkgroot PKG: / when PKG is installed here, else the unpacked .deb (fetched once)
pkgroot() {
  local pkg=$1 deb x
  if installed "$pkg"; then
    echo /
    return
  fi
  deb=$(find "$DEBS" -maxdepth 1 -name "${pkg}_*.deb" | sort | tail -1)
  if [ -z "$deb" ]; then
    log "fetching Debian package $pkg"
    # the sandbox user _apt cannot write into this root-owned directory
    (cd "$DEBS" && apt-get download -q -o APT::Sandbox::User=root "$pkg" >&2) ||
      die "apt-get download $pkg failed (apt-get update? a Debian mirror must be reachable once)"
    deb=$(find "$DEBS" -maxdepth 1 -name "${pkg}_*.deb" | sort | tail -1)
  fi
  x=$DEBS/x/$(basename "$deb" .deb)
  if [ ! -d "$x" ]; then
    rm -rf "$x.tmp"
    dpkg-deb -x "$deb" "$x.tmp"
    mv "$x.tmp" "$x"
  fi
  echo "$x"
}
# pkgver PKG: its Debian version without epoch and revision (1.22.1)
pkgver() {
  local v
  if installed "$1"; then v=$(dpkg-query -W -f='${Version}' "$1"); else
    v=$(dpkg-deb -f "$(find "$DEBS" -maxdepth 1 -name "${1}_*.deb" | sort | tail -1)" Version)
  fi
  v=${v#*:}
  echo "${v%%-*}"
}
# pkgfile PKG PATH: the file PATH of package PKG (the installed one or the unpacked .deb's)
pkgfile() {
  local r
  r=$(pkgroot "$1")
  r=${r%/}
  [ -e "$r$2" ] || die "package $1 has no $2"
  echo "$r$2"
}
# put ROOT SRC DEST [MODE]: copy SRC (dereferenced) to ROOT/DEST and the libraries it needs
put() {
  local root=$1 src=$2 dst=$3 mode=${4:-0755}
  mkdir -p "$root$(dirname "$dst")"
  install -m "$mode" "$src" "$root$dst"
  libs "$root" "$src"
}
# libs ROOT ELF...: the shared libraries and loader each ELF needs, at the paths ldd
# reports (the unpacked .debs' files at their package paths); what the busybox
# layer already holds is not copied again
libs() {
  local root=$1 f out lib dst deblibs
  shift
  deblibs=$(find "$DEBS/x" -mindepth 3 -maxdepth 4 -type d -path '*lib/x86_64-linux-gnu' 2>/dev/null | sort | paste -sd:)
  for f in "$@"; do
    out=$(LD_LIBRARY_PATH=$deblibs ldd "$f" 2>&1 || true)
    case $out in *"not a dynamic executable"* | *"statically linked"*) continue ;; esac
    if [[ $out == *"not found"* ]]; then
      die "$f needs libraries neither installed nor fetched: $(grep 'not found' <<<"$out" | tr -s ' \t' ' ')"
    fi
    while read -r lib; do
      [ -n "$lib" ] || continue
      dst=$(sed -E "s#^$DEBS/x/[^/]+##" <<<"$lib")
      [ -e "$root$dst" ] && continue
      [ "$root" != "$BASE_ROOT" ] && cmp -s "$lib" "$BASE_ROOT$dst" && continue
      mkdir -p "$root$(dirname "$dst")"
      cp -L "$lib" "$root$dst"
    done < <(awk '/=>/ { print $3 } /ld-linux/ && !/=>/ { print $1 }' <<<"$out")
  done
}

# ---------------------------------------------------------------- layers, images, references
# mktar DIR OUT: a reproducible tar of DIR's contents (sorted, parents first, numeric
# owners as on disk, mtime $EPOCH, no atime/ctime); hardlinks inside DIR stay links
mktar() {
  (cd "$1" && find . -mindepth 1 -printf '%P\n' | LC_ALL=C sort |
    tar --no-recursion --verbatim-files-from -T - --numeric-owner --format=pax \
      --pax-option=delete=atime,delete=ctime --mtime=@$EPOCH -cf "$2")
}
# blob FILE: move FILE into the blob store, print "digest size"
blob() {
  local h s
  h=$(sha256sum "$1" | cut -c1-64)
  s=$(stat -c %s "$1")
  if [ -f "$IMG/blobs/$h" ]; then rm -f "$1"; else mv "$1" "$IMG/blobs/$h"; fi
  echo "sha256:$h $s"
}
# layer DIR: print "digest size diff_id" of DIR as a layer; cached by diff_id, so an
# unchanged directory is not compressed again
layer() {
  local dir=$1 tar=$WORK/layer.tar id desc
  mktar "$dir" "$tar"
  id=$(sha256sum "$tar" | cut -c1-64)
  desc=$IMG/layers/$id
  if [ -f "$desc" ] && [ -f "$IMG/blobs/$(cut -c8-71 "$desc")" ]; then
    rm -f "$tar"
  else
    gzip -n -6 <"$tar" >"$tar.gz"
    rm -f "$tar"
    echo "$(blob "$tar.gz") sha256:$id" >"$desc"
  fi
  cat "$desc"
}

# image NAME CONFIG_JSON LAYERDESC...: record image NAME (its config fields and
# layers, as "digest size diff_id"); refs of NAME are written by emit
declare -A IMAGE_CONFIG IMAGE_LAYERS
image() {
  local name=$1 cfg=$2
  shift 2
  IMAGE_CONFIG[$name]=$cfg
  IMAGE_LAYERS[$name]=$(printf '%s\n' "$@")
}
# emit NAME REPO:TAG: write reference REPO:TAG of image NAME to $IMG/refs/REPO/TAG
# (skopeo dir: layout of the platform manifest + list.json), print the list's digest
emit() {
  local name=$1 ref=$2 out=$IMG/refs/${2%:*}/${2##*:} tmp cfgd mfd layers
  layers=$(jq -Rn '[inputs | split(" ") | {digest: .[0], size: (.[1] | tonumber), diff_id: .[2]}]' <<<"${IMAGE_LAYERS[$name]}")
  tmp=$WORK/emit
  rm -rf "$tmp"
  mkdir -p "$tmp"
  # the upstream reference in a label gives each tag its own image ID, as upstream's
  # distinct tags have
  jq -cn --arg created "$CREATED" --arg ref "registry.k8s.io/$ref" --argjson cfg "${IMAGE_CONFIG[$name]}" \
    --argjson layers "$layers" '{
      architecture: "amd64", os: "linux", created: $created,
      config: ($cfg + {Labels: (($cfg.Labels // {}) + {"dev.capsa.stand-in-for": $ref})}),
      rootfs: {type: "layers", diff_ids: [$layers[].diff_id]},
      history: [$layers[] | {created: $created, created_by: "hack/k8s/images.sh"}]}' >"$tmp/config.json"
  cfgd=$(blob "$tmp/config.json")
  jq -cn --arg tm "$T_MANIFEST" --arg tc "$T_CONFIG" --arg tl "$T_LAYER" --arg cd "${cfgd% *}" \
    --argjson cs "${cfgd#* }" --argjson layers "$layers" '{schemaVersion: 2, mediaType: $tm,
      config: {mediaType: $tc, size: $cs, digest: $cd},
      layers: [$layers[] | {mediaType: $tl, size: .size, digest: .digest}]}' | tr -d '\n' >"$tmp/manifest.json"
  mfd="sha256:$(sha256sum "$tmp/manifest.json" | cut -c1-64) $(stat -c %s "$tmp/manifest.json")"
  jq -cn --arg tl "$T_LIST" --arg tm "$T_MANIFEST" --arg d "${mfd% *}" --argjson s "${mfd#* }" \
    '{schemaVersion: 2, mediaType: $tl, manifests: [{mediaType: $tm, size: $s, digest: $d,
      platform: {architecture: "amd64", os: "linux"}}]}' | tr -d '\n' >"$tmp/list.json"
  if ! cmp -s "$tmp/list.json" "$out/list.json" || ! cmp -s "$tmp/manifest.json" "$out/manifest.json"; then
    rm -rf "$out" "$out.tmp"
    mkdir -p "$out.tmp"
    mv "$tmp/manifest.json" "$tmp/list.json" "$out.tmp/"
    printf 'Directory Transport Version: 1.1\n' >"$out.tmp/version"
    for d in "${cfgd% *}" $(jq -r '.[].digest' <<<"$layers"); do ln -f "$IMG/blobs/${d#sha256:}" "$out.tmp/${d#sha256:}"; done
    mv "$out.tmp" "$out"
  fi
  echo "sha256:$(sha256sum "$out/list.json" | cut -c1-64)"
}

list_digest_in_registry() {
  curl -sf -m 10 -I -H "Accept: $T_LIST" "http://$REG/v2/${1%:*}/manifests/${1##*:}" |
    tr -d '\r' | awk 'tolower($1) == "docker-content-digest:" { print $2 }' | grep .
}
# push REPO:TAG DIGEST: the platform manifest (skopeo), then the list under the tag
push() {
  local ref=$1 want=$2 dir=$IMG/refs/${1%:*}/${1##*:} got
  [ "$(list_digest_in_registry "$ref" || true)" = "$want" ] && return 0
  log "pushing $ref"
  skopeo copy -q --dest-tls-verify=false --preserve-digests "dir:$dir" "docker://$REG/$ref"
  got=$(curl -sf -m 30 -X PUT -H "Content-Type: $T_LIST" --data-binary @"$dir/list.json" -D - -o /dev/null \
    "http://$REG/v2/${ref%:*}/manifests/${ref##*:}" | tr -d '\r' |
    awk 'tolower($1) == "docker-content-digest:" { print $2 }') || die "PUT of the manifest list of $ref failed"
  [ "$got" = "$want" ] || die "registry stored the list of $ref as $got, expected $want"
}

# ---------------------------------------------------------------- root filesystems
passwd_base() {
  cat <<'EOF'
root:x:0:0:root:/root:/bin/sh
daemon:x:1:1:daemon:/usr/sbin:/bin/false
bin:x:2:2:bin:/bin:/bin/false
sys:x:3:3:sys:/dev:/bin/false
sync:x:4:100:sync:/bin:/bin/sync
mail:x:8:8:mail:/var/spool/mail:/bin/false
www-data:x:33:33:www-data:/var/www:/bin/false
operator:x:37:37:Operator:/var:/bin/false
nobody:x:65534:65534:nobody:/home:/bin/false
EOF
}
group_base() {
  local g
  for g in root:0: daemon:1: bin:2: sys:3: adm:4: tty:5: disk:6: lp:7: mail:8: kmem:9: wheel:10:root \
    cdrom:11: dialout:18: floppy:19: video:28: audio:29: tape:32: www-data:33: operator:37: utmp:43: \
    plugdev:46: staff:50: lock:54: netdev:82: users:100: nogroup:65534:; do
    echo "${g%%:*}:x:${g#*:}"
  done
}
# accounts ROOT [PASSWD-LINES] [GROUP-LINES]: /etc/passwd, group, shadow of the busybox image plus extras
accounts() {
  local r=$1
  mkdir -p "$r/etc"
  { passwd_base; [ -z "${2:-}" ] || echo "$2"; } >"$r/etc/passwd"
  { group_base; [ -z "${3:-}" ] || echo "$3"; } >"$r/etc/group"
  sed -E 's/^([^:]*):.*/\1:*:19000:0:99999:7:::/' "$r/etc/passwd" >"$r/etc/shadow"
  chmod 0640 "$r/etc/shadow"
}

# busybox_bin: the busybox of every image, built once into $BIN. The official
# image is the upstream release built with its defconfig; Debian 12's busybox
# (1.35, Debian's config) is not that: it lacks applets specs run (nmeter,
# which the container lifecycle specs time their log lines with), its ash drops
# environment variables whose names are not identifiers (the envFrom specs
# print `data-1=value-1`) and its `wget -T` crashes. The release tarball comes
# from Debian's source package of it, through apt with a private source list
# and state (the machine's apt configuration is not touched), and must match
# the sha256 pinned here. Dynamic against glibc (the official image is static):
# the base layer's libc serves the programs the other images add.
BUSYBOX_VERSION=1.37.0
BUSYBOX_SUITE=trixie
BUSYBOX_ORIG_SHA256=3311dff32e746499f4df0d5df04d7eb396382d7e108bb9250e7b519b837043a4
busybox_bin() {
  local out=$BIN/busybox-$BUSYBOX_VERSION src=$IMG/src apt=$IMG/apt tb stamp v mirror b
  tb=$src/busybox_$BUSYBOX_VERSION.orig.tar.bz2
  stamp="$BUSYBOX_ORIG_SHA256 $(gcc --version | head -1)"
  if [ -x "$out" ] && [ "$(cat "$BIN/.busybox.stamp" 2>/dev/null)" = "$stamp" ]; then
    echo "$out"
    return
  fi
  if ! echo "$BUSYBOX_ORIG_SHA256  $tb" | sha256sum -c --status 2>/dev/null; then
    log "fetching the busybox $BUSYBOX_VERSION release (Debian $BUSYBOX_SUITE source package)"
    mirror=$(awk '$1 == "URIs:" { print $2; exit }' /etc/apt/sources.list.d/debian.sources 2>/dev/null)
    mkdir -p "$apt/lists/partial" "$apt/cache" "$src"
    echo "deb-src ${mirror:-http://deb.debian.org/debian} $BUSYBOX_SUITE main" >"$apt/sources.list"
    local o=(-q -o Dir::Etc::SourceList="$apt/sources.list" -o Dir::Etc::SourceParts=/nonexistent
      -o Dir::State::Lists="$apt/lists" -o Dir::Cache="$apt/cache" -o APT::Sandbox::User=root)
    apt-get "${o[@]}" update >&2 || die "apt-get update of $apt/sources.list failed"
    v=$(apt-cache "${o[@]}" showsrc busybox | awk '$1 == "Version:" { print $2 }' | grep -F ":$BUSYBOX_VERSION-" | head -1)
    [ -n "$v" ] || die "Debian $BUSYBOX_SUITE has no busybox $BUSYBOX_VERSION source package"
    (cd "$src" && apt-get "${o[@]}" source --download-only "busybox=$v" >&2) || die "apt-get source busybox=$v failed"
    echo "$BUSYBOX_ORIG_SHA256  $tb" | sha256sum -c --status || die "$tb does not have the pinned sha256"
  fi
  log "building busybox $BUSYBOX_VERSION (defconfig)"
  b=$WORK/busybox-src
  rm -rf "$b"
  mkdir -p "$b"
  tar -xjf "$tb" -C "$b" --strip-components=1
  (cd "$b" && make -s defconfig >/dev/null && nice -n 10 make -s -j1 busybox >&2) || die "busybox build failed"
  install -m 0755 "$b/busybox" "$out"
  echo "$stamp" >"$BIN/.busybox.stamp"
  rm -rf "$b"
  echo "$out"
}

build_base() {
  local r=$BASE_ROOT bb a
  bb=$(busybox_bin)
  mkdir -p "$r"/{bin,dev,etc,home,proc,root,sys,tmp,usr/bin,usr/sbin,var/spool/mail,var/www}
  chmod 1777 "$r/tmp"
  chmod 0700 "$r/root"
  put "$r" "$bb" /bin/busybox
  # glibc dlopens libgcc_s for pthread_exit and cancellation (threaded httpd, curl)
  put "$r" "$(pkgfile libgcc-s1 /lib/x86_64-linux-gnu/libgcc_s.so.1)" /lib/x86_64-linux-gnu/libgcc_s.so.1 0644
  # hardlinks, as the official image has: a masked /bin/<applet> symlink would mask busybox itself
  for a in $("$bb" --list); do [ -e "$r/bin/$a" ] || ln "$r/bin/busybox" "$r/bin/$a"; done
  accounts "$r"
  printf 'passwd: files\ngroup: files\nshadow: files\nhosts: files dns\nnetworks: files\n' >"$r/etc/nsswitch.conf"
  printf '127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n' >"$r/etc/hosts"
  BASE_LAYER=$(layer "$r")
  BASE_CFG=$(jq -cn --arg p "PATH=$PATHS" '{Env: [$p], Cmd: ["sh"]}')
  image busybox "$BASE_CFG" "$BASE_LAYER"
  image nonroot "$(jq -c '. + {User: "1234", Cmd: ["/bin/sh"]}' <<<"$BASE_CFG")" "$BASE_LAYER"
}

build_pause() {
  local r=$WORK/pause src=$K8S_SRC/build/pause/linux/pause.c tag
  tag=$(tag_of Pause)
  mkdir -p "$r"
  # as build/pause/Makefile (CFLAGS), from scratch: just /pause
  gcc -Os -Wall -Werror -static -DVERSION="v$tag-$K8S_VERSION" -o "$WORK/pause.bin" "$src"
  strip "$WORK/pause.bin"
  install -m 0755 "$WORK/pause.bin" "$r/pause"
  image pause "$(jq -cn --arg p "PATH=$PATHS" '{Env: [$p], User: "65535:65535", Entrypoint: ["/pause"]}')" "$(layer "$r")"
}

build_nonewprivs() {
  local r=$WORK/nnp
  gobuild nnp k8s.io/kubernetes/test/images/nonewprivs "-w"
  mkdir -p "$r/usr/local/bin"
  install -m 4755 -o 0 -g 0 "$BIN/nnp" "$r/usr/local/bin/nnp"
  image nonewprivs "$(jq -c '. + {Cmd: ["nnp"]}' <<<"$BASE_CFG")" "$BASE_LAYER" "$(layer "$r")"
}

build_ipc_utils() {
  local r=$WORK/ipc f
  for f in ipcs ipcmk ipcrm; do put "$r" "$(pkgfile util-linux /usr/bin/$f)" /usr/bin/$f; done
  image ipc-utils "$(jq -c '. + {Cmd: ["/bin/sh"]}' <<<"$BASE_CFG")" "$BASE_LAYER" "$(layer "$r")"
}

# debian:bookworm-slim + dnsutils upstream: the specs run `hostname` / `hostname -f`,
# which must be glibc's resolution through /etc/hosts (Debian's hostname, not busybox's)
build_glibc_dns() {
  local r=$WORK/glibc-dns
  put "$r" "$(pkgfile hostname /bin/hostname)" /bin/hostname
  put "$r" "$(pkgfile dash /bin/dash)" /bin/dash
  ln -sf dash "$r/bin/sh"
  put "$r" "$(pkgfile bash /bin/bash)" /bin/bash
  put "$r" "$(pkgfile libc-bin /usr/bin/getent)" /usr/bin/getent
  image glibc-dns-testing "$(jq -c '. + {Cmd: ["bash"]}' <<<"$BASE_CFG")" "$BASE_LAYER" "$(layer "$r")"
}

build_nginx() {
  local r=$WORK/nginx common
  put "$r" "$(pkgfile nginx /usr/sbin/nginx)" /usr/sbin/nginx
  common=$(pkgroot nginx-common)
  mkdir -p "$r"/etc/nginx/conf.d "$r"/usr/share/nginx/html "$r"/var/log/nginx "$r"/var/lib/nginx "$r"/var/cache/nginx "$r"/run "$r"/var
  install -m 0644 "${common%/}/etc/nginx/mime.types" "$r/etc/nginx/mime.types"
  # the official image's configuration (the pid file is read by the host-PID specs)
  cat >"$r/etc/nginx/nginx.conf" <<'EOF'
user  nginx;
worker_processes  auto;

error_log  /var/log/nginx/error.log notice;
pid        /var/run/nginx.pid;

events {
    worker_connections  1024;
}

http {
    include       /etc/nginx/mime.types;
    default_type  application/octet-stream;

    log_format  main  '$remote_addr - $remote_user [$time_local] "$request" '
                      '$status $body_bytes_sent "$http_referer" '
                      '"$http_user_agent" "$http_x_forwarded_for"';

    access_log  /var/log/nginx/access.log  main;

    sendfile        on;
    keepalive_timeout  65;

    include /etc/nginx/conf.d/*.conf;
}
EOF
  cat >"$r/etc/nginx/conf.d/default.conf" <<'EOF'
server {
    listen       80;
    server_name  localhost;

    location / {
        root   /usr/share/nginx/html;
        index  index.html index.htm;
    }

    error_page   500 502 503 504  /50x.html;
    location = /50x.html {
        root   /usr/share/nginx/html;
    }
}
EOF
  printf '<!DOCTYPE html>\n<html>\n<head>\n<title>Welcome to nginx!</title>\n</head>\n<body>\n<h1>Welcome to nginx!</h1>\n</body>\n</html>\n' >"$r/usr/share/nginx/html/index.html"
  printf '<!DOCTYPE html>\n<html>\n<head>\n<title>Error</title>\n</head>\n<body>\n<h1>An error occurred.</h1>\n</body>\n</html>\n' >"$r/usr/share/nginx/html/50x.html"
  ln -s /dev/stdout "$r/var/log/nginx/access.log"
  ln -s /dev/stderr "$r/var/log/nginx/error.log"
  ln -s ../run "$r/var/run"
  # the official entrypoint only runs /docker-entrypoint.d hooks (none here) before exec
  printf '#!/bin/sh\nset -e\nexec "$@"\n' >"$r/docker-entrypoint.sh"
  chmod 0755 "$r/docker-entrypoint.sh"
  accounts "$r" 'nginx:x:101:101:nginx:/var/cache/nginx:/bin/false' 'nginx:x:101:nginx'
  image nginx "$(jq -cn --arg p "PATH=$PATHS" --arg v "NGINX_VERSION=$(pkgver nginx)" '{Env: [$p, $v],
      Entrypoint: ["/docker-entrypoint.sh"], Cmd: ["nginx", "-g", "daemon off;"],
      ExposedPorts: {"80/tcp": {}}, StopSignal: "SIGQUIT"}')" "$BASE_LAYER" "$(layer "$r")"
}

build_httpd() {
  local r=$WORK/httpd p=/usr/local/apache2 bin mods m
  bin=$(pkgfile apache2-bin /usr/sbin/apache2)
  mods=$(dirname "$(pkgfile apache2-bin /usr/lib/apache2/modules/mod_dir.so)")
  put "$r" "$bin" $p/bin/httpd
  for m in mpm_event authz_core dir mime; do put "$r" "$mods/mod_$m.so" $p/modules/mod_$m.so 0644; done
  mkdir -p "$r$p"/{conf,htdocs,logs} "$r/etc/apache2" "$r/usr/local/bin"
  cat >"$r$p/conf/httpd.conf" <<'EOF'
ServerRoot "/usr/local/apache2"
Listen 80
LoadModule mpm_event_module modules/mod_mpm_event.so
LoadModule authz_core_module modules/mod_authz_core.so
LoadModule dir_module modules/mod_dir.so
LoadModule mime_module modules/mod_mime.so
User daemon
Group daemon
ServerName localhost
ServerAdmin you@example.com
DefaultRuntimeDir logs
PidFile logs/httpd.pid
Mutex default:logs
<Directory />
    AllowOverride none
    Require all denied
</Directory>
DocumentRoot "/usr/local/apache2/htdocs"
<Directory "/usr/local/apache2/htdocs">
    Options Indexes FollowSymLinks
    AllowOverride None
    Require all granted
</Directory>
DirectoryIndex index.html
ErrorLog /proc/self/fd/2
LogLevel warn
LogFormat "%h %l %u %t \"%r\" %>s %b" common
CustomLog /proc/self/fd/1 common
TypesConfig /dev/null
AddType text/html .html .htm
AddType text/plain .txt
AddType application/json .json
EOF
  # Debian's apache2 looks for /etc/apache2/apache2.conf when not given -f
  ln -s $p/conf/httpd.conf "$r/etc/apache2/apache2.conf"
  printf '<html><body><h1>It works!</h1></body></html>\n' >"$r$p/htdocs/index.html"
  printf '#!/bin/sh\nset -e\n\n# Apache gets grumpy about PID files pre-existing\nrm -f %s/logs/httpd.pid\n\nexec httpd -DFOREGROUND "$@"\n' $p >"$r/usr/local/bin/httpd-foreground"
  chmod 0755 "$r/usr/local/bin/httpd-foreground"
  image httpd "$(jq -cn --arg p "PATH=$p/bin:$PATHS" --arg h "HTTPD_PREFIX=$p" --arg v "HTTPD_VERSION=$(pkgver apache2-bin)" '{
      Env: [$p, $h, $v], Cmd: ["httpd-foreground"], WorkingDir: "/usr/local/apache2",
      ExposedPorts: {"80/tcp": {}}, StopSignal: "SIGWINCH"}')" "$BASE_LAYER" "$(layer "$r")"
}

# /var/registry of agnhost's fake-registry-server: pause:testing as
# fakeregistryserver/prepare_registry.sh lays it out (tag file -> list digest,
# manifests and blobs under sha256/<2 hex>/<hex>/data)
fake_registry() {
  local r=$1 src=$IMG/refs/pause/$(tag_of Pause) d h
  d=$(emit pause "pause:$(tag_of Pause)")
  mkdir -p "$r/var/registry/pause/manifests" "$r/var/registry/pause/blobs"
  echo "$d" >"$r/var/registry/pause/manifests/testing"
  fake_registry_put "$r/var/registry/pause/manifests" "$src/list.json"
  fake_registry_put "$r/var/registry/pause/manifests" "$src/manifest.json"
  for h in $(jq -r '.config.digest, .layers[].digest' "$src/manifest.json"); do
    fake_registry_put "$r/var/registry/pause/blobs" "$src/${h#sha256:}"
  done
}
# fake_registry_put DIR FILE: FILE as DIR/sha256/<2 hex>/<hex>/data
fake_registry_put() {
  local h
  h=$(sha256sum "$2" | cut -c1-64)
  mkdir -p "$1/sha256/${h:0:2}/$h"
  cp "$2" "$1/sha256/${h:0:2}/$h/data"
}

build_agnhost() {
  local r=$WORK/agnhost tag src=$K8S_SRC/test/images agn name pic
  tag=$(tag_of Agnhost)
  gobuild agnhost k8s.io/kubernetes/test/images/agnhost "-w -X 'main.Version=$tag'"
  "$BIN/agnhost" --help 2>&1 | grep -q netexec || die "$BIN/agnhost does not run"
  mkdir -p "$r/uploads" "$r/home/user-defined-in-image"
  install -m 0755 "$BIN/agnhost" "$r/agnhost"
  ln -s agnhost "$r/agnhost-2"
  install -m 0644 "$src/agnhost/porter/localhost.crt" "$src/agnhost/porter/localhost.key" "$r/"
  # the tools upstream's Alpine packages give (bash, curl, iproute2, util-linux-misc)
  put "$r" "$(pkgfile bash /bin/bash)" /bin/bash
  put "$r" "$(pkgfile curl /usr/bin/curl)" /usr/bin/curl
  # iproute2's ip replaces the busybox applet, as on Alpine
  put "$r" "$(pkgfile iproute2 /bin/ip)" /bin/ip
  put "$r" "$(pkgfile iproute2 /bin/ss)" /usr/bin/ss
  put "$r" "$(pkgfile util-linux /usr/bin/ipcs)" /usr/bin/ipcs
  # adduser -u 1000 -D user-defined-in-image; addgroup -g 50000 group-defined-in-image
  accounts "$r" 'user-defined-in-image:x:1000:1000::/home/user-defined-in-image:/bin/sh' \
    "$(printf 'user-defined-in-image:x:1000:\ngroup-defined-in-image:x:50000:user-defined-in-image')"
  chown 1000:1000 "$r/home/user-defined-in-image"
  fake_registry "$r"
  AGN_LAYER=$(layer "$r")
  AGN_CFG=$(jq -cn --arg p "PATH=$PATHS" '{Env: [$p], Entrypoint: ["/agnhost"], Cmd: ["pause"],
    ExposedPorts: {"80/tcp": {}, "8080/tcp": {}, "8081/tcp": {}, "9376/tcp": {}, "5000/tcp": {}}}')
  image agnhost "$AGN_CFG" "$BASE_LAYER" "$AGN_LAYER"
  # kitten / nautilus: FROM agnhost, COPY html/<name>.jpg, html/data.json, CMD test-webserver
  for name in kitten nautilus; do
    pic=$WORK/$name
    mkdir -p "$pic"
    install -m 0644 "$src/$name/html/$name.jpg" "$src/$name/html/data.json" "$pic/"
    image $name "$(jq -c '. + {Cmd: ["test-webserver"]}' <<<"$AGN_CFG")" "$BASE_LAYER" "$AGN_LAYER" "$(layer "$pic")"
  done
}

# inputs_key: what the images are made of: this script, the tools module, the
# toolchain, every installed package's version (libraries are copied from the
# host), the fetched .debs and the pinned sources the tags and pause come from
inputs_key() {
  {
    cat "$SELF" "$HERE/go.mod" "$HERE/go.sum" "$HERE/tools.go" "$MANIFEST_GO" "$K8S_SRC/build/pause/linux/pause.c"
    go version
    gcc --version | head -1
    tar --version | head -1
    gzip --version | head -1
    jq --version
    dpkg-query -W -f '${Package} ${Version} ${Status}\n'
    find "$DEBS" -maxdepth 1 -name '*.deb' -printf '%f\n' | sort
  } | sha256sum | cut -c1-64
}

cmd_build() {
  [ "$(id -u)" = 0 ] || die "must run as root (layer files owned by other users, setuid nnp)"
  local t name ref d key
  for t in docker-registry skopeo jq curl tar gzip sha256sum ldd dpkg-deb gcc go flock; do
    command -v "$t" >/dev/null || die "$t not found (see the header for the packages)"
  done
  mkdir -p "$IMG/blobs" "$IMG/layers" "$IMG/refs" "$DEBS/x" "$BIN"
  exec 9>"$IMG/.lock"
  flock 9 # one builder at a time
  cmd_start
  K8S_SRC=$(k8s_src)
  MANIFEST_GO=$K8S_SRC/test/utils/image/manifest.go
  # fast path: same inputs as the last build and the registry holds every list it pushed
  key=$(inputs_key)
  if [ "$(cat "$IMG/built.key" 2>/dev/null)" = "$key" ] && [ -s "$IMG/built.refs" ]; then
    while read -r ref d; do
      [ "$(list_digest_in_registry "$ref" || true)" = "$d" ] || break
    done <"$IMG/built.refs"
    if [ -z "${ref:-}" ]; then # the loop read every line
      awk '{ printf "%-58s %s\n", "registry.k8s.io/" $1, $2 }' "$IMG/built.refs"
      log "up to date: $(wc -l <"$IMG/built.refs") references on http://$REG"
      return 0
    fi
  fi
  rm -f "$IMG/built.key"
  WORK=$(mktemp -d "$IMG/.work.XXXXXX")
  BASE_ROOT=$WORK/base
  trap 'rm -rf "$WORK"' EXIT
  umask 022
  build_base
  build_pause
  build_nonewprivs
  build_ipc_utils
  build_glibc_dns
  build_nginx
  build_httpd
  build_agnhost
  : >"$WORK/built.refs"
  while read -r name ref; do
    d=$(emit "$name" "$ref")
    push "$ref" "$d"
    echo "$ref $d" >>"$WORK/built.refs"
    printf '%-58s %s\n' "registry.k8s.io/$ref" "$d"
  done < <(refs)
  mv "$WORK/built.refs" "$IMG/built.refs"
  # the key is taken again: a first build fetches .debs, which are inputs too
  inputs_key >"$IMG/built.key"
  log "done: $(wc -l <"$IMG/built.refs") references on http://$REG (capsa settings: $0 capsa-config)"
}

case "${1:-}" in
  start) cmd_start ;;
  stop) cmd_stop ;;
  build) cmd_build ;;
  status) cmd_status ;;
  list) cmd_list ;;
  capsa-config) cmd_capsa_config ;;
  *) usage ;;
esac
