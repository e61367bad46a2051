#!/usr/bin/env bash
# Builds the Kubernetes commands, etcd and (with --e2e-node) the node e2e test
# binary and the ginkgo CLI from the versions go.mod pins, into
# $CAPSA_K8S_CACHE/bin (default /var/cache/capsa-k8s). A binary already built
# from the same go.sum is reused, so a warm cache costs a few seconds. Nothing
# lands in the repository.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
cache=${CAPSA_K8S_CACHE:-/var/cache/capsa-k8s}
bin=$cache/bin
mkdir -p "$bin"
export GOCACHE=${GOCACHE_K8S:-$cache/go-build}
export GOFLAGS="-mod=mod -buildvcs=false"
export CGO_ENABLED=${CGO_ENABLED:-1}

k8s_version=$(awk '$1 == "k8s.io/kubernetes" { print $2; exit }' "$here/go.mod")
# what a binary depends on: the pinned versions (and the ldflags, below)
stamp=$(cat "$here/go.mod" "$here/go.sum" | sha256sum | cut -c1-16)
ver="k8s.io/component-base/version"
cver="k8s.io/client-go/pkg/version"
major=$(echo "$k8s_version" | sed -E 's/^v([0-9]+)\..*/\1/')
minor=$(echo "$k8s_version" | sed -E 's/^v[0-9]+\.([0-9]+)\..*/\1/')
ldflags="-s -w"
for p in $ver $cver; do
  ldflags+=" -X $p.gitVersion=$k8s_version -X $p.gitMajor=$major -X $p.gitMinor=$minor"
  ldflags+=" -X $p.gitTreeState=clean -X $p.buildDate=1970-01-01T00:00:00Z"
done

stamp=$(echo "$stamp $ldflags" | sha256sum | cut -c1-16)

want=(kubelet kube-apiserver kube-controller-manager kube-scheduler kubectl etcd)
e2e=0
for a in "$@"; do
  case "$a" in
    --e2e-node) e2e=1 ;;
    *) echo "build.sh: unknown argument $a" >&2; exit 2 ;;
  esac
done

pkg_of() {
  case "$1" in
    etcd) echo go.etcd.io/etcd/server/v3 ;;
    *) echo "k8s.io/kubernetes/cmd/$1" ;;
  esac
}

cd "$here"
todo=()
for b in "${want[@]}"; do
  [ "$(cat "$bin/.$b.stamp" 2>/dev/null)" = "$stamp" ] && [ -x "$bin/$b" ] || todo+=("$b")
done
if [ ${#todo[@]} -gt 0 ]; then
  echo "build.sh: building ${todo[*]} ($k8s_version) into $bin" >&2
  for b in "${todo[@]}"; do
    go build -trimpath -ldflags "$ldflags" -o "$bin/$b.new" "$(pkg_of "$b")"
    mv "$bin/$b.new" "$bin/$b"
    echo "$stamp" > "$bin/.$b.stamp"
  done
fi
# crictl for the scripts (down.sh removes leftover pods through it): its own
# module, so `go install` at the pinned version.
crictl_version=v1.37.0
if [ "$(cat "$bin/.crictl.stamp" 2>/dev/null)" != "$crictl_version" ] || [ ! -x "$bin/crictl" ]; then
  echo "build.sh: building crictl $crictl_version" >&2
  GOFLAGS=-buildvcs=false GOBIN="$bin" go install -trimpath "sigs.k8s.io/cri-tools/cmd/crictl@$crictl_version"
  echo "$crictl_version" >"$bin/.crictl.stamp"
fi
if [ $e2e = 1 ] && { [ "$(cat "$bin/.e2e_node.test.stamp" 2>/dev/null)" != "$stamp" ] || [ ! -x "$bin/e2e_node.test" ]; }; then
  echo "build.sh: building e2e_node.test" >&2
  go test -c -trimpath -ldflags "$ldflags" -o "$bin/e2e_node.test.new" k8s.io/kubernetes/test/e2e_node
  mv "$bin/e2e_node.test.new" "$bin/e2e_node.test"
  echo "$stamp" > "$bin/.e2e_node.test.stamp"
fi
# ginkgo, to run e2e_node.test in parallel (node-e2e.sh): the CLI at the
# version of the library the suite links, installed as its own module (its
# dependencies are not the tools module's).
if [ $e2e = 1 ]; then
  ginkgo_version=$(go list -m -f '{{.Version}}' github.com/onsi/ginkgo/v2)
  if [ "$(cat "$bin/.ginkgo.stamp" 2>/dev/null)" != "$ginkgo_version" ] || [ ! -x "$bin/ginkgo" ]; then
    echo "build.sh: building ginkgo $ginkgo_version" >&2
    GOFLAGS=-buildvcs=false GOBIN="$bin" go install -trimpath "github.com/onsi/ginkgo/v2/ginkgo@$ginkgo_version"
    echo "$ginkgo_version" >"$bin/.ginkgo.stamp"
  fi
fi
echo "$bin"
