package deploy

import (
	"os"
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/piraeusdatastore/linstor-affinity-sidecar/sidecar/controller"
	"k8s.io/apimachinery/pkg/api/equality"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"sigs.k8s.io/yaml"
)

// The alerting rules live in one file, charts/linstor-affinity-sidecar/
// files/alerts.yaml; the chart renders it into a PrometheusRule and
// patches/monitoring/prometheusrule.yaml carries a copy for the operator path.

func alertsFile(t testing.TB) string {
	return repoPath(t, "charts", "linstor-affinity-sidecar", "files", "alerts.yaml")
}

// TestAlertRulesPassPromtool checks the rule file and runs its unit tests
// (testdata/alerts_test.yaml) with promtool, built from the Go module proxy
// by hack/build-deploy-tools.sh.
func TestAlertRulesPassPromtool(t *testing.T) {
	promtool := tool(t, "promtool")
	out, err := run(t, "", nil, promtool, "check", "rules", alertsFile(t))
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(out, "SUCCESS: 5 rules found") {
		t.Errorf("promtool check rules:\n%s", out)
	}
	out, err = run(t, repoPath(t, "test", "deploy", "testdata"), nil, promtool, "test", "rules", "alerts_test.yaml")
	if err != nil {
		t.Fatalf("%v\n%s", err, out)
	}
	if !strings.Contains(out, "SUCCESS") {
		t.Errorf("promtool test rules:\n%s", out)
	}
}

// selectorRE finds metric selectors of the sidecar's metrics in PromQL:
// the name and, if any, the label matchers in braces.
var selectorRE = regexp.MustCompile(`(linstor_affinity_sidecar_[a-z_]+)(\{([^}]*)\})?`)

// matcherRE finds the label names of label matchers.
var matcherRE = regexp.MustCompile(`([a-zA-Z_][a-zA-Z0-9_]*)\s*(=~|!~|!=|=)`)

// TestAlertRulesUseExposedMetrics checks every metric name and label the
// rules and their tests select against what the sidecar registers, so a
// renamed metric cannot leave an alert that never fires.
func TestAlertRulesUseExposedMetrics(t *testing.T) {
	m := controller.NewMetrics()
	// Vectors export nothing until a child exists: create one of each.
	m.Reconciles.WithLabelValues("success")
	m.PVs.WithLabelValues("drifted", "x")
	m.Repairs.WithLabelValues("replace", "recreate", "error")
	m.BrakeHolding.WithLabelValues("drift")
	m.RepairsHeld.WithLabelValues("drift-brake")
	families, err := m.Registry.Gather()
	if err != nil {
		t.Fatal(err)
	}
	exposed := map[string][]string{}
	for _, f := range families {
		var names []string
		for _, l := range f.GetMetric()[0].GetLabel() {
			names = append(names, l.GetName())
		}
		exposed[f.GetName()] = names
	}
	scrape := []string{"job", "instance", "namespace", "pod", "container", "endpoint"}

	for _, file := range []string{alertsFile(t), repoPath(t, "test", "deploy", "testdata", "alerts_test.yaml")} {
		data, err := os.ReadFile(file)
		if err != nil {
			t.Fatal(err)
		}
		found := 0
		for _, match := range selectorRE.FindAllStringSubmatch(string(data), -1) {
			name := match[1]
			labels, ok := exposed[name]
			if !ok {
				t.Errorf("%s: %s is not a metric of the sidecar", file, name)
				continue
			}
			found++
			for _, lm := range matcherRE.FindAllStringSubmatch(match[3], -1) {
				if !slices.Contains(labels, lm[1]) && !slices.Contains(scrape, lm[1]) {
					t.Errorf("%s: %s has no label %s (has %v)", file, name, lm[1], labels)
				}
			}
		}
		if found < 5 {
			t.Errorf("%s: only %d selectors of the sidecar's metrics found; the check itself is broken", file, found)
		}
	}
}

// TestAlertRulesShippedEverywhere checks that the chart's PrometheusRule and
// the one in patches/monitoring carry exactly the tested rule file.
func TestAlertRulesShippedEverywhere(t *testing.T) {
	var want map[string]any
	readYAML(t, alertsFile(t), &want)

	m := render(t, map[string]any{"monitoring": map[string]any{"enabled": true}})
	pr := m["PrometheusRule/"+fullname]
	if pr == nil {
		t.Fatalf("no PrometheusRule rendered with monitoring.enabled; have %v", m.keys())
	}
	if got := pr.Object["spec"]; !equality.Semantic.DeepEqual(got, want) {
		t.Errorf("chart PrometheusRule spec differs from %s", alertsFile(t))
	}
	if off := render(t, map[string]any{"monitoring": map[string]any{"enabled": true, "alerts": false}}); off["PrometheusRule/"+fullname] != nil {
		t.Error("PrometheusRule rendered with monitoring.alerts false")
	}

	path := repoPath(t, "patches", "monitoring", "prometheusrule.yaml")
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var u unstructured.Unstructured
	if err := yaml.UnmarshalStrict(data, &u.Object); err != nil {
		t.Fatal(err)
	}
	if u.GetKind() != "PrometheusRule" || u.GetAPIVersion() != "monitoring.coreos.com/v1" {
		t.Errorf("%s is a %s %s", path, u.GetAPIVersion(), u.GetKind())
	}
	if !equality.Semantic.DeepEqual(u.Object["spec"], want) {
		t.Errorf("%s spec differs from %s: copy the rules again", path, alertsFile(t))
	}
}
