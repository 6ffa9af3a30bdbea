// Package testbed builds the LINSTOR CSI controller pod of a production
// cluster on the local control plane of package cluster, for the end-to-end
// tests and the demo:
//
//   - a LINSTOR controller: the in-process REST simulator (package linstorsim),
//     with node topology under the property namespace Aux/topology, as Piraeus
//     Operator v2 writes it;
//   - the real LINSTOR CSI driver (bin/linstor-csi) serving CSI on a unix
//     socket against that simulator;
//   - the real CSI external-provisioner (bin/csi-provisioner, Topology on) on
//     the same socket, so PVs are made by the provisioner from the driver's own
//     CreateVolume answer;
//   - the sidecar (linstor-affinity-sidecar) as a separate process on the same
//     socket, authenticated as the CSI controller's service account with the
//     RBAC Piraeus gives that account and nothing more.
//
// Kubernetes Node objects stand in for kubelets: each is Ready, has room for
// pods and carries the labels the kubelet would set from the driver's
// NodeGetInfo topology; a CSINode object per node lists the driver with its
// topology keys, as the node-driver-registrar would register it.
//
// With Options.CSIInPod the driver and the provisioner are not started as
// host processes: package test/pod runs them, with the sidecar, in the CSI
// controller Deployment as Piraeus Operator v2 renders it
// (OperatorCSIControllerDeployment, ApplySidecarPodTemplate, MachineEdits)
// on a real kubelet node (package test/node), from images BuildPodImages
// makes.
//
// Everything the bed starts is a child of the cluster, so Stop (or the test's
// cleanup) ends every process and removes every file, even after a failure.
package testbed
