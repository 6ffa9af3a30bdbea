package deploy

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/piraeusdatastore/linstor-affinity-sidecar/hack/ociimage"
)

// The image has two recipes: the Dockerfile (for people with Docker) and
// hack/ociimage (`make image`, and the image the real-pod tests run). Both
// must give the same files, user and entrypoint.
func TestDockerfileAndOCIImageAgree(t *testing.T) {
	raw, err := os.ReadFile(repoPath(t, "Dockerfile"))
	if err != nil {
		t.Fatal(err)
	}
	// The final stage: everything after the last FROM.
	var final []string
	for _, line := range strings.Split(string(raw), "\n") {
		line = strings.TrimSpace(line)
		if strings.HasPrefix(line, "FROM ") {
			final = []string{line}
			continue
		}
		if line != "" && !strings.HasPrefix(line, "#") {
			final = append(final, line)
		}
	}
	var user, entrypoint, base string
	var copies []string
	for _, line := range final {
		instr, arg, _ := strings.Cut(line, " ")
		switch instr {
		case "FROM":
			base = arg
		case "USER":
			user = arg
		case "ENTRYPOINT":
			var ep []string
			if err := json.Unmarshal([]byte(arg), &ep); err != nil {
				t.Fatalf("ENTRYPOINT %s is not the exec form: %v", arg, err)
			}
			entrypoint = strings.Join(ep, " ")
		case "COPY":
			f := strings.Fields(arg)
			copies = append(copies, f[len(f)-1])
		default:
			t.Errorf("final stage has %s; hack/ociimage would not reproduce it", instr)
		}
	}
	if base != "scratch" {
		t.Errorf("final stage FROM %s, want scratch (hack/ociimage adds no base layers)", base)
	}
	if user != ociimage.SidecarUser {
		t.Errorf("Dockerfile USER %q, hack/ociimage %q", user, ociimage.SidecarUser)
	}
	if entrypoint != ociimage.SidecarPath {
		t.Errorf("Dockerfile ENTRYPOINT %q, hack/ociimage %q", entrypoint, ociimage.SidecarPath)
	}
	if len(copies) != 1 || copies[0] != ociimage.SidecarPath {
		t.Errorf("Dockerfile copies to %v, hack/ociimage has one file %s", copies, ociimage.SidecarPath)
	}

	// And the image hack/ociimage builds says so in its config.
	bin := filepath.Join(t.TempDir(), "linstor-affinity-sidecar")
	if err := os.WriteFile(bin, []byte("#!/bin/true\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	img, err := ociimage.Build(ociimage.SidecarSpec("linux", "arm64", bin, "test"))
	if err != nil {
		t.Fatal(err)
	}
	cf, err := img.ConfigFile()
	if err != nil {
		t.Fatal(err)
	}
	if cf.Config.User != user || strings.Join(cf.Config.Entrypoint, " ") != entrypoint || cf.Architecture != "arm64" || cf.OS != "linux" {
		t.Errorf("image config user %q entrypoint %v platform %s/%s; want %q [%s] linux/arm64", cf.Config.User, cf.Config.Entrypoint, cf.OS, cf.Architecture, user, entrypoint)
	}
	layers, err := img.Layers()
	if err != nil || len(layers) != 1 {
		t.Fatalf("image has %d layers (%v), want 1", len(layers), err)
	}
}
