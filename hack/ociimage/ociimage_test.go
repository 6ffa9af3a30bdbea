package ociimage

import (
	"archive/tar"
	"encoding/json"
	"errors"
	"io"
	"os"
	"path/filepath"
	"testing"
)

// The archive is an OCI image layout: oci-layout, index.json naming the
// image (both annotations), and one manifest per platform in the index.
func TestWriteArchiveHoldsAMultiPlatformIndexUnderItsName(t *testing.T) {
	dir := t.TempDir()
	bin := filepath.Join(dir, "bin")
	if err := os.WriteFile(bin, []byte("binary"), 0o755); err != nil {
		t.Fatal(err)
	}
	amd, err := Build(SidecarSpec("linux", "amd64", bin, "v1"))
	if err != nil {
		t.Fatal(err)
	}
	arm, err := Build(SidecarSpec("linux", "arm64", bin, "v1"))
	if err != nil {
		t.Fatal(err)
	}
	idx, err := Index(amd, arm)
	if err != nil {
		t.Fatal(err)
	}
	out := filepath.Join(dir, "image.tar")
	if err := WriteArchive(out, Named{Ref: "example.org/sidecar:v1", Index: idx}); err != nil {
		t.Fatal(err)
	}
	files := untar(t, out)
	if _, ok := files["oci-layout"]; !ok {
		t.Fatalf("no oci-layout in %v", keys(files))
	}
	var top struct {
		Manifests []struct {
			MediaType   string            `json:"mediaType"`
			Digest      string            `json:"digest"`
			Annotations map[string]string `json:"annotations"`
		} `json:"manifests"`
	}
	if err := json.Unmarshal(files["index.json"], &top); err != nil {
		t.Fatal(err)
	}
	if len(top.Manifests) != 1 {
		t.Fatalf("index.json has %d entries, want 1", len(top.Manifests))
	}
	m := top.Manifests[0]
	if m.Annotations["io.containerd.image.name"] != "example.org/sidecar:v1" || m.Annotations["org.opencontainers.image.ref.name"] != "example.org/sidecar:v1" {
		t.Errorf("annotations %v do not name the image", m.Annotations)
	}
	var inner struct {
		Manifests []struct {
			Platform struct {
				OS           string `json:"os"`
				Architecture string `json:"architecture"`
			} `json:"platform"`
		} `json:"manifests"`
	}
	blob := files["blobs/sha256/"+m.Digest[len("sha256:"):]]
	if err := json.Unmarshal(blob, &inner); err != nil {
		t.Fatal(err)
	}
	var platforms []string
	for _, e := range inner.Manifests {
		platforms = append(platforms, e.Platform.OS+"/"+e.Platform.Architecture)
	}
	if len(platforms) != 2 || platforms[0] != "linux/amd64" || platforms[1] != "linux/arm64" {
		t.Errorf("platforms %v, want linux/amd64 and linux/arm64", platforms)
	}
}

func untar(t *testing.T, path string) map[string][]byte {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close() //nolint:errcheck // read-only
	files := map[string][]byte{}
	tr := tar.NewReader(f)
	for {
		h, err := tr.Next()
		if errors.Is(err, io.EOF) {
			return files
		}
		if err != nil {
			t.Fatal(err)
		}
		if h.Typeflag == tar.TypeReg {
			b, err := io.ReadAll(tr)
			if err != nil {
				t.Fatal(err)
			}
			files[h.Name] = b
		}
	}
}

func keys(m map[string][]byte) []string {
	var ks []string
	for k := range m {
		ks = append(ks, k)
	}
	return ks
}
