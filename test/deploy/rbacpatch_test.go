package deploy

import (
	"context"
	"os"
	"testing"
	"time"

	authorizationv1 "k8s.io/api/authorization/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/piraeusdatastore/linstor-affinity-sidecar/sidecar/podconfig"
	"github.com/piraeusdatastore/linstor-affinity-sidecar/test/cluster"
)

// testConfigMapReaderPatch applies the file the sidecar names when it may not
// read a CA ConfigMap, as its comment says (kubectl apply -n
// piraeus-datastore), and asks the API server's RBAC authorizer what the CSI
// controller's service account may then do: get ConfigMaps of its namespace,
// and nothing more.
func testConfigMapReaderPatch(ctx context.Context, t *testing.T, c *cluster.Cluster) {
	path := repoPath(t, podconfig.ConfigMapRBACPatch)
	if _, err := os.Stat(path); err != nil {
		t.Fatalf("the file the sidecar's error message names: %v", err)
	}
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	objs, err := splitManifests(string(data))
	if err != nil {
		t.Fatal(err)
	}
	if len(objs) != 2 {
		t.Fatalf("%s: want a Role and a RoleBinding, got %d objects", path, len(objs))
	}
	m := index(t, objs)
	var role rbacv1.Role
	m.get(t, "Role", "linstor-affinity-sidecar-configmap-reader", &role)
	var binding rbacv1.RoleBinding
	m.get(t, "RoleBinding", "linstor-affinity-sidecar-configmap-reader", &binding)
	role.Namespace, binding.Namespace = namespace, namespace
	if _, err := c.Client().RbacV1().Roles(namespace).Create(ctx, &role, metav1.CreateOptions{FieldValidation: metav1.FieldValidationStrict}); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Client().RbacV1().RoleBindings(namespace).Create(ctx, &binding, metav1.CreateOptions{FieldValidation: metav1.FieldValidationStrict}); err != nil {
		t.Fatal(err)
	}
	user := "system:serviceaccount:" + namespace + ":linstor-csi-controller"
	for _, tc := range []struct {
		verb, resource, ns string
		want               bool
	}{
		{"get", "configmaps", namespace, true},
		{"list", "configmaps", namespace, false},
		{"get", "configmaps", "kube-system", false},
		{"update", "configmaps", namespace, false},
		{"get", "secrets", namespace, false},
	} {
		sar := &authorizationv1.SubjectAccessReview{Spec: authorizationv1.SubjectAccessReviewSpec{
			User:               user,
			Groups:             []string{"system:serviceaccounts", "system:serviceaccounts:" + namespace, "system:authenticated"},
			ResourceAttributes: &authorizationv1.ResourceAttributes{Verb: tc.verb, Resource: tc.resource, Namespace: tc.ns, Name: "linstor-ca"},
		}}
		// The API server's RBAC authorizer learns of the new Role and
		// RoleBinding from its informers, a moment after they were
		// created: a grant is asked again for a few seconds (the first
		// case is the grant, so the refusals after it see them too).
		var got *authorizationv1.SubjectAccessReview
		for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(100 * time.Millisecond) {
			got, err = c.Client().AuthorizationV1().SubjectAccessReviews().Create(ctx, sar, metav1.CreateOptions{})
			if err != nil {
				t.Fatal(err)
			}
			if got.Status.Allowed || !tc.want || time.Now().After(deadline) {
				break
			}
		}
		if got.Status.Allowed != tc.want {
			t.Errorf("%s %s in %s: allowed = %v, want %v (%s)", tc.verb, tc.resource, tc.ns, got.Status.Allowed, tc.want, got.Status.Reason)
		}
	}
}
