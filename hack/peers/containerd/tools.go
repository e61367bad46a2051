//go:build tools

// Package tools pins containerd 2.4 (daemon with its CRI plugin, the runc
// shim, ctr), the peer runtime hack/k8s/node-e2e.sh compares capsa with.
// Built by hack/peers/build.sh into /var/cache/capsa-peers; nothing built
// from it is committed.
package tools

import (
	_ "github.com/containerd/containerd/v2/cmd/containerd"
	_ "github.com/containerd/containerd/v2/cmd/containerd-shim-runc-v2"
	_ "github.com/containerd/containerd/v2/cmd/ctr"
)
