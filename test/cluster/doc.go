// Package cluster runs a throwaway Kubernetes control plane (etcd,
// kube-apiserver, kube-controller-manager, kube-scheduler) and peer processes
// such as the LINSTOR CSI driver on the loopback interface, for end-to-end
// tests, the demo and benchmarks.
//
// Everything runs from the binaries hack/build-tools.sh leaves in <repo>/bin,
// as real processes: the PV binder, the scheduler's volume topology checks and
// API validation (MutablePVNodeAffinity) behave as in a real cluster, while no
// kubelet or container runtime is needed.
//
// Processes never outlive the test binary: each runs in its own process group
// with a parent-death signal, and Stop kills the whole group.
package cluster
