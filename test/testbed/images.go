package testbed

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"

	"github.com/piraeusdatastore/linstor-affinity-sidecar/hack/ociimage"
	"github.com/piraeusdatastore/linstor-affinity-sidecar/test/cluster"
	"github.com/piraeusdatastore/linstor-affinity-sidecar/test/node"
)

// Images of the CSI controller pod on the test node: built here from this
// checkout and bin/ (hack/ociimage), imported into the node's containerd.
// They live under e2e.local so nobody mistakes them for the published ones.
const (
	SidecarImage        = "e2e.local/linstor-affinity-sidecar:test"
	LinstorCSIImage     = "e2e.local/piraeus-csi:v1.6.4"
	CSIProvisionerImage = "e2e.local/csi-provisioner:v5.3.0"
)

// BuildPodImages builds the sidecar (as `make build` does), the pause
// binary, and the images of the sidecar (ociimage.SidecarSpec: the
// Dockerfile's file, user and entrypoint), LINSTOR CSI, the external
// provisioner and the pause container, and writes them into one OCI archive
// in dir. The LINSTOR CSI and provisioner binaries come from bin/ with the
// shared libraries they link against.
func BuildPodImages(ctx context.Context, dir string) (string, error) {
	sidecar, err := BuildSidecarWith(ctx, dir, BuildOptions{Release: true})
	if err != nil {
		return "", err
	}
	root, err := cluster.RepoRoot()
	if err != nil {
		return "", err
	}
	pause := filepath.Join(dir, "pause")
	cmd := exec.CommandContext(ctx, "go", "build", "-trimpath", "-ldflags", "-s -w", "-o", pause, "./test/node/pause")
	cmd.Dir, cmd.Env = root, append(os.Environ(), "CGO_ENABLED=0")
	if out, err := cmd.CombinedOutput(); err != nil {
		return "", fmt.Errorf("build pause: %w\n%s", err, out)
	}
	bin, err := cluster.DefaultBinDir()
	if err != nil {
		return "", err
	}
	arch := runtime.GOARCH
	specs := map[string]ociimage.Spec{
		SidecarImage: ociimage.SidecarSpec("linux", arch, sidecar, "test"),
		LinstorCSIImage: {OS: "linux", Arch: arch,
			Files:      []ociimage.File{{Src: filepath.Join(bin, "linstor-csi"), Dst: "/linstor-csi"}},
			Entrypoint: []string{"/linstor-csi"}},
		CSIProvisionerImage: {OS: "linux", Arch: arch,
			Files:      []ociimage.File{{Src: filepath.Join(bin, "csi-provisioner"), Dst: "/csi-provisioner"}},
			Entrypoint: []string{"/csi-provisioner"}},
		node.PauseImage: {OS: "linux", Arch: arch,
			Files:      []ociimage.File{{Src: pause, Dst: "/pause"}},
			Entrypoint: []string{"/pause"}},
	}
	var named []ociimage.Named
	for ref, s := range specs {
		s, err := ociimage.WithSharedLibraries(s)
		if err != nil {
			return "", fmt.Errorf("image %s: %w", ref, err)
		}
		img, err := ociimage.Build(s)
		if err != nil {
			return "", fmt.Errorf("image %s: %w", ref, err)
		}
		named = append(named, ociimage.Named{Ref: ref, Image: img})
	}
	archive := filepath.Join(dir, "pod-images.oci.tar")
	if err := ociimage.WriteArchive(archive, named...); err != nil {
		return "", err
	}
	return archive, nil
}
