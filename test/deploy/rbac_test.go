package deploy

import (
	"go/ast"
	"go/parser"
	"go/token"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"testing"
)

// The chart's RBAC is derived here from the code: every Kubernetes API call
// of the packages the chart's pod runs is found in their syntax trees and
// turned into (group/resource, verb). This is a static derivation, not a
// record of the requests an e2e run makes: it sees calls through the typed
// clientset (kube.CoreV1().PersistentVolumes().Patch(...)) and informers
// (factory.Core().V1().Pods().Informer()), and knows the two libraries that
// make requests of their own (client-go's event recorder and leader
// election) by what they are documented to send.

// scannedPackages are the packages of the binary whose API calls the chart's
// pod can make: cmd/ and every package under sidecar/ but those of
// notScanned.
func scannedPackages(t testing.TB) []string {
	t.Helper()
	pkgs := []string{"cmd/linstor-affinity-sidecar"}
	root := repoPath(t)
	err := filepath.WalkDir(filepath.Join(root, "sidecar"), func(path string, d os.DirEntry, err error) error {
		if err != nil || !d.IsDir() {
			return err
		}
		rel, _ := filepath.Rel(root, path)
		if notScanned[rel] || strings.HasPrefix(rel, "sidecar/internal") || filepath.Base(rel) == "testdata" {
			return filepath.SkipDir
		}
		if files, _ := filepath.Glob(filepath.Join(path, "*.go")); len(files) > 0 {
			pkgs = append(pkgs, rel)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return pkgs
}

// notScanned are the packages under sidecar/ left out. sidecar/podconfig
// reads the sidecar's own pod and the Secrets and ConfigMaps the LINSTOR CSI
// container references, which the chart turns off (--csi-container=)
// because its pod has no such container. sidecar/internal holds test helpers
// only (no product package imports it, sidecar/layers_test.go).
var notScanned = map[string]bool{"sidecar/podconfig": true}

// clientGroups maps the typed clientset's group accessors to API groups.
var clientGroups = map[string]string{
	"CoreV1": "", "StorageV1": "storage.k8s.io", "CoordinationV1": "coordination.k8s.io", "EventsV1": "events.k8s.io",
}

// informerGroups maps the informer factory's group accessors to API groups.
var informerGroups = map[string]string{"Core": "", "Storage": "storage.k8s.io", "Coordination": "coordination.k8s.io"}

// namespacedResources are granted by the Role in the release namespace.
var namespacedResources = map[string]bool{"coordination.k8s.io/leases": true}

// codeRequests returns what the code asks of the API server, as
// "group/resource" -> sorted verbs, split into cluster-wide requests (the
// ClusterRole) and those in the release namespace (the Role).
func codeRequests(t testing.TB) (cluster, namespaced map[string][]string) {
	t.Helper()
	verbs := map[string]map[string]bool{}
	add := func(group, resource string, vs ...string) {
		key := group + "/" + resource
		if verbs[key] == nil {
			verbs[key] = map[string]bool{}
		}
		for _, v := range vs {
			verbs[key][v] = true
		}
	}
	fset := token.NewFileSet()
	for _, pkg := range scannedPackages(t) {
		dir := repoPath(t, pkg)
		entries, err := os.ReadDir(dir)
		if err != nil {
			t.Fatal(err)
		}
		for _, e := range entries {
			name := e.Name()
			if !strings.HasSuffix(name, ".go") || strings.HasSuffix(name, "_test.go") {
				continue
			}
			f, err := parser.ParseFile(fset, filepath.Join(dir, name), nil, 0)
			if err != nil {
				t.Fatal(err)
			}
			inner := map[*ast.CallExpr]bool{}
			ast.Inspect(f, func(n ast.Node) bool {
				call, ok := n.(*ast.CallExpr)
				if !ok || inner[call] {
					return true
				}
				chain, calls := callChain(call)
				for _, c := range calls[1:] {
					inner[c] = true
				}
				if len(chain) == 0 {
					return true
				}
				where := fset.Position(call.Pos()).String()
				last := chain[len(chain)-1]
				if last == "NewLeaderElection" || isPackageCall(call, "resourcelock", "New") {
					// csi-lib-utils' or client-go's Lease lock: get, then
					// create or update.
					add("coordination.k8s.io", "leases", "get", "create", "update")
					return true
				}
				if last == "RESTClient" && len(chain) >= 2 && chain[len(chain)-2] == "CoreV1" {
					// The compact PV cache (sidecar/kubecache/pvstream.go): the core
					// REST client is handed to NewPVListerWatcher, which
					// lists and watches PVs, nothing else. Handed anywhere
					// else, its verbs cannot be told.
					if !handsToPVCache(f) {
						t.Errorf("%s: core/v1 REST client handed on, not to NewPVListerWatcher: cannot tell its verbs", where)
					}
					add("", "persistentvolumes", "list", "watch")
					return true
				}
				if len(chain) >= 3 {
					if group, ok := clientGroups[chain[len(chain)-3]]; ok {
						add(group, strings.ToLower(chain[len(chain)-2]), strings.ToLower(last))
						return true
					}
				}
				if len(chain) >= 2 {
					if group, ok := clientGroups[chain[len(chain)-2]]; ok {
						// kube.CoreV1().Events("") handed to the event
						// recorder, which creates events and patches
						// repeated ones. Any other client handed on cannot
						// be judged here.
						resource := strings.ToLower(last)
						if resource != "events" {
							t.Errorf("%s: %s client handed on: cannot tell its verbs", where, resource)
						}
						add(group, resource, "create", "patch")
						return true
					}
				}
				// factory.Core().V1().PersistentVolumes(), with or without
				// .Lister()/.Informer(): an informer lists and watches.
				for i := 0; i+2 < len(chain); i++ {
					if group, ok := informerGroups[chain[i]]; ok && chain[i+1] == "V1" {
						add(group, strings.ToLower(chain[i+2]), "list", "watch")
						break
					}
				}
				return true
			})
		}
	}
	cluster, namespaced = map[string][]string{}, map[string][]string{}
	for key, set := range verbs {
		var vs []string
		for v := range set {
			vs = append(vs, v)
		}
		sort.Strings(vs)
		if namespacedResources[key] {
			namespaced[key] = vs
		} else {
			cluster[key] = vs
		}
	}
	return cluster, namespaced
}

// callChain flattens a call like a.B().C(x).D() into ["B", "C", "D"]: the
// names of the calls of the chain, outermost last, and the calls themselves,
// outermost first. Non-call selectors (field access such as e.Kube) end the
// chain.
func callChain(call *ast.CallExpr) ([]string, []*ast.CallExpr) {
	var names []string
	calls := []*ast.CallExpr{call}
	for {
		sel, ok := call.Fun.(*ast.SelectorExpr)
		if !ok {
			break
		}
		names = append(names, sel.Sel.Name)
		inner, ok := sel.X.(*ast.CallExpr)
		if !ok {
			break
		}
		call = inner
		calls = append(calls, inner)
	}
	slices.Reverse(names)
	return names, calls
}

// isPackageCall reports whether call is pkg.name(...).
func isPackageCall(call *ast.CallExpr, pkg, name string) bool {
	sel, ok := call.Fun.(*ast.SelectorExpr)
	if !ok || sel.Sel.Name != name {
		return false
	}
	id, ok := sel.X.(*ast.Ident)
	return ok && id.Name == pkg
}

// TestCodeRequestsFindsTheKnownCalls guards the derivation itself: calls it
// must see, so a change in how the code is written cannot silently empty
// the list the chart is compared with.
func TestCodeRequestsFindsTheKnownCalls(t *testing.T) {
	cluster, namespaced := codeRequests(t)
	for key, verb := range map[string]string{
		"/persistentvolumes":            "patch",  // sidecar/repair/execute.go, inplace.go
		"storage.k8s.io/storageclasses": "watch",  // the StorageClass informer
		"/events":                       "create", // the event recorder
		"/pods":                         "watch",  // sidecar/rivals
	} {
		if !slices.Contains(cluster[key], verb) {
			t.Errorf("derived %s verbs %v lack %s", key, cluster[key], verb)
		}
	}
	if !slices.Equal(namespaced["coordination.k8s.io/leases"], []string{"create", "get", "update"}) {
		t.Errorf("leader election Lease verbs = %v", namespaced["coordination.k8s.io/leases"])
	}
}

// handsToPVCache reports whether file f calls NewPVListerWatcher, the one
// taker of the core REST client.
func handsToPVCache(f *ast.File) bool {
	found := false
	ast.Inspect(f, func(n ast.Node) bool {
		call, ok := n.(*ast.CallExpr)
		if !ok {
			return !found
		}
		switch fn := call.Fun.(type) {
		case *ast.Ident:
			found = found || fn.Name == "NewPVListerWatcher"
		case *ast.SelectorExpr:
			found = found || fn.Sel.Name == "NewPVListerWatcher"
		}
		return !found
	})
	return found
}
