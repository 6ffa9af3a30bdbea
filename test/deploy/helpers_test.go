package deploy

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	utilyaml "k8s.io/apimachinery/pkg/util/yaml"
	"sigs.k8s.io/yaml"

	"github.com/piraeusdatastore/linstor-affinity-sidecar/test/cluster"
)

// repoPath returns the absolute path of a file of the repository.
func repoPath(t testing.TB, elem ...string) string {
	t.Helper()
	root, err := cluster.RepoRoot()
	if err != nil {
		t.Fatal(err)
	}
	return filepath.Join(append([]string{root}, elem...)...)
}

// tool returns the path of bin/<name>. Like the test bed's own binaries, a
// missing tool fails the test (a broken build must not pass silently) unless
// E2E_SKIP_MISSING=1 turns that into a skip. With -short the test is skipped.
func tool(t testing.TB, name string) string {
	t.Helper()
	if testing.Short() {
		t.Skipf("runs bin/%s; skipped with -short", name)
	}
	p := repoPath(t, "bin", name)
	if st, err := os.Stat(p); err != nil || st.IsDir() || st.Mode().Perm()&0o111 == 0 {
		cluster.SkipOrFatal(t, fmt.Errorf("%s (built by hack/build-deploy-tools.sh): %w", p, cluster.ErrMissingBinary))
	}
	return p
}

// run runs a tool and returns its standard output; a non-zero exit is an
// error that carries the standard error.
func run(t testing.TB, dir string, env []string, path string, args ...string) (string, error) {
	t.Helper()
	cmd := exec.Command(path, args...)
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), env...)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		return stdout.String(), fmt.Errorf("%s %s: %w\n%s", filepath.Base(path), strings.Join(args, " "), err, stderr.String())
	}
	return stdout.String(), nil
}

// readYAML decodes one YAML file strictly: an unknown field is an error.
func readYAML(t testing.TB, path string, into any) {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if err := yaml.UnmarshalStrict(data, into); err != nil {
		t.Fatalf("%s: %v", path, err)
	}
}

// splitManifests decodes a stream of YAML documents (helm template, kustomize
// build) into objects, leaving out empty documents.
func splitManifests(stream string) ([]*unstructured.Unstructured, error) {
	r := utilyaml.NewYAMLReader(bufio.NewReader(strings.NewReader(stream)))
	var objs []*unstructured.Unstructured
	for {
		doc, err := r.Read()
		if errors.Is(err, io.EOF) {
			return objs, nil
		}
		if err != nil {
			return nil, err
		}
		js, err := yaml.YAMLToJSON(doc)
		if err != nil {
			return nil, fmt.Errorf("document %d: %w", len(objs)+1, err)
		}
		if bytes.Equal(bytes.TrimSpace(js), []byte("null")) {
			continue
		}
		u := &unstructured.Unstructured{}
		if err := u.UnmarshalJSON(js); err != nil {
			return nil, fmt.Errorf("document %d: %w\n%s", len(objs)+1, err, doc)
		}
		objs = append(objs, u)
	}
}

// container returns the container called name, or nil.
func container(spec *corev1.PodSpec, name string) *corev1.Container {
	for i := range spec.Containers {
		if spec.Containers[i].Name == name {
			return &spec.Containers[i]
		}
	}
	return nil
}

// envValue returns the plain value of the environment variable name and
// whether it is set.
func envValue(c *corev1.Container, name string) (string, bool) {
	for _, e := range c.Env {
		if e.Name == name {
			return e.Value, true
		}
	}
	return "", false
}
