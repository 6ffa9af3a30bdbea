package controller

import "testing"

func TestAPIResource(t *testing.T) {
	for path, want := range map[string]string{
		"/api/v1/persistentvolumes":                                    "persistentvolumes",
		"/api/v1/persistentvolumes/{name}":                             "persistentvolumes",
		"/api/v1/namespaces/{namespace}/events":                        "events",
		"/api/v1/namespaces/{namespace}":                               "namespaces",
		"/apis/coordination.k8s.io/v1/namespaces/{namespace}/leases/x": "leases",
		"/apis/storage.k8s.io/v1/storageclasses":                       "storageclasses",
		"/version":                                                     "other",
		"/apis":                                                        "other",
	} {
		if got := APIResource(path); got != want {
			t.Errorf("APIResource(%q) = %q, want %q", path, got, want)
		}
	}
}
