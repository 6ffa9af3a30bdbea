// Package sidecar holds the packages of linstor-affinity-sidecar, each one
// step of the path a PV takes (docs/design.md draws it):
//
//   - decide: the pure decision. What a PV's node affinity should be, from
//     the PV, its StorageClass and LINSTOR's view; no client of any kind.
//   - linstor: reading LINSTOR (the bulk reader, per-volume reads, replica
//     confirmation) and keeping saved state on it.
//   - kubecache: reading the API server (the compact PV cache, watches).
//   - repair: carrying out one decided action (in place, or the crash-safe
//     replace).
//   - controller: the loop that joins them; the gate before every write,
//     the brakes, demand from blocked pods, metrics and events.
//   - podconfig: where the LINSTOR settings come from.
//   - rivals: whether another controller does the same work.
//
// Their imports are held to this order by layers_test.go.
package sidecar
