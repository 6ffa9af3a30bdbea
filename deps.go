//go:build tools

// Package tools pins the module's dependencies while the code that imports them
// is being written; `go mod tidy` keeps what a build-tagged file imports.
package tools

import (
	_ "github.com/LINBIT/golinstor/client"
	_ "github.com/container-storage-interface/spec/lib/go/csi"
	_ "github.com/kubernetes-csi/csi-lib-utils/connection"
	_ "github.com/prometheus/client_golang/prometheus"
	_ "google.golang.org/grpc"
	_ "k8s.io/client-go/kubernetes"
	_ "k8s.io/component-base/metrics"
	_ "k8s.io/klog/v2"
)
