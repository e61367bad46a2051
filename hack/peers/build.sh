#!/usr/bin/env bash
# Builds the peer runtimes capsa is compared with, from the Go modules the
# tools modules here pin, into $CAPSA_PEERS_CACHE/bin (default
# /var/cache/capsa-peers/bin):
#   containerd, containerd-shim-runc-v2, ctr   (containerd/go.mod)
#   runc                                       (runc/go.mod)
# Each tools module keeps its project's own dependency versions (one module
# per project: no minimal-version-selection bumps between them). Flags follow
# the projects' Makefiles: runc with the seccomp tag (cgo, libseccomp-dev) but
# without libpathrs (a Rust library Debian does not package: runc then uses its
# pure-Go path-safety code, as its Makefile's RUNC_BUILDTAGS=-libpathrs does);
# the shim static with cgo off. A binary already built from the same go.sum
# and flags is reused. Nothing lands in the repository.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
cache=${CAPSA_PEERS_CACHE:-/var/cache/capsa-peers}
bin=$cache/bin
mkdir -p "$bin"
export GOCACHE=${GOCACHE_PEERS:-$cache/go-build}
export GOFLAGS="-mod=mod -buildvcs=false"
# -p 1: the machine's cores are shared
par=${CAPSA_PEERS_GO_P:-1}

# the version a tools module requires (a `require m v` line or a require block)
version_of() { awk -v m="$2" '$1 == m { print $2; exit } $1 == "require" && $2 == m { print $3; exit }' "$here/$1/go.mod"; }
ctd_version=$(version_of containerd github.com/containerd/containerd/v2)
[ -n "$ctd_version" ] || {
  echo "build.sh: no containerd version in $here/containerd/go.mod" >&2
  exit 1
}

# build NAME MODULE-DIR CGO TAGS LDFLAGS PACKAGE
build() {
  local name=$1 dir=$2 cgo=$3 tags=$4 ldflags=$5 pkg=$6 stamp
  stamp=$(cat "$here/$dir/go.mod" "$here/$dir/go.sum" <(echo "$cgo|$tags|$ldflags|$pkg") | sha256sum | cut -c1-16)
  if [ "$(cat "$bin/.$name.stamp" 2>/dev/null)" = "$stamp" ] && [ -x "$bin/$name" ]; then
    return 0
  fi
  echo "build.sh: building $name from $pkg" >&2
  (cd "$here/$dir" && CGO_ENABLED=$cgo go build -p "$par" -trimpath -tags "$tags" -ldflags "$ldflags" \
    -o "$bin/$name.new" "$pkg")
  mv "$bin/$name.new" "$bin/$name"
  echo "$stamp" >"$bin/.$name.stamp"
}

cv=github.com/containerd/containerd/v2/version
ctd_ld="-s -w -X $cv.Version=$ctd_version -X $cv.Package=github.com/containerd/containerd/v2"
build containerd containerd 1 urfave_cli_no_docs "$ctd_ld" github.com/containerd/containerd/v2/cmd/containerd
build containerd-shim-runc-v2 containerd 0 "urfave_cli_no_docs no_grpc" "$ctd_ld -extldflags -static" \
  github.com/containerd/containerd/v2/cmd/containerd-shim-runc-v2
build ctr containerd 1 urfave_cli_no_docs "$ctd_ld" github.com/containerd/containerd/v2/cmd/ctr

[ -f /usr/include/seccomp.h ] || {
  echo "build.sh: runc needs libseccomp-dev (apt-get install libseccomp-dev)" >&2
  exit 1
}
# its version comes from the VERSION file it embeds
build runc runc 1 "seccomp urfave_cli_no_docs" "-s -w" github.com/opencontainers/runc
echo "$bin"
