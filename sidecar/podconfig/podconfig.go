// Package podconfig finds the sidecar's LINSTOR settings in the LINSTOR CSI
// container of its own pod, so enabling the sidecar needs nothing but the
// container itself: the endpoint, the TLS material (resolving Secret and
// ConfigMap references with the pod's own service account), the property
// namespace and the default remote access policy.
package podconfig

import (
	"context"
	"fmt"
	"os"
	"path"
	"strings"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
)

// ConfigMapRBACPatch is the file that lets the CSI controller's service
// account read ConfigMaps in its namespace, which Piraeus Operator's role does
// not grant (a CA from apiTLS.caReference.kind ConfigMap needs it).
const ConfigMapRBACPatch = "patches/rbac-configmap-reader.yaml"

// Setting is one value found, and where it was found.
type Setting struct {
	Value  string
	Source string
}

// Settings are what the CSI container says.
type Settings struct {
	// Env holds golinstor variables (LS_*), with content instead of file paths.
	Env map[string]Setting
	// PropertyNamespace from --property-namespace, if given.
	PropertyNamespace *Setting
	// DefaultPolicy from --default-remote-access-policy, if given.
	DefaultPolicy *Setting
	// Files are the *_FILE variables in Env that stay file paths (there is
	// no content variable to carry them instead, as for
	// LS_BEARER_TOKEN_FILE): the sidecar's container must mount them too.
	Files map[string]File
}

// File is a file of the CSI container that the sidecar reads by path.
type File struct {
	Path string
	// Volume is the pod volume mounted at MountPath in the CSI container
	// that holds Path; empty when no mount of the container holds it.
	Volume    string
	MountPath string
}

// Redacted renders a setting for logs: secrets show only their size.
func Redacted(name string, s Setting) string {
	if v, ok := linstorVarNamed(name); ok && v.secret {
		return fmt.Sprintf("(%d bytes, from %s)", len(s.Value), s.Source)
	}
	return fmt.Sprintf("%q (from %s)", s.Value, s.Source)
}

// DriverDefaultPropertyNamespace is LINSTOR CSI's --property-namespace default.
const DriverDefaultPropertyNamespace = "Aux"

// Self names the pod the sidecar runs in: its namespace from POD_NAMESPACE or
// the service account mount, its name from POD_NAME or the hostname (which is
// the pod name unless the pod sets hostname). ok is false outside a pod.
func Self() (namespace, name string, ok bool) {
	namespace = os.Getenv("POD_NAMESPACE")
	if namespace == "" {
		if b, err := os.ReadFile("/var/run/secrets/kubernetes.io/serviceaccount/namespace"); err == nil {
			namespace = strings.TrimSpace(string(b))
		}
	}
	name = os.Getenv("POD_NAME")
	if name == "" {
		name, _ = os.Hostname()
	}
	return namespace, name, namespace != "" && name != ""
}

// Discover reads the pod and the named container's settings.
func Discover(ctx context.Context, kube kubernetes.Interface, namespace, podName, container string) (*Settings, error) {
	pod, err := kube.CoreV1().Pods(namespace).Get(ctx, podName, metav1.GetOptions{})
	if err != nil {
		return nil, fmt.Errorf("pod %s/%s: %w", namespace, podName, err)
	}
	var c *corev1.Container
	for i := range pod.Spec.Containers {
		if pod.Spec.Containers[i].Name == container {
			c = &pod.Spec.Containers[i]
		}
	}
	if c == nil {
		return nil, fmt.Errorf("pod %s/%s has no container %q", namespace, podName, container)
	}
	r := &resolver{ctx: ctx, kube: kube, pod: pod, container: c, secrets: map[string]*corev1.Secret{}, configMaps: map[string]*corev1.ConfigMap{}}
	return r.settings()
}

type resolver struct {
	ctx        context.Context
	kube       kubernetes.Interface
	pod        *corev1.Pod
	container  *corev1.Container
	secrets    map[string]*corev1.Secret
	configMaps map[string]*corev1.ConfigMap
}

func (r *resolver) where() string {
	return fmt.Sprintf("container %s of pod %s/%s", r.container.Name, r.pod.Namespace, r.pod.Name)
}

func (r *resolver) settings() (*Settings, error) {
	s := &Settings{Env: map[string]Setting{}, Files: map[string]File{}}
	for _, from := range r.container.EnvFrom {
		if err := r.envFrom(from, s.Env); err != nil {
			return nil, err
		}
	}
	for _, e := range r.container.Env {
		if !isLinstorEnv(e.Name) {
			continue
		}
		v, src, err := r.envValue(e)
		if err != nil {
			return nil, err
		}
		s.Env[e.Name] = Setting{Value: v, Source: src}
	}
	for _, fv := range linstorVars {
		fileVar, contentVar := fv.name, fv.content
		if contentVar == "" {
			continue
		}
		f, ok := s.Env[fileVar]
		if !ok {
			continue
		}
		delete(s.Env, fileVar)
		if _, has := s.Env[contentVar]; has {
			continue
		}
		content, src, err := r.mountedFile(f.Value)
		if err != nil {
			return nil, fmt.Errorf("%s=%s in %s: %w", fileVar, f.Value, r.where(), err)
		}
		s.Env[contentVar] = Setting{Value: content, Source: src}
	}
	for name, v := range s.Env {
		if strings.HasSuffix(name, "_FILE") {
			f := File{Path: v.Value}
			if m := r.mountOf(v.Value); m != nil {
				f.Volume, f.MountPath = m.Name, m.MountPath
			}
			s.Files[name] = f
		}
	}
	args := append(append([]string(nil), r.container.Command...), r.container.Args...)
	if v, ok := flagValue(args, "linstor-endpoint"); ok {
		if _, has := s.Env["LS_CONTROLLERS"]; !has {
			s.Env["LS_CONTROLLERS"] = Setting{Value: v, Source: "flag --linstor-endpoint of " + r.where()}
		}
	}
	if v, ok := flagValue(args, "property-namespace"); ok {
		s.PropertyNamespace = &Setting{Value: v, Source: "flag --property-namespace of " + r.where()}
	} else {
		// The driver then uses its built-in default; so must the sidecar.
		// Guessing from node properties (standalone mode) could pick
		// Aux/topology on a cluster whose driver reads Aux.
		s.PropertyNamespace = &Setting{Value: DriverDefaultPropertyNamespace,
			Source: "LINSTOR CSI's default, as " + r.where() + " passes no --property-namespace"}
	}
	if v, ok := flagValue(args, "default-remote-access-policy"); ok {
		s.DefaultPolicy = &Setting{Value: v, Source: "flag --default-remote-access-policy of " + r.where()}
	}
	return s, nil
}

func (r *resolver) envValue(e corev1.EnvVar) (string, string, error) {
	src := fmt.Sprintf("env %s of %s", e.Name, r.where())
	switch {
	case e.ValueFrom == nil:
		return e.Value, src, nil
	case e.ValueFrom.SecretKeyRef != nil:
		ref := e.ValueFrom.SecretKeyRef
		v, err := r.secretKey(ref.Name, ref.Key, ref.Optional)
		return v, fmt.Sprintf("secret %s/%s key %s (%s)", r.pod.Namespace, ref.Name, ref.Key, src), err
	case e.ValueFrom.ConfigMapKeyRef != nil:
		ref := e.ValueFrom.ConfigMapKeyRef
		v, err := r.configMapKey(ref.Name, ref.Key, ref.Optional)
		return v, fmt.Sprintf("configmap %s/%s key %s (%s)", r.pod.Namespace, ref.Name, ref.Key, src), err
	}
	return "", src, fmt.Errorf("env %s of %s: only values, secret and configmap references are supported", e.Name, r.where())
}

func (r *resolver) envFrom(from corev1.EnvFromSource, env map[string]Setting) error {
	var data map[string]string
	var src string
	switch {
	case from.SecretRef != nil:
		sec, err := r.secret(from.SecretRef.Name, from.SecretRef.Optional)
		if err != nil || sec == nil {
			return err
		}
		data = map[string]string{}
		for k, v := range sec.Data {
			data[k] = string(v)
		}
		src = fmt.Sprintf("secret %s/%s (envFrom of %s)", r.pod.Namespace, from.SecretRef.Name, r.where())
	case from.ConfigMapRef != nil:
		cm, err := r.configMap(from.ConfigMapRef.Name, from.ConfigMapRef.Optional)
		if err != nil || cm == nil {
			return err
		}
		data = cm.Data
		src = fmt.Sprintf("configmap %s/%s (envFrom of %s)", r.pod.Namespace, from.ConfigMapRef.Name, r.where())
	default:
		return nil
	}
	for k, v := range data {
		name := from.Prefix + k
		if isLinstorEnv(name) {
			env[name] = Setting{Value: v, Source: src}
		}
	}
	return nil
}

func (r *resolver) secret(name string, optional *bool) (*corev1.Secret, error) {
	if s, ok := r.secrets[name]; ok {
		return s, nil
	}
	s, err := r.kube.CoreV1().Secrets(r.pod.Namespace).Get(r.ctx, name, metav1.GetOptions{})
	if err != nil {
		if optional != nil && *optional {
			return nil, nil
		}
		return nil, fmt.Errorf("secret %s/%s referenced by %s: %w", r.pod.Namespace, name, r.where(), err)
	}
	r.secrets[name] = s
	return s, nil
}

func (r *resolver) configMap(name string, optional *bool) (*corev1.ConfigMap, error) {
	if c, ok := r.configMaps[name]; ok {
		return c, nil
	}
	c, err := r.kube.CoreV1().ConfigMaps(r.pod.Namespace).Get(r.ctx, name, metav1.GetOptions{})
	if err != nil {
		if optional != nil && *optional && !apierrors.IsForbidden(err) {
			return nil, nil
		}
		if apierrors.IsForbidden(err) {
			return nil, fmt.Errorf("configmap %s/%s referenced by %s: %w; the CSI controller's service account may not read ConfigMaps: apply %s (kubectl apply -n %s -f %s)",
				r.pod.Namespace, name, r.where(), err, ConfigMapRBACPatch, r.pod.Namespace, ConfigMapRBACPatch)
		}
		return nil, fmt.Errorf("configmap %s/%s referenced by %s: %w", r.pod.Namespace, name, r.where(), err)
	}
	r.configMaps[name] = c
	return c, nil
}

func (r *resolver) secretKey(name, key string, optional *bool) (string, error) {
	s, err := r.secret(name, optional)
	if err != nil || s == nil {
		return "", err
	}
	v, ok := s.Data[key]
	if !ok {
		return "", fmt.Errorf("secret %s/%s has no key %s", r.pod.Namespace, name, key)
	}
	return string(v), nil
}

func (r *resolver) configMapKey(name, key string, optional *bool) (string, error) {
	c, err := r.configMap(name, optional)
	if err != nil || c == nil {
		return "", err
	}
	v, ok := c.Data[key]
	if !ok {
		return "", fmt.Errorf("configmap %s/%s has no key %s", r.pod.Namespace, name, key)
	}
	return v, nil
}

// mountOf returns the mount of the container that holds file, the deepest
// one if several do, or nil.
func (r *resolver) mountOf(file string) *corev1.VolumeMount {
	var best *corev1.VolumeMount
	for i := range r.container.VolumeMounts {
		m := &r.container.VolumeMounts[i]
		dir := strings.TrimSuffix(m.MountPath, "/") + "/"
		if strings.HasPrefix(file, dir) && (best == nil || len(m.MountPath) > len(best.MountPath)) {
			best = m
		}
	}
	return best
}

// mountedFile reads a file of the other container through the Secret or
// ConfigMap volume it is mounted from.
func (r *resolver) mountedFile(file string) (string, string, error) {
	best := r.mountOf(file)
	if best == nil {
		return "", "", fmt.Errorf("no volume of the container is mounted there")
	}
	rel := strings.TrimPrefix(file, strings.TrimSuffix(best.MountPath, "/")+"/")
	if best.SubPath != "" {
		rel = path.Join(best.SubPath, rel)
	}
	for _, v := range r.pod.Spec.Volumes {
		if v.Name != best.Name {
			continue
		}
		switch {
		case v.Secret != nil:
			key := keyForPath(rel, v.Secret.Items)
			val, err := r.secretKey(v.Secret.SecretName, key, v.Secret.Optional)
			return val, fmt.Sprintf("secret %s/%s key %s (volume %s of %s)", r.pod.Namespace, v.Secret.SecretName, key, v.Name, r.where()), err
		case v.ConfigMap != nil:
			key := keyForPath(rel, v.ConfigMap.Items)
			val, err := r.configMapKey(v.ConfigMap.Name, key, v.ConfigMap.Optional)
			return val, fmt.Sprintf("configmap %s/%s key %s (volume %s of %s)", r.pod.Namespace, v.ConfigMap.Name, key, v.Name, r.where()), err
		}
		return "", "", fmt.Errorf("volume %s is neither a secret nor a configmap volume", v.Name)
	}
	return "", "", fmt.Errorf("volume %s not found in the pod", best.Name)
}

// keyForPath maps a file name inside a Secret/ConfigMap volume to its key.
func keyForPath(rel string, items []corev1.KeyToPath) string {
	for _, it := range items {
		if it.Path == rel {
			return it.Key
		}
	}
	return rel
}

// flagValue finds "--name=value" or "--name value" (or with one dash).
func flagValue(args []string, name string) (string, bool) {
	for i, a := range args {
		trimmed := strings.TrimLeft(a, "-")
		if trimmed == a || len(a)-len(trimmed) > 2 {
			continue
		}
		if v, ok := strings.CutPrefix(trimmed, name+"="); ok {
			return v, true
		}
		if trimmed == name && i+1 < len(args) {
			return args[i+1], true
		}
	}
	return "", false
}

// CheckFiles makes sure every *_FILE setting of l names a file this
// container has, and otherwise says which volume to mount where: the LINSTOR
// client would only fail later, at the first request, with a bare "no such
// file". files (may be nil) are what Discover found in the CSI container, for
// settings taken from it. stat is os.Stat but for tests.
func CheckFiles(l Linstor, stat func(string) (os.FileInfo, error), files map[string]File, container string) error {
	var problems []string
	for _, v := range linstorVars {
		name := v.name
		if !strings.HasSuffix(name, "_FILE") {
			continue
		}
		path := l.Get(name)
		if path == "" {
			continue
		}
		if _, err := stat(path); err == nil {
			continue
		}
		f, fromCSI := files[name]
		switch {
		case fromCSI && f.Volume != "":
			problems = append(problems, fmt.Sprintf("%s=%s (taken from container %s) is not in this container: mount volume %s at %s in container linstor-affinity-sidecar too, as %s does",
				name, path, container, f.Volume, f.MountPath, container))
		case fromCSI:
			problems = append(problems, fmt.Sprintf("%s=%s (taken from container %s) is not in this container, and no volume of %s holds it: set %s on container linstor-affinity-sidecar to a file mounted there",
				name, path, container, container, name))
		default:
			problems = append(problems, fmt.Sprintf("%s=%s: no such file in this container: mount the volume (Secret or ConfigMap) that holds it at %s in container linstor-affinity-sidecar",
				name, path, path[:strings.LastIndexByte(path, '/')+1]))
		}
	}
	if len(problems) > 0 {
		return fmt.Errorf("%s", strings.Join(problems, "; "))
	}
	return nil
}
