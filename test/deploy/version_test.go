package deploy

import (
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
)

// The file VERSION names the version; everything a release ships must say the
// same: the chart's appVersion (and version), the image tags and kustomize
// refs in patches/, a CHANGELOG section. make release-check runs this test
// and checks the binary's --version.
func TestVersionIsTheSameEverywhere(t *testing.T) {
	data, err := os.ReadFile(repoPath(t, "VERSION"))
	if err != nil {
		t.Fatal(err)
	}
	version := strings.TrimSpace(string(data))
	if !regexp.MustCompile(`^v[0-9]+\.[0-9]+\.[0-9]+(-[0-9A-Za-z.-]+)?$`).MatchString(version) {
		t.Fatalf("VERSION %q is not v<major>.<minor>.<patch>[-pre]", version)
	}
	semver := strings.TrimPrefix(version, "v")

	var chart struct {
		Version    string `json:"version"`
		AppVersion string `json:"appVersion"`
	}
	raw, err := os.ReadFile(filepath.Join(chartDir(t), "Chart.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	for _, line := range strings.Split(string(raw), "\n") {
		if v, ok := strings.CutPrefix(line, "version:"); ok {
			chart.Version = strings.TrimSpace(v)
		}
		if v, ok := strings.CutPrefix(line, "appVersion:"); ok {
			chart.AppVersion = strings.Trim(strings.TrimSpace(v), `"`)
		}
	}
	if chart.AppVersion != version || chart.Version != semver {
		t.Errorf("Chart.yaml version %q appVersion %q, want %q and %q (VERSION)", chart.Version, chart.AppVersion, semver, version)
	}

	image := regexp.MustCompile(`linstor-affinity-sidecar:(v[0-9A-Za-z.+-]+)`)
	ref := regexp.MustCompile(`\?ref=([0-9A-Za-z.+-]+)`)
	found := 0
	err = filepath.WalkDir(repoPath(t, "patches"), func(path string, d os.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		content, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		for _, re := range []*regexp.Regexp{image, ref} {
			for _, m := range re.FindAllStringSubmatch(string(content), -1) {
				found++
				if m[1] != version {
					t.Errorf("%s: %s, want %s (VERSION)", path, m[0], version)
				}
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if found < 4 {
		t.Errorf("only %d image tags and refs found in patches/; the check itself is broken", found)
	}

	changelog, err := os.ReadFile(repoPath(t, "CHANGELOG.md"))
	if err != nil {
		t.Fatal(err)
	}
	if !regexp.MustCompile(`(?m)^## \[` + regexp.QuoteMeta(semver) + `\]`).Match(changelog) {
		t.Errorf("CHANGELOG.md has no section ## [%s]", semver)
	}
}

// TestVersionFlag checks --version prints the stamped version and exits 0.
func TestVersionFlag(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the sidecar; skipped with -short")
	}
	bin := filepath.Join(t.TempDir(), "linstor-affinity-sidecar")
	if _, err := run(t, repoPath(t), nil, "go", "build", "-ldflags", "-X main.version=v9.8.7 -X main.commit=abc1234", "-o", bin, "./cmd/linstor-affinity-sidecar"); err != nil {
		t.Fatal(err)
	}
	out, err := run(t, "", nil, bin, "--version")
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(out, "linstor-affinity-sidecar v9.8.7 (commit abc1234) go") {
		t.Errorf("--version printed %q", out)
	}
}
