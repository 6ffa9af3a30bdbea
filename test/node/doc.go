// Package node runs a real Kubernetes node for the test bed: containerd (with
// its CRI plugin and runc) and kubelet, both built or installed by the
// project's scripts, registered with a control plane of package cluster.
//
// The node is made for these machines: cgroup v1 hierarchies, no swap, no
// systemd, no network but loopback. So kubelet runs with the cgroupfs driver,
// failCgroupV1: false, no QoS cgroups and no node allocatable enforcement,
// and pods use hostNetwork: containerd gets no CNI configuration at all (the
// node stays NotReady for the network, which only refuses pods that need a
// pod network; kubelet runs hostNetwork pods).
//
// Like the control plane, everything the node starts runs in a process group
// with a parent-death signal and keeps its state in one temp dir. Stop
// removes every container (runc, under the node's own runc root), kills the
// containerd shims of this node, unmounts everything under the temp dir,
// removes the node's cgroups and restores the kernel settings kubelet
// changed, even when a test failed.
package node
