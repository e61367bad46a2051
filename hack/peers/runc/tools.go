//go:build tools

// Package tools pins runc 1.5, the OCI runtime containerd's shim runs in
// hack/k8s/node-e2e.sh's peer run. Built by hack/peers/build.sh into
// /var/cache/capsa-peers; nothing built from it is committed.
package tools

import _ "github.com/opencontainers/runc"
