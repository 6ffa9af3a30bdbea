// Package csifake is an in-process CSI driver for tests: it serves the
// Identity and Controller calls that csiprobe (and through it the sidecar)
// makes, over a real unix socket, so that tests exercise the same gRPC,
// socket and reconnect paths as production without a LINSTOR cluster.
//
// Out of the box it answers like LINSTOR CSI: driver name
// "linstor.csi.linbit.com", Probe without a ready flag, the plugin and
// controller capabilities LINSTOR CSI advertises (including the legacy
// VOLUME_CONDITION capability), NotFound for unknown volumes and zero
// capacity for unknown segments. Every answer can be changed at runtime,
// from any goroutine, while clients are connected.
//
// Only the calls csiprobe makes are implemented; every other CSI method
// answers codes.Unimplemented.
package csifake
