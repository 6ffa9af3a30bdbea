// Package csiprobe speaks CSI to the driver the sidecar is attached to, over
// the unix socket they share in the CSI controller pod.
//
// The sidecar asks the driver, not its own configuration, for everything the
// driver knows: its name (so only its own PVs are touched), whether it uses
// topology, whether it is ready, and per volume whether it still exists and
// is healthy. Every call is bounded by the per-call timeout given to
// Connect, so a hung driver delays a sync by at most that long; the gRPC
// connection (from csi-lib-utils, as in every kubernetes-csi sidecar)
// reconnects on its own when the driver container restarts.
package csiprobe
