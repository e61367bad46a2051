#!/usr/bin/env bash
# Builds, offline, every image critest v1.37.0 and v1.26.1 pull, and stores
# them in a docker-registry storage directory that hack/critest/run.sh serves
# on a free loopback port. capsa then reaches them through registry mirrors
# for the hosts critest names (registry.k8s.io, gcr.io, k8s.gcr.io,
# public.ecr.aws), so the specs see the upstream image names unchanged.
#
#   hack/critest/images.sh [--force]
#
# Output: $CAPSA_CRITEST_CACHE/registry (default /var/cache/capsa-critest),
# rebuilt only when its inputs (this script, imagestub/, the busybox binary,
# the libraries it copies, umoci) changed; --force rebuilds anyway.
#
# The images push to the *path* of their upstream reference:
#   registry.k8s.io/e2e-test-images/busybox:1.29-2 -> e2e-test-images/busybox:1.29-2
#   gcr.io/k8s-staging-cri-tools/test-image-1      -> k8s-staging-cri-tools/test-image-1:latest
# Multi-arch upstream images get a one-entry (linux/amd64) manifest list.
#
# What the images are (the same recipe as ../shared/critest for v1.26.1):
# - userland: Debian's *dynamic* busybox with every applet as a hard link,
#   plus the glibc files ldd names. Not busybox-static: Debian builds it with
#   FEATURE_SH_STANDALONE, so its sh runs applets in-process and critest's
#   MaskedPaths spec ("sh -c ls" must fail to exec /bin/ls) cannot pass. Hard
#   links, not symlinks: masking /bin/ls must not mask busybox. Debian's
#   busybox has no pgrep or ipcs applet: a small pgrep script and
#   util-linux's ipcs are added.
# - nginx, httpd, pause and nonewprivs' nnp are imagestub/ (static Go), which
#   plays the part critest can see of each (see imagestub/main.go).
# - pause:3.9 is served once; critest v1.37.0 pulls it as both
#   registry.k8s.io/pause:3.9 and k8s.gcr.io/pause:3.9 and expects one image.
# - gcr.io/k8s-staging-cri-tools/test-image-digest@sha256:9700f9a2... is a
#   content address of an upstream manifest and cannot be made offline;
#   run.sh skips the specs that pull it.
#
# Needs (apt): docker-registry skopeo umoci busybox jq curl util-linux; go.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
cache="${CAPSA_CRITEST_CACHE:-/var/cache/capsa-critest}"
store="$cache/registry"
force=0
[[ "${1:-}" == "--force" ]] && force=1
[[ $(id -u) -eq 0 ]] || {
  echo "critest/images: must run as root (setuid and non-root owners in the layers)" >&2
  exit 1
}
for t in docker-registry skopeo umoci jq curl tar ldd flock go python3; do
  command -v "$t" >/dev/null || {
    echo "critest/images: $t not found (see the header for the apt packages)" >&2
    exit 1
  }
done
log() { echo "== critest/images: $*" >&2; }

mkdir -p "$cache"
exec 9>"$cache/images.lock" # one builder at a time
flock 9

bb=${CAPSA_BUSYBOX:-/bin/busybox}
ldd_of() { ldd "$1" | awk '/=>/ { print $3 } /ld-linux/ && !/=>/ { print $1 }' | sort -u; }
bb_ldd=$(ldd "$bb" 2>/dev/null || true)
[[ $bb_ldd == *libc.so* ]] || {
  echo "critest/images: $bb is not a dynamically linked busybox (apt-get install busybox)" >&2
  exit 1
}
mapfile -t libs < <(
  ldd_of "$bb"
  ldd_of /usr/bin/ipcs
)
mapfile -t libs < <(printf '%s\n' "${libs[@]}" | sort -u)

key=$({
  sha256sum "$0" "$here"/imagestub/*.go "$bb" /usr/bin/ipcs "${libs[@]}" | awk '{ print $1 }'
  umoci --version
} | sha256sum | cut -d' ' -f1)
if [[ $force == 0 && -d "$store/docker" && "$(cat "$cache/registry.key" 2>/dev/null)" == "$key" ]]; then
  log "up to date ($store)"
  exit 0
fi

work=$(mktemp -d "$cache/images.XXXXXX")
reg_pid=
cleanup() {
  [[ -n "$reg_pid" ]] && kill "$reg_pid" 2>/dev/null && wait "$reg_pid" 2>/dev/null
  rm -rf "$work"
}
trap cleanup EXIT
umask 022
epoch=1700000000
created=2023-11-14T22:13:20Z
pathenv=PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin

# ------------------------------------------------------------------ binaries
log "building imagestub"
GOCACHE="${GOCACHE:-$cache/go-build}" CGO_ENABLED=0 GOFLAGS= \
  go -C "$here" build -trimpath -ldflags '-s -w' -o "$work/imagestub" ./imagestub

# ------------------------------------------------------------------ base rootfs
r=$work/rootfs
mkdir -p "$r"/{bin,dev,etc,home,proc,root,sys,tmp,usr/bin,usr/sbin,var/spool/mail,var/www,var/run,lib64}
chmod 1777 "$r/tmp"
chmod 700 "$r/root"
install -m 0755 "$bb" "$r/bin/busybox"
for a in $("$bb" --list); do
  [[ -e "$r/bin/$a" ]] || ln "$r/bin/busybox" "$r/bin/$a"
done
# pgrep PATTERN: pids whose comm matches the extended regexp, as procps does.
cat >"$r/bin/pgrep" <<'EOF'
#!/bin/sh
[ $# -eq 1 ] || { echo "usage: pgrep PATTERN" >&2; exit 2; }
found=1
for d in /proc/[0-9]*; do
  pid=${d#/proc/}
  [ "$pid" = "$$" ] && continue
  comm=$(cat "$d/comm" 2>/dev/null) || continue
  if printf '%s\n' "$comm" | grep -Eq -- "$1"; then echo "$pid"; found=0; fi
done
exit $found
EOF
chmod 0755 "$r/bin/pgrep"
install -m 0755 /usr/bin/ipcs "$r/usr/bin/ipcs"
for lib in "${libs[@]}"; do
  mkdir -p "$r$(dirname "$lib")"
  cp -L "$lib" "$r$lib"
done
cat >"$r/etc/passwd" <<'EOF'
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
i=0
for g in root daemon bin sys adm tty disk lp mail kmem wheel cdrom dialout floppy video audio tape www-data \
  operator utmp plugdev staff lock netdev users nogroup; do
  case $g in
    cdrom) i=11 ;; dialout) i=18 ;; floppy) i=19 ;; video) i=28 ;; audio) i=29 ;; tape) i=32 ;;
    www-data) i=33 ;; operator) i=37 ;; utmp) i=43 ;; plugdev) i=46 ;; staff) i=50 ;; lock) i=54 ;;
    netdev) i=82 ;; users) i=100 ;; nogroup) i=65534 ;;
  esac
  if [[ $g == wheel ]]; then echo "wheel:x:$i:root"; else echo "$g:x:$i:"; fi
  i=$((i + 1))
done >"$r/etc/group"
sed 's/^\([^:]*\):.*/\1:*:10933:0:99999:7:::/' "$r/etc/passwd" >"$r/etc/shadow"
chmod 600 "$r/etc/shadow"
printf 'passwd: files\ngroup: files\nshadow: files\nhosts: files dns\n' >"$r/etc/nsswitch.conf"
echo "127.0.0.1 localhost" >"$r/etc/hosts"

# ------------------------------------------------------------------ OCI helpers
oci=$work/oci
umoci init --layout "$oci"
# mktar DIR OUT: a layer of DIR's contents (sorted, fixed mtime, numeric owners).
mktar() {
  (cd "$1" && find . -mindepth 1 -printf '%P\n' | LC_ALL=C sort |
    tar --no-recursion --verbatim-files-from -T - --numeric-owner --format=pax \
      --pax-option=delete=atime,delete=ctime --mtime=@$epoch -cf "$2")
}
# image TAG DIR: a new single-layer image of DIR.
image() {
  umoci new --image "$oci:$1"
  mktar "$2" "$work/layer.tar"
  umoci raw add-layer --image "$oci:$1" --history.created "$created" --history.created_by "ADD rootfs /" \
    "$work/layer.tar"
  cfg "$1" --architecture amd64 --os linux
}
# derive NEW FROM: NEW starts as a copy of FROM.
derive() { umoci tag --image "$oci:$2" "$1"; }
# add TAG DIR: a layer with DIR's contents on top of TAG.
add() {
  mktar "$2" "$work/layer.tar"
  umoci raw add-layer --image "$oci:$1" --history.created "$created" --history.created_by "ADD $(basename "$2")" \
    "$work/layer.tar"
}
cfg() {
  local t=$1
  shift
  umoci config --image "$oci:$t" --created "$created" --history.created "$created" "$@"
}

# ------------------------------------------------------------------ images
log "assembling images"
image busybox "$r"
cfg busybox --config.env "$pathenv" --config.cmd sh --history.created_by 'CMD ["sh"]'

# nginx: port 80 from conf.d, /usr/share/nginx/html, pid file.
d=$work/nginx
mkdir -p "$d/usr/sbin" "$d/usr/share/nginx/html" "$d/etc/nginx/conf.d"
install -m 0755 "$work/imagestub" "$d/usr/sbin/nginx"
printf '<!DOCTYPE html>\n<html><head><title>Welcome to nginx!</title></head><body><h1>Welcome to nginx!</h1></body></html>\n' \
  >"$d/usr/share/nginx/html/index.html"
printf 'server {\n    listen       80;\n    location / {\n        root   /usr/share/nginx/html;\n    }\n}\n' \
  >"$d/etc/nginx/conf.d/default.conf"
derive nginx busybox
add nginx "$d"
cfg nginx --config.exposedports 80/tcp --config.stopsignal SIGQUIT --clear config.cmd \
  --config.cmd nginx --config.cmd -g --config.cmd 'daemon off;'

# hostnet-nginx-amd64: the same server on 12003 (for host-network pods).
d=$work/hostnet
mkdir -p "$d/etc/nginx/conf.d"
printf 'server {\n    listen       12003;\n    location / {\n        root   /usr/share/nginx/html;\n    }\n}\n' \
  >"$d/etc/nginx/conf.d/default.conf"
derive hostnet-nginx nginx
add hostnet-nginx "$d"

# httpd: port 80, htdocs, the Apache start lines in its log, SIGWINCH to stop.
d=$work/httpd
mkdir -p "$d/usr/local/apache2/bin" "$d/usr/local/apache2/htdocs" "$d/usr/local/bin"
install -m 0755 "$work/imagestub" "$d/usr/local/apache2/bin/httpd"
printf '<html><body><h1>It works!</h1></body></html>\n' >"$d/usr/local/apache2/htdocs/index.html"
printf '#!/bin/sh\nset -e\nexec httpd -DFOREGROUND "$@"\n' >"$d/usr/local/bin/httpd-foreground"
chmod 0755 "$d/usr/local/bin/httpd-foreground"
derive httpd busybox
add httpd "$d"
cfg httpd --config.env "PATH=/usr/local/apache2/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin" \
  --config.env HTTPD_PREFIX=/usr/local/apache2 --config.workingdir /usr/local/apache2 \
  --config.exposedports 80/tcp --config.stopsignal SIGWINCH --clear config.cmd --config.cmd httpd-foreground

# nonewprivs: setuid-root nnp as the entrypoint.
d=$work/nnp
mkdir -p "$d/usr/local/bin"
install -m 4755 -o root -g root "$work/imagestub" "$d/usr/local/bin/nnp"
derive nonewprivs busybox
add nonewprivs "$d"
cfg nonewprivs --clear config.cmd --config.entrypoint /usr/local/bin/nnp

# pause: scratch + /pause, user 65535, like registry.k8s.io/pause.
d=$work/pause
mkdir -p "$d"
install -m 0755 "$work/imagestub" "$d/pause"
image pause "$d"
cfg pause --config.user 65535:65535 --config.entrypoint /pause

# test images: busybox plus an empty file named after the image.
for t in test-image-1 test-image-2 test-image-3 test-image-latest test-image-digest test all same-image; do
  mkdir -p "$work/marker-$t"
  : >"$work/marker-$t/$t"
  derive "img-$t" busybox
  add "img-$t" "$work/marker-$t"
done
# user images: USER as uid, name, uid:gid, name:gid.
derive user-uid busybox
cfg user-uid --config.user 1002
derive user-username busybox
cfg user-username --config.user www-data
derive user-uid-group busybox
cfg user-uid-group --config.user 1003:1004
derive user-username-group busybox
cfg user-username-group --config.user www-data:1004
# predefined group: user default-user (1000) also in group-defined-in-image (50000), USER 1000.
d=$work/pg
mkdir -p "$d/etc" "$d/home/default-user"
cp "$r/etc/passwd" "$r/etc/group" "$r/etc/shadow" "$d/etc/"
echo 'default-user:x:1000:1000:Linux User,,,:/home/default-user:/bin/sh' >>"$d/etc/passwd"
echo 'default-user:!:19000:0:99999:7:::' >>"$d/etc/shadow"
printf 'default-user:x:1000:\ngroup-defined-in-image:x:50000:default-user\n' >>"$d/etc/group"
chown 1000:1000 "$d/home/default-user"
derive predefined-group busybox
add predefined-group "$d"
cfg predefined-group --config.user 1000
# busybox variants for the benchmarks' image listing and pulling.
for v in 1.35.0-glibc 1-uclibc 1 1-glibc 1-musl; do
  mkdir -p "$work/variant-$v"
  echo "$v" >"$work/variant-$v/variant"
  derive "bb-$v" busybox
  add "bb-$v" "$work/variant-$v"
done
umoci gc --layout "$oci"

# ------------------------------------------------------------------ registry
port=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
reg=127.0.0.1:$port
mkdir -p "$work/registry"
cat >"$work/registry.yml" <<EOF
version: 0.1
log:
  level: warn
storage:
  filesystem:
    rootdirectory: $work/registry
  delete:
    enabled: true
http:
  addr: $reg
EOF
docker-registry serve "$work/registry.yml" >"$work/registry.log" 2>&1 </dev/null &
reg_pid=$!
for _ in $(seq 100); do
  curl -sf "http://$reg/v2/" >/dev/null && break
  sleep 0.1
done
curl -sf "http://$reg/v2/" >/dev/null || {
  echo "critest/images: registry did not start:" >&2
  cat "$work/registry.log" >&2
  exit 1
}

# push TAG REPO:REF [single]: a v2s2 manifest, wrapped in a linux/amd64
# manifest list unless "single" (as upstream publishes them).
push() {
  local tag=$1 dest=$2 kind=${3:-list} repo=${2%%:*} ref=${2##*:}
  if [[ $kind == single ]]; then
    skopeo copy -q --dest-tls-verify=false --format v2s2 "oci:$oci:$tag" "docker://$reg/$dest"
    return
  fi
  skopeo copy -q --dest-tls-verify=false --format v2s2 "oci:$oci:$tag" "docker://$reg/$repo:amd64-$ref"
  local m digest size
  m=$(curl -sf -H 'Accept: application/vnd.docker.distribution.manifest.v2+json' "http://$reg/v2/$repo/manifests/amd64-$ref")
  digest="sha256:$(printf '%s' "$m" | sha256sum | cut -d' ' -f1)"
  size=$(printf '%s' "$m" | wc -c)
  jq -nc --arg d "$digest" --argjson s "$size" '{schemaVersion: 2,
      mediaType: "application/vnd.docker.distribution.manifest.list.v2+json",
      manifests: [{mediaType: "application/vnd.docker.distribution.manifest.v2+json", digest: $d, size: $s,
                   platform: {architecture: "amd64", os: "linux"}}]}' >"$work/list.json"
  curl -sf -X PUT -H 'Content-Type: application/vnd.docker.distribution.manifest.list.v2+json' \
    --data-binary @"$work/list.json" "http://$reg/v2/$repo/manifests/$ref" >/dev/null
}

log "pushing"
e2e=e2e-test-images
s=k8s-staging-cri-tools
push busybox $e2e/busybox:1.29-2
push nginx $e2e/nginx:1.14-2
push httpd $e2e/httpd:2.4.39-4
push nonewprivs $e2e/nonewprivs:1.3
for v in 3.6 3.8 3.9; do push pause pause:$v; done
push hostnet-nginx $s/hostnet-nginx-amd64:latest single
for t in test-image-1 test-image-2 test-image-3 test-image-latest test-image-digest; do push "img-$t" $s/$t:latest; done
push img-test $s/test-image-tag:test
push img-all $s/test-image-tag:all
for n in 1 2 3; do push img-same-image $s/test-image-tags:$n; done
push user-uid $s/test-image-user-uid:latest
push user-username $s/test-image-user-username:latest
push user-uid-group $s/test-image-user-uid-group:latest
push user-username-group $s/test-image-user-username-group:latest
push predefined-group $s/test-image-predefined-group:latest
for v in 1.35.0-glibc 1-uclibc 1 1-glibc 1-musl; do push "bb-$v" docker/library/busybox:$v; done

n=$(curl -sf "http://$reg/v2/_catalog?n=1000" | jq '.repositories | length')
kill "$reg_pid"
wait "$reg_pid" 2>/dev/null || true
reg_pid=
rm -rf "$store.old"
[[ -d "$store" ]] && mv "$store" "$store.old"
mv "$work/registry" "$store"
rm -rf "$store.old"
echo "$key" >"$cache/registry.key"
log "$n repositories in $store"
