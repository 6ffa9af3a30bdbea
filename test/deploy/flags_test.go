package deploy

import (
	"errors"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// The patches and the chart pass flags to the sidecar; a flag renamed or a
// value the sidecar refuses would only show in a crash-looping pod. The
// sidecar parses and validates its flags before it needs a cluster, so with
// a kubeconfig that does not exist it must get exactly as far as loading it.
func TestSidecarAcceptsTheFlagsItIsDeployedWith(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the sidecar; skipped with -short")
	}
	bin := filepath.Join(t.TempDir(), "linstor-affinity-sidecar")
	if _, err := run(t, repoPath(t), nil, "go", "build", "-o", bin, "./cmd/linstor-affinity-sidecar"); err != nil {
		t.Fatal(err)
	}
	noKubeconfig := filepath.Join(t.TempDir(), "absent")

	deployed := map[string][]string{}
	for _, v := range patchVariants {
		deployed[v.name] = container(&v.apply(t).Spec.Template.Spec, sidecarName).Args
	}
	for _, c := range chartCases {
		_, ctr := render(t, c.values).deployment(t)
		deployed["chart/"+c.name] = ctr.Args
	}
	_, ctr := render(t, upstreamValues(t)).deployment(t)
	deployed["chart/upstream chart values"] = ctr.Args
	for name, args := range deployed {
		t.Run(name, func(t *testing.T) {
			_, err := run(t, "", []string{"KUBECONFIG="}, bin, append(args, "--kubeconfig="+noKubeconfig)...)
			var exit *exec.ExitError
			if !errors.As(err, &exit) || exit.ExitCode() != 1 || !strings.Contains(err.Error(), "kubernetes configuration") {
				t.Errorf("with args %q the sidecar should stop at loading the kubeconfig, got: %v", args, err)
			}
		})
	}
}
