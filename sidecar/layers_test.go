package sidecar

import (
	"os/exec"
	"strings"
	"testing"
)

const module = "github.com/piraeusdatastore/linstor-affinity-sidecar"

// TestPackagesImportOnlyTheirLayer holds the packages to the design: the
// decision is pure (no client of the API server, LINSTOR or the CSI driver),
// the readers and the executor do not know each other, and only the loop
// joins them. Test helpers and test/ never reach the product.
func TestPackagesImportOnlyTheirLayer(t *testing.T) {
	clients := []string{"k8s.io/client-go", "github.com/LINBIT/golinstor", "google.golang.org/grpc", "github.com/container-storage-interface"}
	testOnly := []string{module + "/sidecar/internal/", module + "/test/"}
	ours := func(names ...string) []string {
		out := make([]string, 0, len(names))
		for _, n := range names {
			out = append(out, module+"/"+n)
		}
		return out
	}
	cases := []struct {
		pkg       string
		forbidden []string
	}{
		{"sidecar/decide", append(clients, ours("sidecar/linstor", "sidecar/kubecache", "sidecar/repair", "sidecar/controller", "sidecar/podconfig", "sidecar/rivals", "csiprobe")...)},
		{"sidecar/linstor", append([]string{"google.golang.org/grpc"}, ours("sidecar/kubecache", "sidecar/repair", "sidecar/controller", "csiprobe")...)},
		{"sidecar/kubecache", append([]string{"github.com/LINBIT/golinstor", "google.golang.org/grpc"}, ours("sidecar/linstor", "sidecar/repair", "sidecar/controller", "csiprobe")...)},
		{"sidecar/repair", append([]string{"github.com/LINBIT/golinstor", "google.golang.org/grpc"}, ours("sidecar/linstor", "sidecar/kubecache", "sidecar/controller", "csiprobe")...)},
		// The loop reaches the CSI driver through its Driver interface;
		// cmd/ wires csiprobe in.
		{"sidecar/controller", append([]string{"google.golang.org/grpc"}, ours("csiprobe")...)},
		{"cmd/linstor-affinity-sidecar", nil},
	}
	for _, c := range cases {
		t.Run(c.pkg, func(t *testing.T) {
			deps := listDeps(t, c.pkg)
			if len(deps) < 10 {
				t.Fatalf("go list found only %d dependencies of %s: %v", len(deps), c.pkg, deps)
			}
			for _, d := range deps {
				for _, f := range append(c.forbidden, testOnly...) {
					if d == f || strings.HasPrefix(d, strings.TrimSuffix(f, "/")+"/") {
						t.Errorf("%s imports %s (directly or not), which its layer must not", c.pkg, d)
					}
				}
			}
		})
	}
}

// listDeps is every package pkg imports, directly or not, tests left out.
func listDeps(t *testing.T, pkg string) []string {
	t.Helper()
	out, err := exec.Command("go", "list", "-deps", "-f", "{{.ImportPath}}", module+"/"+pkg).Output()
	if err != nil {
		t.Fatalf("go list -deps %s: %v", pkg, err)
	}
	return strings.Fields(string(out))
}
