// Package faults is the fault suite: on the test bed (a real control plane,
// LINSTOR CSI, the external-provisioner, the LINSTOR simulator and the
// sidecar as separate processes) it crashes the sidecar after every step of
// the replace, breaks LINSTOR's answers, restarts the API server, races
// users' edits against repairs and kills the leader of two sidecars, and
// after each case proves that nothing was lost: every PV exists with the
// affinity of its replicas, every claim is Bound to the same PV, no volume
// was deleted in LINSTOR, no saved state is left and the sidecar is healthy.
//
// `go test ./test/faults/` runs a fast subset (one round of each case);
// FAULTS_FULL=1 (`make test-faults`) runs the full counts. FAULTS_RACE=1
// builds the sidecar with the race detector. Every test skips under -short.
// The matrix and its last results are in docs/reliability.md.
package faults
