package e2e

import (
	"bufio"
	"encoding/json"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"testing"

	rbacv1 "k8s.io/api/rbac/v1"

	"github.com/piraeusdatastore/linstor-affinity-sidecar/test/testbed"
)

// auditLog makes the API server write an audit log (request metadata of
// every service account) into dir, and returns the flags that do it and the
// log's path.
func auditLog(t *testing.T, dir string) ([]string, string) {
	t.Helper()
	policy := filepath.Join(dir, "audit-policy.yaml")
	err := os.WriteFile(policy, []byte(`apiVersion: audit.k8s.io/v1
kind: Policy
omitStages: [RequestReceived]
rules:
  - level: Metadata
    userGroups: ["system:serviceaccounts"]
  - level: None
`), 0o600)
	must(t, err)
	log := filepath.Join(dir, "audit.log")
	return []string{"--audit-policy-file=" + policy, "--audit-log-path=" + log, "--audit-log-format=json"}, log
}

// auditedRequests reads the audit log: the requests user made, as
// "group/resource verb" with the HTTP status of each.
func auditedRequests(t *testing.T, log, user string) map[string][]int {
	t.Helper()
	f, err := os.Open(log)
	must(t, err)
	defer func() { _ = f.Close() }()
	out := map[string][]int{}
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 1<<20), 1<<24)
	for sc.Scan() {
		var ev struct {
			Stage      string `json:"stage"`
			Verb       string `json:"verb"`
			RequestURI string `json:"requestURI"`
			User       struct {
				Username string `json:"username"`
			} `json:"user"`
			ObjectRef *struct {
				Resource    string `json:"resource"`
				APIGroup    string `json:"apiGroup"`
				Subresource string `json:"subresource"`
			} `json:"objectRef"`
			ResponseStatus *struct {
				Code int `json:"code"`
			} `json:"responseStatus"`
		}
		if err := json.Unmarshal(sc.Bytes(), &ev); err != nil {
			t.Fatalf("audit log %s: %v", log, err)
		}
		// Watches are long-running: their audit event is ResponseStarted.
		done := ev.Stage == "ResponseComplete" || ev.Verb == "watch" && ev.Stage == "ResponseStarted"
		if ev.User.Username != user || !done || ev.ObjectRef == nil {
			continue
		}
		res := ev.ObjectRef.Resource
		if ev.ObjectRef.Subresource != "" {
			res += "/" + ev.ObjectRef.Subresource
		}
		code := 0
		if ev.ResponseStatus != nil {
			code = ev.ResponseStatus.Code
		}
		verbs := []string{ev.Verb}
		if ev.Verb == "watch" && strings.Contains(ev.RequestURI, "sendInitialEvents=true") {
			// client-go's streaming list (WatchListClient): the informer's
			// list, which falls back to a plain list where streaming is
			// not served.
			verbs = append(verbs, "list")
		}
		for _, v := range verbs {
			key := ev.ObjectRef.APIGroup + "/" + res + " " + v
			out[key] = append(out[key], code)
		}
	}
	must(t, sc.Err())
	return out
}

// chartGrants lists what the chart's ClusterRole and Role grant, as
// "group/resource verb".
func chartGrants(t *testing.T, rel *testbed.ChartRelease) map[string]bool {
	t.Helper()
	grants := map[string]bool{}
	add := func(rules []rbacv1.PolicyRule) {
		for _, r := range rules {
			for _, g := range r.APIGroups {
				for _, res := range r.Resources {
					for _, v := range r.Verbs {
						grants[g+"/"+res+" "+v] = true
					}
				}
			}
		}
	}
	for _, o := range rel.Objects {
		switch o := o.(type) {
		case *rbacv1.ClusterRole:
			add(o.Rules)
		case *rbacv1.Role:
			add(o.Rules)
		}
	}
	if len(grants) == 0 {
		t.Fatal("the chart rendered no RBAC rules")
	}
	return grants
}

// compareRBACWithAudit checks the chart's RBAC against the requests the
// sidecar made in this run, from the API server's audit log: every request
// was granted (none refused), and every grant was used, except those this
// run cannot exercise (named with the reason).
func compareRBACWithAudit(t *testing.T, rel *testbed.ChartRelease, log string) {
	t.Helper()
	spec := rel.Deployment.Spec.Template.Spec
	user := "system:serviceaccount:" + rel.Deployment.Namespace + ":" + spec.ServiceAccountName
	requests := auditedRequests(t, log, user)
	if len(requests) == 0 {
		t.Fatalf("no request of %s in the audit log %s", user, log)
	}
	grants := chartGrants(t, rel)
	var used []string
	for req, codes := range requests {
		used = append(used, req)
		if !grants[req] {
			t.Errorf("the sidecar made %s (HTTP %v), which the chart does not grant", req, codes)
		}
		if slices.Contains(codes, 403) {
			t.Errorf("%s refused (403) with the chart's RBAC", req)
		}
	}
	sort.Strings(used)
	t.Logf("requests of %s: %s", user, strings.Join(used, ", "))
	// Granted but not exercised by this run, and why.
	unexercised := map[string]string{
		"/events patch": "only a repeated Event is patched",
	}
	for g := range grants {
		if _, ok := requests[g]; !ok {
			if why, expected := unexercised[g]; expected {
				t.Logf("granted, not exercised here: %s (%s)", g, why)
				continue
			}
			t.Errorf("the chart grants %s, which the sidecar never requested in this run", g)
		}
	}
}
