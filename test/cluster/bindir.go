package cluster

import (
	"bufio"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
)

// modulePath identifies the repository root when walking up from the working
// directory; the wrapper modules under hack/tools have go.mod files of their own.
const modulePath = "github.com/piraeusdatastore/linstor-affinity-sidecar"

// RepoRoot returns the directory of the project's go.mod, found by walking up
// from the working directory, so tests find bin/ wherever `go test` runs them.
func RepoRoot() (string, error) {
	dir, err := os.Getwd()
	if err != nil {
		return "", fmt.Errorf("working directory: %w", err)
	}
	for {
		if isProjectRoot(dir) {
			return dir, nil
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", fmt.Errorf("no go.mod of module %s above the working directory", modulePath)
		}
		dir = parent
	}
}

func isProjectRoot(dir string) bool {
	f, err := os.Open(filepath.Join(dir, "go.mod"))
	if err != nil {
		return false
	}
	defer f.Close() //nolint:errcheck // read-only
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		if rest, ok := strings.CutPrefix(line, "module "); ok {
			return strings.TrimSpace(rest) == modulePath
		}
	}
	return false
}

// DefaultBinDir returns <repo>/bin, where hack/build-tools.sh puts the peers.
func DefaultBinDir() (string, error) {
	root, err := RepoRoot()
	if err != nil {
		return "", err
	}
	return filepath.Join(root, "bin"), nil
}

// ErrMissingBinary reports that a peer binary has not been built; StartT turns
// it into a skip when E2E_SKIP_MISSING=1.
var ErrMissingBinary = errors.New("binary missing (run `make tools` or hack/build-tools.sh)")

// resolveBinary returns the path of name inside binDir, or an error wrapping
// ErrMissingBinary when it is absent or not executable.
func resolveBinary(binDir, name string) (string, error) {
	if strings.ContainsRune(name, os.PathSeparator) {
		return checkExecutable(name)
	}
	return checkExecutable(filepath.Join(binDir, name))
}

func checkExecutable(path string) (string, error) {
	st, err := os.Stat(path)
	if err != nil || st.IsDir() || st.Mode().Perm()&0o111 == 0 {
		return "", fmt.Errorf("%s: %w", path, ErrMissingBinary)
	}
	return path, nil
}

// MissingBinaries lists which of the named binaries are absent from binDir
// (the default bin directory when empty), so callers can skip with a message.
func MissingBinaries(binDir string, names ...string) ([]string, error) {
	if binDir == "" {
		d, err := DefaultBinDir()
		if err != nil {
			return nil, err
		}
		binDir = d
	}
	var missing []string
	for _, n := range names {
		if _, err := resolveBinary(binDir, n); err != nil {
			missing = append(missing, n)
		}
	}
	return missing, nil
}
