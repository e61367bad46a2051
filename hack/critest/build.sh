#!/usr/bin/env bash
# Builds critest v1.37.0 (our conformance bar), crictl v1.37.0 and critest
# v1.26.1 (the older bar, kept passing) from Go modules, outside the
# repository: binaries into $CAPSA_CRITEST_CACHE/bin (default
# /var/cache/capsa-critest/bin), the Go build cache and the v1.26.1 source
# copy beside them. Quick when the binaries are already there.
#
#   hack/critest/build.sh              all three
#   hack/critest/build.sh v1.37.0      critest + crictl v1.37.0 only (what CI needs)
#   hack/critest/build.sh v1.26.1      critest v1.26.1 only
#
# critest is a Go test binary (cmd/critest holds only a _test.go file), so it
# is built with `go test -c`. v1.37.0 comes through the tools module in this
# directory (go.mod/go.sum pin cri-tools and, through its go.mod, every
# dependency). v1.26.1 predates the sigs.k8s.io module path: its module is
# github.com/kubernetes-sigs/cri-tools, and its go.mod replaces the k8s.io
# staging modules with k8s.io/kubernetes/staging/... pseudo-versions the
# module proxy does not serve. The script copies that module's source out of
# the module cache and points those replacements at the published staging
# modules of the same Kubernetes release (v0.26.0, cut from the same commit);
# go verifies them against the checksum database as it adds them.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
cache="${CAPSA_CRITEST_CACHE:-/var/cache/capsa-critest}"
bin="$cache/bin"
mkdir -p "$bin" "$cache/src"
export GOCACHE="${GOCACHE:-$cache/go-build}"
export GOFLAGS=
# The machine is shared: one package at a time, at low priority.
build=(nice -n 10 go)
par=(-p "${CAPSA_CRITEST_GO_P:-1}")

command -v go >/dev/null || {
  echo "critest/build: go not found (Go 1.26 or later)" >&2
  exit 1
}

# up_to_date BINARY VERSION: BINARY exists and reports VERSION.
up_to_date() {
  [[ -x "$1" ]] && "$1" --version 2>/dev/null | grep -Eq "version:? ${2#v}\$"
}

build_137() {
  local v=v1.37.0 ld="-X sigs.k8s.io/cri-tools/pkg/version.Version=${v#v}"
  if ! up_to_date "$bin/critest-$v" "$v"; then
    echo "critest/build: critest $v"
    (cd "$here" && "${build[@]}" test "${par[@]}" -c -trimpath -ldflags "$ld" \
      -o "$bin/critest-$v.new" sigs.k8s.io/cri-tools/cmd/critest)
    mv "$bin/critest-$v.new" "$bin/critest-$v"
  fi
  if ! up_to_date "$bin/crictl" "$v"; then
    echo "critest/build: crictl $v"
    GOBIN="$bin" "${build[@]}" install "${par[@]}" -trimpath -ldflags "$ld" "sigs.k8s.io/cri-tools/cmd/crictl@$v"
  fi
}

build_126() {
  local v=v1.26.1 mod=github.com/kubernetes-sigs/cri-tools
  local ld="-X $mod/pkg/version.Version=${v#v}" src="$cache/src/cri-tools-$v"
  up_to_date "$bin/critest-$v" "$v" && return
  echo "critest/build: critest $v"
  local dir
  dir="$(go mod download -json "$mod@$v" | sed -n 's/^\s*"Dir": "\(.*\)",$/\1/p')"
  [[ -d "$dir" ]] || {
    echo "critest/build: go mod download $mod@$v gave no source" >&2
    exit 1
  }
  rm -rf "$src"
  cp -r "$dir" "$src"
  chmod -R u+w "$src"
  sed -i -E 's#^(\s*)(k8s\.io/[a-z-]+) => k8s\.io/kubernetes/staging/src/k8s\.io/[a-z-]+ v0\.0\.0-20221208195143-b46a3f887ca9$#\1\2 => \2 v0.26.0#' "$src/go.mod"
  if grep -q 'k8s.io/kubernetes/staging' "$src/go.mod"; then
    echo "critest/build: $src/go.mod still names staging pseudo-versions" >&2
    exit 1
  fi
  # The module zip holds only vendor/modules.txt, so no -mod=vendor; -mod=mod
  # lets go add the checksums of the published staging modules to go.sum.
  (cd "$src" && "${build[@]}" test "${par[@]}" -mod=mod -c -trimpath -ldflags "$ld" \
    -o "$bin/critest-$v.new" ./cmd/critest)
  mv "$bin/critest-$v.new" "$bin/critest-$v"
}

versions=("$@")
((${#versions[@]})) || versions=(v1.37.0 v1.26.1)
for v in "${versions[@]}"; do
  case "$v" in
    v1.37.0) build_137 ;;
    v1.26.1) build_126 ;;
    *)
      echo "critest/build: unknown version $v (v1.37.0 or v1.26.1)" >&2
      exit 2
      ;;
  esac
done
ls -l "$bin"
