// Package ociimage builds OCI images from binaries built in this repository,
// without a container engine or a registry, and writes them as OCI archives
// (an OCI image layout in a tar file) that `ctr images import` and
// `docker load`/`podman load` read.
//
// `make image` builds the sidecar's image with it for linux/amd64 and
// linux/arm64; the real-pod tests build the images of the CSI controller pod
// (sidecar, LINSTOR CSI, csi-provisioner, the pause container) with it and
// import them into the test node's containerd.
package ociimage

import (
	"archive/tar"
	"bytes"
	"fmt"
	"io"
	"io/fs"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"sort"
	"strings"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/layout"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
	"github.com/google/go-containerregistry/pkg/v1/types"
)

// Sidecar image: what the Dockerfile's final stage holds. Both must agree
// (test/deploy checks the Dockerfile against these).
const (
	// SidecarPath is the binary's path in the image and its entrypoint.
	SidecarPath = "/linstor-affinity-sidecar"
	// SidecarUser is the image's default user: root, as the kubernetes-csi
	// sidecars in the same pod, because only root may connect to the socket
	// LINSTOR CSI creates (srwxr-xr-x root root). The patch drops every
	// capability and makes the root filesystem read-only.
	SidecarUser = "0:0"
)

// File is one regular file of an image.
type File struct {
	// Src is the file on this machine.
	Src string
	// Dst is its absolute path in the image.
	Dst string
	// Mode is its permission bits; zero means 0755.
	Mode fs.FileMode
}

// Spec describes a single-layer image for one platform.
type Spec struct {
	// OS and Arch name the platform (linux, amd64).
	OS, Arch string
	// Files make the one layer; their parent directories are created.
	Files []File
	// Dirs are extra empty directories (e.g. /tmp), created 0755 (/tmp 1777).
	Dirs []string
	// Entrypoint, Cmd, User, Env, WorkingDir are the image config.
	Entrypoint []string
	Cmd        []string
	User       string
	Env        []string
	WorkingDir string
	// Labels are the image config's labels.
	Labels map[string]string
}

// SidecarSpec is the sidecar's image for a platform from its binary.
func SidecarSpec(osName, arch, binary, version string) Spec {
	return Spec{
		OS: osName, Arch: arch,
		Files:      []File{{Src: binary, Dst: SidecarPath}},
		Entrypoint: []string{SidecarPath},
		User:       SidecarUser,
		Labels: map[string]string{
			"org.opencontainers.image.title":   "linstor-affinity-sidecar",
			"org.opencontainers.image.source":  "https://github.com/piraeusdatastore/linstor-affinity-sidecar",
			"org.opencontainers.image.version": version,
		},
	}
}

// epoch is every file's modification time, so equal inputs give equal digests.
var epoch = time.Unix(0, 0).UTC()

// Build makes the image of s.
func Build(s Spec) (v1.Image, error) {
	layerTar, err := layerTarball(s)
	if err != nil {
		return nil, err
	}
	layer, err := tarball.LayerFromOpener(func() (io.ReadCloser, error) {
		return io.NopCloser(bytes.NewReader(layerTar)), nil
	}, tarball.WithMediaType(types.OCILayer))
	if err != nil {
		return nil, fmt.Errorf("layer: %w", err)
	}
	base := mutate.MediaType(empty.Image, types.OCIManifestSchema1)
	base = mutate.ConfigMediaType(base, types.OCIConfigJSON)
	img, err := mutate.Append(base, mutate.Addendum{Layer: layer, MediaType: types.OCILayer})
	if err != nil {
		return nil, fmt.Errorf("append layer: %w", err)
	}
	cf, err := img.ConfigFile()
	if err != nil {
		return nil, err
	}
	cf = cf.DeepCopy()
	cf.OS, cf.Architecture = s.OS, s.Arch
	cf.Created = v1.Time{Time: epoch}
	cf.Config.Entrypoint = s.Entrypoint
	cf.Config.Cmd = s.Cmd
	cf.Config.User = s.User
	cf.Config.Env = s.Env
	cf.Config.WorkingDir = s.WorkingDir
	cf.Config.Labels = s.Labels
	img, err = mutate.ConfigFile(img, cf)
	if err != nil {
		return nil, fmt.Errorf("config: %w", err)
	}
	return img, nil
}

// layerTarball writes the files of s, with their parent directories, as an
// uncompressed tar owned by root.
func layerTarball(s Spec) ([]byte, error) {
	dirs := map[string]int64{} // tar modes
	addParents := func(p string) {
		for d := path.Dir(p); d != "/" && d != "."; d = path.Dir(d) {
			if _, ok := dirs[d]; !ok {
				dirs[d] = 0o755
			}
		}
	}
	for _, d := range s.Dirs {
		mode := int64(0o755)
		if path.Clean(d) == "/tmp" {
			mode = 0o1777
		}
		dirs[path.Clean(d)] = mode
		addParents(path.Clean(d))
	}
	for _, f := range s.Files {
		if !path.IsAbs(f.Dst) {
			return nil, fmt.Errorf("file %s: destination %q is not absolute", f.Src, f.Dst)
		}
		addParents(f.Dst)
	}
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	names := make([]string, 0, len(dirs))
	for d := range dirs {
		names = append(names, d)
	}
	sort.Strings(names) // parents before children
	for _, d := range names {
		hdr := &tar.Header{Typeflag: tar.TypeDir, Name: strings.TrimPrefix(d, "/") + "/", Mode: dirs[d], ModTime: epoch, Format: tar.FormatPAX}
		if err := tw.WriteHeader(hdr); err != nil {
			return nil, err
		}
	}
	for _, f := range s.Files {
		data, err := os.ReadFile(f.Src)
		if err != nil {
			return nil, fmt.Errorf("image file: %w", err)
		}
		mode := f.Mode
		if mode == 0 {
			mode = 0o755
		}
		hdr := &tar.Header{Typeflag: tar.TypeReg, Name: strings.TrimPrefix(f.Dst, "/"), Mode: int64(mode.Perm()), Size: int64(len(data)), ModTime: epoch, Format: tar.FormatPAX}
		if err := tw.WriteHeader(hdr); err != nil {
			return nil, err
		}
		if _, err := tw.Write(data); err != nil {
			return nil, err
		}
	}
	if err := tw.Close(); err != nil {
		return nil, err
	}
	return buf.Bytes(), nil
}

// Index is a multi-platform image index of imgs (each image's config names
// its platform).
func Index(imgs ...v1.Image) (v1.ImageIndex, error) {
	idx := mutate.IndexMediaType(empty.Index, types.OCIImageIndex)
	var adds []mutate.IndexAddendum
	for _, img := range imgs {
		cf, err := img.ConfigFile()
		if err != nil {
			return nil, err
		}
		adds = append(adds, mutate.IndexAddendum{Add: img, Descriptor: v1.Descriptor{
			MediaType: types.OCIManifestSchema1,
			Platform:  &v1.Platform{OS: cf.OS, Architecture: cf.Architecture},
		}})
	}
	return mutate.AppendManifests(idx, adds...), nil
}

// Named is an image or index and the reference it is known by.
type Named struct {
	// Ref is the full reference, e.g. example.com/repo/name:tag.
	Ref string
	// Image or Index: exactly one is set.
	Image v1.Image
	Index v1.ImageIndex
}

// WriteArchive writes images as an OCI archive at file: an OCI image layout
// in a tar. Each entry of index.json carries its reference twice: as
// org.opencontainers.image.ref.name (the OCI convention) and as
// io.containerd.image.name (what `ctr images import` names images by).
func WriteArchive(file string, images ...Named) error {
	dir, err := os.MkdirTemp(filepath.Dir(file), ".oci-layout-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir) //nolint:errcheck // scratch
	p, err := layout.Write(dir, empty.Index)
	if err != nil {
		return fmt.Errorf("oci layout: %w", err)
	}
	for _, n := range images {
		ann := layout.WithAnnotations(map[string]string{
			"org.opencontainers.image.ref.name": n.Ref,
			"io.containerd.image.name":          n.Ref,
		})
		switch {
		case n.Image != nil:
			err = p.AppendImage(n.Image, ann)
		case n.Index != nil:
			err = p.AppendIndex(n.Index, ann)
		default:
			err = fmt.Errorf("no image")
		}
		if err != nil {
			return fmt.Errorf("image %s: %w", n.Ref, err)
		}
	}
	return tarDir(dir, file)
}

// tarDir writes the tree under dir into a tar at file, paths relative to dir.
func tarDir(dir, file string) error {
	tmp := file + ".tmp"
	out, err := os.Create(tmp)
	if err != nil {
		return err
	}
	tw := tar.NewWriter(out)
	err = filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil || p == dir {
			return err
		}
		rel, err := filepath.Rel(dir, p)
		if err != nil {
			return err
		}
		info, err := d.Info()
		if err != nil {
			return err
		}
		hdr, err := tar.FileInfoHeader(info, "")
		if err != nil {
			return err
		}
		hdr.Name = filepath.ToSlash(rel)
		if d.IsDir() {
			hdr.Name += "/"
		}
		hdr.ModTime, hdr.Uid, hdr.Gid, hdr.Uname, hdr.Gname = epoch, 0, 0, "", ""
		hdr.Format = tar.FormatPAX
		if err := tw.WriteHeader(hdr); err != nil {
			return err
		}
		if d.IsDir() {
			return nil
		}
		f, err := os.Open(p)
		if err != nil {
			return err
		}
		defer f.Close() //nolint:errcheck // read-only
		_, err = io.Copy(tw, f)
		return err
	})
	if err == nil {
		err = tw.Close()
	}
	if cerr := out.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		_ = os.Remove(tmp)
		return fmt.Errorf("write %s: %w", file, err)
	}
	return os.Rename(tmp, file)
}

// WithSharedLibraries adds the dynamic loader and the shared libraries each
// file of s links against (as ldd reports them on this machine) at the same
// paths, so a binary built with cgo runs in an image without a distribution.
// Static binaries are left alone.
func WithSharedLibraries(s Spec) (Spec, error) {
	seen := map[string]bool{}
	for _, f := range s.Files {
		seen[f.Dst] = true
	}
	var extra []File
	for _, f := range s.Files {
		out, err := exec.Command("ldd", f.Src).CombinedOutput()
		if err != nil {
			if strings.Contains(string(out), "not a dynamic executable") || strings.Contains(string(out), "statically linked") {
				continue
			}
			return s, fmt.Errorf("ldd %s: %w: %s", f.Src, err, out)
		}
		for _, line := range strings.Split(string(out), "\n") {
			for _, field := range strings.Fields(line) {
				if !strings.HasPrefix(field, "/") || seen[field] {
					continue
				}
				seen[field] = true
				extra = append(extra, File{Src: field, Dst: field, Mode: 0o755})
			}
		}
	}
	s.Files = append(s.Files, extra...)
	return s, nil
}
