// Package deploy holds the tests of what users deploy: the patches under
// patches/ that add the sidecar to the LINSTOR CSI controller pod, and the
// Helm chart under charts/ that runs it on its own.
//
// The tests apply the patches the way Piraeus Operator and kustomize do,
// render the chart with helm, check the results field by field, and have a
// real kube-apiserver of the test bed (test/cluster) accept every object by a
// server-side dry run. They need bin/helm and bin/kustomize, built by
// hack/build-deploy-tools.sh, and the test bed's binaries; they are skipped
// with -short.
package deploy
