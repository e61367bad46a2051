#!/bin/bash
# Build capsa's own test images as OCI image layouts, offline, from Debian packages.
#
#   hack/make-test-images.sh [--big] [--force] OUTDIR
#
# Writes one OCI layout per image (each tagged "latest") and an index OUTDIR/images.json:
#   OUTDIR/busybox  capsa-test/busybox:latest  Debian's *dynamic* busybox + the glibc files ldd names,
#                   symlinked applets, users root / capsa (1000:1000, also in capsa-extra 1001 and
#                   users 100) / nobody; Entrypoint capsa-entrypoint (exports CAPSA_ENTRYPOINT=1, then
#                   execs its args), Cmd capsa-idle (waits for SIGUSR1 = the StopSignal, exits 0),
#                   Env, WorkingDir /srv/capsa, VOLUME /data.
#   OUTDIR/layers   capsa-test/layers:latest   the busybox layer + 3 layers exercising unpacking:
#                   layer 2 adds /layers/{keep.txt,gone.txt,gone-dir/,opaque/,hardlink-a,hardlink-b,
#                   symlink-rel,symlink-abs,owned.txt,file-then-dir}; layer 3 whites out gone.txt and
#                   gone-dir, makes opaque/ opaque (only opaque/new survives), rewrites keep.txt and
#                   replaces the file file-then-dir by a directory; layer 4 adds l4.txt + hardlink l4-link.
#   OUTDIR/big      capsa-test/big:latest      (only with --big) the busybox image + 4 layers of 25 MiB
#                   of incompressible, deterministic (AES-CTR keystream) data, for benchmarks.
#
# Idempotent and fast when run again: each image is rebuilt only when the hash of its inputs (this
# script, hack/testimages/*, the busybox binary and its libraries) changed; --force rebuilds anyway.
# Layers are built with GNU tar (sorted, fixed mtime, numeric owners) so digests are reproducible.
# Must run as root (files owned by uid 1000 in the layers). Needs (apt): busybox (or network access to
# the Debian mirror for `apt-get download busybox`, as it conflicts with busybox-static), umoci, jq, tar,
# openssl, dpkg, util-linux (flock).
set -euo pipefail

HERE=$(cd "$(dirname "$0")" && pwd)
SRC=$HERE/testimages
EPOCH=1700000000                     # fixed timestamp for every layer entry and config: reproducible digests
CREATED=2023-11-14T22:13:20Z         # = $EPOCH
PATHENV=PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
BIG=0 FORCE=0
while [ $# -gt 0 ]; do
  case $1 in
    --big) BIG=1 ;;
    --force) FORCE=1 ;;
    -h | --help) sed -n '2,26p' "$0"; exit 0 ;;
    -*) echo "unknown option $1" >&2; exit 2 ;;
    *) break ;;
  esac
  shift
done
[ $# -eq 1 ] || { echo "usage: $0 [--big] [--force] OUTDIR" >&2; exit 2; }
[ "$(id -u)" = 0 ] || { echo "$0: must run as root (layer entries owned by uid 1000)" >&2; exit 1; }
for t in umoci jq tar openssl dpkg-deb flock sha256sum ldd; do
  command -v "$t" >/dev/null || { echo "$0: $t not found (see the header for the apt packages)" >&2; exit 1; }
done

umask 022
mkdir -p "$1"
OUT=$(cd "$1" && pwd)
mkdir -p "$OUT/.cache/debs" "$OUT/.keys"
# one builder at a time per OUTDIR (parallel jest workers may all ask for the images)
exec 9>"$OUT/.lock"
flock 9

WORK=$(mktemp -d "$OUT/.tmp.XXXXXX")
trap 'rm -rf "$WORK"' EXIT
log() { echo "== $*" >&2; }

# ---------------------------------------------------------------- busybox (dynamic)
# busybox-static is not used: Debian builds it with FEATURE_SH_STANDALONE, so its sh runs applets
# in-process instead of exec'ing them, which hides exec behaviour from the runtime under test.
if [ -n "${CAPSA_BUSYBOX:-}" ]; then
  BB=$CAPSA_BUSYBOX
elif [ "$(dpkg-query -W -f='${Status}' busybox 2>/dev/null || true)" = "install ok installed" ]; then
  BB=/bin/busybox
else
  deb=$(find "$OUT/.cache/debs" -name 'busybox_*_amd64.deb' | sort | tail -1)
  if [ -z "$deb" ]; then
    log "downloading Debian's busybox package"
    # the sandbox user _apt cannot write into a root-owned cache dir; we are root anyway
    (cd "$OUT/.cache/debs" && apt-get download -q -o APT::Sandbox::User=root busybox >&2)
    deb=$(find "$OUT/.cache/debs" -name 'busybox_*_amd64.deb' | sort | tail -1)
  fi
  dpkg-deb -x "$deb" "$WORK/bbdeb"
  BB=$WORK/bbdeb/bin/busybox
fi
# (ldd's output is captured first: `ldd | grep -q` can fail on SIGPIPE under pipefail)
ldd_out=$(ldd "$BB" 2>/dev/null || true)
[[ $ldd_out == *libc.so* ]] || { echo "$0: $BB is not a dynamically linked busybox" >&2; exit 1; }
# the libraries and loader, at the paths ldd reports (/lib/x86_64-linux-gnu/..., /lib64/ld-linux-...)
mapfile -t LIBS < <(echo "$ldd_out" | awk '/=>/ { print $3 } /ld-linux/ && !/=>/ { print $1 }' | sort -u)

# ---------------------------------------------------------------- input hashes
base_key=$( {
  sha256sum "$0" "$SRC"/* "$BB" "${LIBS[@]}" | awk '{ print $1 }'
  tar --version | head -1
  umoci --version
} | sha256sum | cut -d' ' -f1)
key_of() { echo "$base_key $*" | sha256sum | cut -d' ' -f1; }
current() { [ -d "$OUT/$1" ] && [ "$(cat "$OUT/.keys/$1" 2>/dev/null)" = "$(key_of "$1")" ]; }
fresh() { [ "$FORCE" = 0 ] && current "$1"; }

# ---------------------------------------------------------------- helpers
# mktar DIR OUT.tar: a reproducible layer tar of DIR's contents (paths without "./", parents first,
# fixed mtime, numeric owners as on disk, no atime/ctime). Hardlinks inside DIR become link entries.
mktar() {
  (cd "$1" && find . -mindepth 1 -printf '%P\n' | LC_ALL=C sort |
    tar --no-recursion --verbatim-files-from -T - --numeric-owner --format=pax \
      --pax-option=delete=atime,delete=ctime --mtime=@$EPOCH -cf "$2")
}
# new_image LAYOUT: empty image tagged latest
new_image() {
  umoci init --layout "$1"
  umoci new --image "$1:latest"
}
# add_layer LAYOUT TAR CREATED_BY
add_layer() {
  umoci raw add-layer --image "$1:latest" --history.created "$CREATED" --history.created_by "$3" "$2"
}
# config LAYOUT ARGS...: umoci config with fixed timestamps
config() {
  local l=$1
  shift
  umoci config --image "$l:latest" --created "$CREATED" --history.created "$CREATED" "$@"
}
busybox_config() {
  config "$1" --architecture amd64 --os linux --history.created_by 'capsa-test/busybox config' \
    --config.entrypoint /usr/local/bin/capsa-entrypoint --config.cmd capsa-idle \
    --config.env "$PATHENV" --config.env CAPSA_TEST_IMAGE=busybox --config.env 'CAPSA_TEST_EQ=a=b=c' \
    --config.workingdir /srv/capsa --config.volume /data --config.stopsignal SIGUSR1 \
    --config.label org.opencontainers.image.title=capsa-test-busybox --config.label capsa.test=1
}
# publish NAME LAYOUT: swap the finished layout into OUTDIR and record its input key
publish() {
  umoci gc --layout "$2"
  rm -rf "${OUT:?}/$1" "$OUT/.keys/$1"
  mv "$2" "$OUT/$1"
  key_of "$1" >"$OUT/.keys/$1"
  log "built $1 ($(jq -r '.manifests[0].digest' "$OUT/$1/index.json"))"
}

# ---------------------------------------------------------------- the busybox layer (shared by all images)
need_base=0
for img in busybox layers; do fresh "$img" || need_base=1; done
if [ "$BIG" = 1 ] && ! fresh big; then need_base=1; fi

if [ "$need_base" = 1 ]; then
  R=$WORK/rootfs
  mkdir -p "$R"/{bin,dev,etc,home/capsa,lib64,lib/x86_64-linux-gnu,proc,root,run,sys,tmp,usr/bin,usr/local/bin,var/tmp}
  mkdir -p "$R/srv/capsa" "$R/data"
  chmod 1777 "$R/tmp" "$R/var/tmp"
  chmod 700 "$R/root"
  install -m 0755 "$BB" "$R/bin/busybox"
  APPLETS=$("$BB" --list)
  # relative symlinks, as the brief for our tests asks (note: masking /bin/ls through a symlink masks
  # busybox itself; the critest images use hardlinks for that reason)
  for a in '[' ash awk basename cat chmod chown cp cut date dd df dirname du echo env expr false find free \
    grep groups head hostname id ip kill killall ln ls md5sum mkdir mkfifo mknod mount mv nc nproc nslookup \
    pidof ping printf ps pwd readlink realpath rm rmdir sed seq setsid sh sha256sum sleep sort stat sync tail \
    tee test timeout top touch tr true umount uname uniq uptime usleep wc wget which whoami xargs yes; do
    grep -qxF -- "$a" <<<"$APPLETS" || { echo "$0: busybox lacks applet $a" >&2; exit 1; }
    ln -s busybox "$R/bin/$a"
  done
  ln -s ../../bin/busybox "$R/usr/bin/env" # for #!/usr/bin/env scripts
  for lib in "${LIBS[@]}"; do
    mkdir -p "$R$(dirname "$lib")"
    cp -L "$lib" "$R$lib"
  done
  install -m 0755 "$SRC/capsa-entrypoint" "$SRC/capsa-idle" "$R/usr/local/bin/"
  install -m 0644 "$SRC/passwd" "$SRC/group" "$R/etc/"
  printf 'passwd: files\ngroup: files\nhosts: files dns\n' >"$R/etc/nsswitch.conf"
  chown 1000:1000 "$R/home/capsa"
  echo 'hello from the capsa-test/busybox image volume' >"$R/data/hello.txt"
  echo 'capsa-test/busybox working directory' >"$R/srv/capsa/README"
  mktar "$R" "$WORK/base.tar"
fi

# ---------------------------------------------------------------- capsa-test/busybox
if ! fresh busybox; then
  L=$WORK/busybox
  new_image "$L"
  add_layer "$L" "$WORK/base.tar" 'ADD busybox rootfs /'
  busybox_config "$L"
  publish busybox "$L"
fi

# ---------------------------------------------------------------- capsa-test/layers
if ! fresh layers; then
  L=$WORK/layers
  new_image "$L"
  add_layer "$L" "$WORK/base.tar" 'ADD busybox rootfs /'

  d=$WORK/l2/layers
  mkdir -p "$d/gone-dir" "$d/opaque/sub"
  echo layer2 >"$d/keep.txt"
  echo gone >"$d/gone.txt"
  echo x >"$d/gone-dir/f"
  echo old1 >"$d/opaque/old1"
  echo old2 >"$d/opaque/sub/old2"
  echo linked >"$d/hardlink-a"
  ln "$d/hardlink-a" "$d/hardlink-b"
  ln -s keep.txt "$d/symlink-rel"
  ln -s /layers/keep.txt "$d/symlink-abs"
  echo owned >"$d/owned.txt"
  chown 1000:1000 "$d/owned.txt"
  chmod 0640 "$d/owned.txt"
  echo file >"$d/file-then-dir"
  mktar "$WORK/l2" "$WORK/l2.tar"
  add_layer "$L" "$WORK/l2.tar" 'layer 2: files, hardlink, symlinks, owner'

  d=$WORK/l3/layers
  mkdir -p "$d/opaque" "$d/file-then-dir"
  : >"$d/.wh.gone.txt"          # whiteout of a file
  : >"$d/.wh.gone-dir"          # whiteout of a directory
  : >"$d/opaque/.wh..wh..opq"   # opaque directory: hides old1 and sub/ of layer 2
  echo new >"$d/opaque/new"
  echo layer3 >"$d/keep.txt"
  echo inner >"$d/file-then-dir/inner" # a directory replacing a file of a lower layer
  mktar "$WORK/l3" "$WORK/l3.tar"
  add_layer "$L" "$WORK/l3.tar" 'layer 3: whiteouts, opaque dir, file replaced'

  d=$WORK/l4/layers
  mkdir -p "$d"
  echo layer4 >"$d/l4.txt"
  ln "$d/l4.txt" "$d/l4-link"
  mktar "$WORK/l4" "$WORK/l4.tar"
  add_layer "$L" "$WORK/l4.tar" 'layer 4: hardlink pair'

  config "$L" --architecture amd64 --os linux --history.created_by 'capsa-test/layers config' \
    --config.env "$PATHENV" --config.cmd sh --config.label capsa.test=1
  publish layers "$L"
fi

# ---------------------------------------------------------------- capsa-test/big (on request)
if [ "$BIG" = 1 ] && ! fresh big; then
  L=$WORK/big
  new_image "$L"
  add_layer "$L" "$WORK/base.tar" 'ADD busybox rootfs /'
  for n in 1 2 3 4; do
    mkdir -p "$WORK/big$n/big"
    # AES-256-CTR keystream of a fixed key: incompressible yet identical on every run
    head -c $((25 * 1024 * 1024)) /dev/zero |
      openssl enc -aes-256-ctr -K "$(echo -n "capsa-big-$n" | sha256sum | cut -d' ' -f1)" \
        -iv 00000000000000000000000000000000 >"$WORK/big$n/big/part-$n.bin"
    mktar "$WORK/big$n" "$WORK/big$n.tar"
    rm -rf "$WORK/big$n"
    add_layer "$L" "$WORK/big$n.tar" "ADD part-$n.bin /big/ (25 MiB random)"
    rm -f "$WORK/big$n.tar"
  done
  busybox_config "$L"
  publish big "$L"
fi

# ---------------------------------------------------------------- index of what OUTDIR holds
{
  sep=''
  echo '{'
  for img in busybox layers big; do
    current "$img" || continue # a big image left from older inputs is not listed until rebuilt
    printf '%s  "%s": {"layout": "%s", "tag": "latest", "ref": "capsa-test/%s:latest", "digest": "%s"}' \
      "$sep" "$img" "$OUT/$img" "$img" "$(jq -r '.manifests[0].digest' "$OUT/$img/index.json")"
    sep=$',\n'
  done
  printf '\n}\n'
} >"$WORK/images.json"
jq . "$WORK/images.json" >/dev/null # refuse to publish a broken index
mv "$WORK/images.json" "$OUT/images.json"
