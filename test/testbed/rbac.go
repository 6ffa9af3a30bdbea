package testbed

import (
	"context"
	"fmt"

	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// controllerClusterRules are the cluster-wide permissions Piraeus gives the
// CSI controller's service account (DOMAIN.md section 4). The sidecar must do
// its job with these and nothing more.
var controllerClusterRules = []rbacv1.PolicyRule{
	{APIGroups: []string{""}, Resources: []string{"persistentvolumes"}, Verbs: []string{"get", "list", "watch", "create", "delete", "patch"}},
	{APIGroups: []string{""}, Resources: []string{"persistentvolumeclaims"}, Verbs: []string{"get", "list", "watch", "update"}},
	{APIGroups: []string{"storage.k8s.io"}, Resources: []string{"storageclasses"}, Verbs: []string{"get", "list", "watch"}},
	{APIGroups: []string{""}, Resources: []string{"nodes"}, Verbs: []string{"get", "list", "watch"}},
	{APIGroups: []string{""}, Resources: []string{"events"}, Verbs: []string{"create", "patch"}},
	{APIGroups: []string{""}, Resources: []string{"secrets"}, Verbs: []string{"get", "list"}},
	{APIGroups: []string{""}, Resources: []string{"pods"}, Verbs: []string{"get", "list", "watch"}},
}

// controllerNamespaceRules are its permissions in its own namespace.
var controllerNamespaceRules = []rbacv1.PolicyRule{
	{APIGroups: []string{"coordination.k8s.io"}, Resources: []string{"leases"}, Verbs: []string{"*"}},
	{APIGroups: []string{""}, Resources: []string{"pods"}, Verbs: []string{"get"}},
}

// controllerCredentials creates the controller namespace, service account
// and RBAC, and writes a kubeconfig with a token of that account.
func (b *Bed) controllerCredentials(ctx context.Context) (string, error) {
	cs := b.Kube
	name := ControllerServiceAccount
	create := func(what string, err error) error {
		if err != nil {
			return fmt.Errorf("create %s: %w", what, err)
		}
		return nil
	}
	_, err := cs.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ControllerNamespace}}, metav1.CreateOptions{})
	if err := create("namespace "+ControllerNamespace, err); err != nil {
		return "", err
	}
	sa := &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: ControllerNamespace}}
	_, err = cs.CoreV1().ServiceAccounts(ControllerNamespace).Create(ctx, sa, metav1.CreateOptions{})
	if err := create("service account", err); err != nil {
		return "", err
	}
	subject := []rbacv1.Subject{{Kind: rbacv1.ServiceAccountKind, Name: name, Namespace: ControllerNamespace}}
	_, err = cs.RbacV1().ClusterRoles().Create(ctx, &rbacv1.ClusterRole{ObjectMeta: metav1.ObjectMeta{Name: name}, Rules: controllerClusterRules}, metav1.CreateOptions{})
	if err := create("cluster role", err); err != nil {
		return "", err
	}
	_, err = cs.RbacV1().ClusterRoleBindings().Create(ctx, &rbacv1.ClusterRoleBinding{
		ObjectMeta: metav1.ObjectMeta{Name: name},
		RoleRef:    rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "ClusterRole", Name: name},
		Subjects:   subject,
	}, metav1.CreateOptions{})
	if err := create("cluster role binding", err); err != nil {
		return "", err
	}
	_, err = cs.RbacV1().Roles(ControllerNamespace).Create(ctx, &rbacv1.Role{ObjectMeta: metav1.ObjectMeta{Name: name}, Rules: controllerNamespaceRules}, metav1.CreateOptions{})
	if err := create("role", err); err != nil {
		return "", err
	}
	_, err = cs.RbacV1().RoleBindings(ControllerNamespace).Create(ctx, &rbacv1.RoleBinding{
		ObjectMeta: metav1.ObjectMeta{Name: name},
		RoleRef:    rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "Role", Name: name},
		Subjects:   subject,
	}, metav1.CreateOptions{})
	if err := create("role binding", err); err != nil {
		return "", err
	}
	return b.serviceAccountKubeconfig(ctx, ControllerNamespace, name)
}
