// Command build-image writes the sidecar's image as an OCI archive from
// binaries built by `make image`, without a container engine:
//
//	build-image --ref linstor-affinity-sidecar:v1 --out image.tar \
//	  --binary linux/amd64=bin/amd64/linstor-affinity-sidecar \
//	  --binary linux/arm64=bin/arm64/linstor-affinity-sidecar
//
// The archive holds one multi-platform index; load it with
// `ctr images import`, `podman load` or `skopeo copy oci-archive:...`.
package main

import (
	"flag"
	"fmt"
	"os"
	"strings"

	v1 "github.com/google/go-containerregistry/pkg/v1"

	"github.com/piraeusdatastore/linstor-affinity-sidecar/hack/ociimage"
)

type binaries []string

func (b *binaries) String() string     { return strings.Join(*b, ",") }
func (b *binaries) Set(v string) error { *b = append(*b, v); return nil }

func main() {
	var bins binaries
	ref := flag.String("ref", "linstor-affinity-sidecar:dev", "image reference written into the archive")
	out := flag.String("out", "linstor-affinity-sidecar.oci.tar", "OCI archive to write")
	version := flag.String("version", "dev", "version label")
	flag.Var(&bins, "binary", "os/arch=path of a sidecar binary (repeat for each platform)")
	flag.Parse()
	if len(bins) == 0 {
		fmt.Fprintln(os.Stderr, "build-image: at least one --binary os/arch=path")
		os.Exit(2)
	}
	var imgs []v1.Image
	for _, b := range bins {
		platform, file, ok := strings.Cut(b, "=")
		osName, arch, ok2 := strings.Cut(platform, "/")
		if !ok || !ok2 {
			fmt.Fprintf(os.Stderr, "build-image: --binary %q: want os/arch=path\n", b)
			os.Exit(2)
		}
		img, err := ociimage.Build(ociimage.SidecarSpec(osName, arch, file, *version))
		if err != nil {
			fmt.Fprintf(os.Stderr, "build-image: %s: %v\n", platform, err)
			os.Exit(1)
		}
		imgs = append(imgs, img)
	}
	idx, err := ociimage.Index(imgs...)
	if err == nil {
		err = ociimage.WriteArchive(*out, ociimage.Named{Ref: *ref, Index: idx})
	}
	if err != nil {
		fmt.Fprintf(os.Stderr, "build-image: %v\n", err)
		os.Exit(1)
	}
	d, _ := idx.Digest()
	fmt.Printf("%s: %s (%s) for %s\n", *out, *ref, d, bins.String())
}
