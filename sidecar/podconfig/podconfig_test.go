package podconfig

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	lapi "github.com/LINBIT/golinstor/client"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/kubernetes/fake"
	k8stesting "k8s.io/client-go/testing"
)

const ns = "piraeus-datastore"

func tlsSecret() *corev1.Secret {
	return &corev1.Secret{
		ObjectMeta: metav1.ObjectMeta{Name: "linstor-csi-controller-tls", Namespace: ns},
		Data: map[string][]byte{
			"ca.crt":  []byte("-----BEGIN CERTIFICATE-----\nCA\n-----END CERTIFICATE-----\n"),
			"tls.crt": []byte("-----BEGIN CERTIFICATE-----\nCLIENT\n-----END CERTIFICATE-----\n"),
			"tls.key": []byte("-----BEGIN PRIVATE KEY-----\nKEY\n-----END PRIVATE KEY-----\n"),
		},
	}
}

func secretEnv(name, key string) corev1.EnvVar {
	return corev1.EnvVar{Name: name, ValueFrom: &corev1.EnvVarSource{SecretKeyRef: &corev1.SecretKeySelector{
		LocalObjectReference: corev1.LocalObjectReference{Name: "linstor-csi-controller-tls"}, Key: key,
	}}}
}

// operatorPod is the CSI controller pod as Piraeus Operator v2 renders it.
func operatorPod(csi corev1.Container) *corev1.Pod {
	return &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: "linstor-csi-controller-abc", Namespace: ns},
		Spec: corev1.PodSpec{
			Containers: []corev1.Container{
				{Name: "csi-provisioner", Args: []string{"--csi-address=/csi/csi.sock"}},
				csi,
				{Name: "linstor-affinity-sidecar"},
			},
			Volumes: []corev1.Volume{
				{Name: "socket-dir", VolumeSource: corev1.VolumeSource{EmptyDir: &corev1.EmptyDirVolumeSource{}}},
				{Name: "client-tls", VolumeSource: corev1.VolumeSource{Secret: &corev1.SecretVolumeSource{
					SecretName: "linstor-csi-controller-tls",
					Items:      []corev1.KeyToPath{{Key: "ca.crt", Path: "root.pem"}},
				}}},
			},
		},
	}
}

func TestDiscoverReadsOperatorPodWithTLSSecret(t *testing.T) {
	csi := corev1.Container{
		Name: "linstor-csi",
		Args: []string{"--csi-endpoint=unix:///csi/csi.sock", "--node=$(KUBE_NODE_NAME)", "--property-namespace=Aux/topology", "--default-remote-access-policy", "false"},
		Env: []corev1.EnvVar{
			{Name: "LS_CONTROLLERS", Value: "https://linstor-controller.piraeus-datastore.svc:3371"},
			secretEnv("LS_ROOT_CA", "ca.crt"),
			secretEnv("LS_USER_CERTIFICATE", "tls.crt"),
			secretEnv("LS_USER_KEY", "tls.key"),
			{Name: "KUBE_NODE_NAME", Value: "ignored"},
		},
	}
	kube := fake.NewClientset(operatorPod(csi), tlsSecret())
	s, err := Discover(context.Background(), kube, ns, "linstor-csi-controller-abc", "linstor-csi")
	if err != nil {
		t.Fatal(err)
	}
	if got := s.Env["LS_CONTROLLERS"].Value; got != "https://linstor-controller.piraeus-datastore.svc:3371" {
		t.Errorf("LS_CONTROLLERS = %q", got)
	}
	for name, key := range map[string]string{"LS_ROOT_CA": "ca.crt", "LS_USER_CERTIFICATE": "tls.crt", "LS_USER_KEY": "tls.key"} {
		got := s.Env[name]
		if got.Value != string(tlsSecret().Data[key]) {
			t.Errorf("%s = %q, want the secret's %s", name, got.Value, key)
		}
		if !strings.Contains(got.Source, "linstor-csi-controller-tls key "+key) {
			t.Errorf("%s source %q does not name the secret key", name, got.Source)
		}
		if red := Redacted(name, got); strings.Contains(red, "BEGIN") {
			t.Errorf("Redacted(%s) shows the secret: %s", name, red)
		}
	}
	if _, ok := s.Env["KUBE_NODE_NAME"]; ok {
		t.Error("non-LINSTOR variable taken")
	}
	if s.PropertyNamespace == nil || s.PropertyNamespace.Value != "Aux/topology" {
		t.Errorf("property namespace = %+v", s.PropertyNamespace)
	}
	if s.DefaultPolicy == nil || s.DefaultPolicy.Value != "false" {
		t.Errorf("default policy = %+v (space-separated flag form)", s.DefaultPolicy)
	}
}

func TestDiscoverResolvesFileVariablesThroughSecretVolumes(t *testing.T) {
	csi := corev1.Container{
		Name: "linstor-csi",
		Args: []string{"--linstor-endpoint=https://ctrl:3371"},
		Env: []corev1.EnvVar{
			{Name: "LS_ROOT_CA_FILE", Value: "/etc/linstor/client/root.pem"},
		},
		EnvFrom: []corev1.EnvFromSource{{Prefix: "LS_", ConfigMapRef: &corev1.ConfigMapEnvSource{
			LocalObjectReference: corev1.LocalObjectReference{Name: "linstor-env"},
		}}},
		VolumeMounts: []corev1.VolumeMount{{Name: "client-tls", MountPath: "/etc/linstor/client"}},
	}
	cm := &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: "linstor-env", Namespace: ns}, Data: map[string]string{"USERNAME": "admin", "OTHER": "x"}}
	kube := fake.NewClientset(operatorPod(csi), tlsSecret(), cm)
	s, err := Discover(context.Background(), kube, ns, "linstor-csi-controller-abc", "linstor-csi")
	if err != nil {
		t.Fatal(err)
	}
	if got := s.Env["LS_ROOT_CA"].Value; got != string(tlsSecret().Data["ca.crt"]) {
		t.Errorf("LS_ROOT_CA from the mounted file = %q", got)
	}
	if _, ok := s.Env["LS_ROOT_CA_FILE"]; ok {
		t.Error("file variable kept: it names a path in another container")
	}
	if got := s.Env["LS_CONTROLLERS"].Value; got != "https://ctrl:3371" {
		t.Errorf("LS_CONTROLLERS from --linstor-endpoint = %q", got)
	}
	if got := s.Env["LS_USERNAME"].Value; got != "admin" {
		t.Errorf("LS_USERNAME from envFrom with prefix = %q", got)
	}
	if _, ok := s.Env["LS_OTHER"]; ok {
		t.Error("unknown LS_ variable taken")
	}
	// The container passes no --property-namespace: LINSTOR CSI then uses
	// its own default, Aux, whatever the nodes carry; the sidecar must agree
	// with the driver rather than guess from node properties.
	if s.PropertyNamespace == nil || s.PropertyNamespace.Value != "Aux" || !strings.Contains(s.PropertyNamespace.Source, "default") {
		t.Errorf("property namespace without the flag = %+v, want LINSTOR CSI's default Aux", s.PropertyNamespace)
	}
}

func TestDiscoverErrors(t *testing.T) {
	csi := corev1.Container{Name: "linstor-csi", Env: []corev1.EnvVar{secretEnv("LS_ROOT_CA", "ca.crt")}}
	cases := []struct {
		name      string
		objects   []corev1.Pod
		container string
		want      string
	}{
		{"pod missing", nil, "linstor-csi", "not found"},
		{"container missing", []corev1.Pod{*operatorPod(csi)}, "linstor-csi-custom", `no container "linstor-csi-custom"`},
		{"secret missing", []corev1.Pod{*operatorPod(csi)}, "linstor-csi", "secret piraeus-datastore/linstor-csi-controller-tls"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			kube := fake.NewClientset()
			for i := range tc.objects {
				if _, err := kube.CoreV1().Pods(ns).Create(context.Background(), &tc.objects[i], metav1.CreateOptions{}); err != nil {
					t.Fatal(err)
				}
			}
			_, err := Discover(context.Background(), kube, ns, "linstor-csi-controller-abc", tc.container)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("err = %v, want it to mention %q", err, tc.want)
			}
		})
	}
}

func TestOptionalSecretMayBeMissing(t *testing.T) {
	opt := true
	env := secretEnv("LS_ROOT_CA", "ca.crt")
	env.ValueFrom.SecretKeyRef.Optional = &opt
	csi := corev1.Container{Name: "linstor-csi", Env: []corev1.EnvVar{{Name: "LS_CONTROLLERS", Value: "http://c:3370"}, env}}
	s, err := Discover(context.Background(), fake.NewClientset(operatorPod(csi)), ns, "linstor-csi-controller-abc", "linstor-csi")
	if err != nil {
		t.Fatal(err)
	}
	if s.Env["LS_ROOT_CA"].Value != "" || s.Env["LS_CONTROLLERS"].Value != "http://c:3370" {
		t.Fatalf("unexpected settings %+v", s.Env)
	}
}

func TestFlagValueForms(t *testing.T) {
	args := []string{"linstor-csi", "--a=1", "-b", "2", "---c=3", "--d"}
	for _, tc := range []struct {
		name, want string
		ok         bool
	}{{"a", "1", true}, {"b", "2", true}, {"c", "", false}, {"d", "", false}, {"e", "", false}} {
		got, ok := flagValue(args, tc.name)
		if got != tc.want || ok != tc.ok {
			t.Errorf("flagValue(%s) = %q, %v; want %q, %v", tc.name, got, ok, tc.want, tc.ok)
		}
	}
}

func TestConfigMapForbiddenNamesTheRBACPatch(t *testing.T) {
	csi := corev1.Container{Name: "linstor-csi", Env: []corev1.EnvVar{
		{Name: "LS_ROOT_CA", ValueFrom: &corev1.EnvVarSource{ConfigMapKeyRef: &corev1.ConfigMapKeySelector{
			LocalObjectReference: corev1.LocalObjectReference{Name: "linstor-ca"}, Key: "ca.crt",
		}}},
	}}
	kube := fake.NewClientset(operatorPod(csi))
	kube.PrependReactor("get", "configmaps", func(k8stesting.Action) (bool, runtime.Object, error) {
		return true, nil, apierrors.NewForbidden(schema.GroupResource{Resource: "configmaps"}, "linstor-ca", errors.New("RBAC: not allowed"))
	})
	_, err := Discover(context.Background(), kube, ns, "linstor-csi-controller-abc", "linstor-csi")
	if err == nil || !strings.Contains(err.Error(), ConfigMapRBACPatch) || !strings.Contains(err.Error(), "configmap "+ns+"/linstor-ca") {
		t.Errorf("want an error naming the ConfigMap and %s, got %v", ConfigMapRBACPatch, err)
	}
}

func TestDiscoverKeepsBearerTokenFileWithItsVolume(t *testing.T) {
	csi := corev1.Container{
		Name: "linstor-csi",
		Env: []corev1.EnvVar{
			{Name: "LS_CONTROLLERS", Value: "https://linstor:3371"},
			{Name: "LS_BEARER_TOKEN_FILE", Value: "/var/run/linstor/token"},
		},
		VolumeMounts: []corev1.VolumeMount{{Name: "linstor-token", MountPath: "/var/run/linstor"}},
	}
	s, err := Discover(context.Background(), fake.NewClientset(operatorPod(csi)), ns, "linstor-csi-controller-abc", "linstor-csi")
	if err != nil {
		t.Fatal(err)
	}
	want := File{Path: "/var/run/linstor/token", Volume: "linstor-token", MountPath: "/var/run/linstor"}
	if s.Files["LS_BEARER_TOKEN_FILE"] != want || s.Env["LS_BEARER_TOKEN_FILE"].Value != want.Path {
		t.Errorf("Files = %+v, Env = %+v; want %+v", s.Files, s.Env["LS_BEARER_TOKEN_FILE"], want)
	}
}

func TestCheckFilesNamesPathAndVolume(t *testing.T) {
	dir := t.TempDir()
	present := filepath.Join(dir, "ca.crt")
	if err := os.WriteFile(present, []byte("x"), 0o600); err != nil {
		t.Fatal(err)
	}
	env := map[string]string{
		"LS_BEARER_TOKEN_FILE": "/var/run/linstor/token",
		"LS_ROOT_CA_FILE":      present,
		"LS_USER_KEY_FILE":     "/etc/linstor/client/tls.key",
	}
	files := map[string]File{"LS_BEARER_TOKEN_FILE": {Path: "/var/run/linstor/token", Volume: "linstor-token", MountPath: "/var/run/linstor"}}
	err := CheckFiles(linstorOf(env), os.Stat, files, "linstor-csi")
	if err == nil {
		t.Fatal("missing files accepted")
	}
	for _, want := range []string{
		`LS_BEARER_TOKEN_FILE=/var/run/linstor/token (taken from container linstor-csi) is not in this container: mount volume linstor-token at /var/run/linstor`,
		"LS_USER_KEY_FILE=/etc/linstor/client/tls.key: no such file in this container: mount the volume (Secret or ConfigMap) that holds it at /etc/linstor/client/",
	} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error lacks %q:\n%v", want, err)
		}
	}
	if strings.Contains(err.Error(), "LS_ROOT_CA_FILE") {
		t.Errorf("a present file reported: %v", err)
	}
	delete(env, "LS_BEARER_TOKEN_FILE")
	delete(env, "LS_USER_KEY_FILE")
	if err := CheckFiles(linstorOf(env), os.Stat, nil, "linstor-csi"); err != nil {
		t.Errorf("present files refused: %v", err)
	}
}

// linstorOf is the connection env (LS_* name -> value) describes.
func linstorOf(env map[string]string) Linstor {
	l, _ := LinstorFrom(func(name string) (string, bool) {
		v, ok := env[name]
		return v, ok
	})
	return l
}

// Every LS_* variable golinstor reads has its field, and only those count.
func TestLinstorFromKnowsEveryGolinstorVariable(t *testing.T) {
	env := map[string]string{}
	for i, name := range LinstorEnv() {
		env[name] = fmt.Sprintf("value-%d", i)
	}
	env["LS_UNKNOWN"] = "x"
	l, set := LinstorFrom(func(name string) (string, bool) {
		v, ok := env[name]
		return v, ok
	})
	if !set {
		t.Fatal("set = false with every variable given")
	}
	seen := map[string]bool{}
	for _, name := range LinstorEnv() {
		if got := l.Get(name); got != env[name] || seen[got] {
			t.Errorf("%s = %q, want %q in a field of its own", name, got, env[name])
		}
		seen[l.Get(name)] = true
	}
	for _, name := range []string{lapi.ControllerUrlEnv, lapi.UsernameEnv, lapi.PasswordEnv, lapi.RootCAEnv, lapi.RootCAFileEnv,
		lapi.UserCertEnv, lapi.UserCertFileEnv, lapi.UserKeyEnv, lapi.UserKeyFileEnv, lapi.BearerTokenFileEnv} {
		if !seen[env[name]] {
			t.Errorf("golinstor's %s has no field", name)
		}
	}
	if _, set := LinstorFrom(func(string) (string, bool) { return "", true }); set {
		t.Error("empty variables counted as set")
	}
	if !strings.Contains(Redacted(lapi.PasswordEnv, Setting{Value: "hunter2"}), "7 bytes") {
		t.Error("LS_PASSWORD logged with its value")
	}
}
