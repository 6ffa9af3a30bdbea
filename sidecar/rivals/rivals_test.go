package rivals

import (
	"context"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/kubernetes/fake"
	k8stesting "k8s.io/client-go/testing"
)

func pod(ns, name string, phase corev1.PodPhase, labels map[string]string, containers ...corev1.Container) *corev1.Pod {
	return &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name, UID: types.UID(ns + "/" + name), Labels: labels},
		Spec:       corev1.PodSpec{Containers: containers},
		Status:     corev1.PodStatus{Phase: phase},
	}
}

var (
	operatorLabels = map[string]string{"app.kubernetes.io/component": UpstreamName}
	chartLabels    = map[string]string{"app.kubernetes.io/name": UpstreamName, "app.kubernetes.io/instance": "lac"}
	upstream       = corev1.Container{Name: UpstreamName, Image: "quay.io/piraeusdatastore/linstor-affinity-controller:v1.5.0"}
	sidecarCtr     = corev1.Container{Name: "linstor-affinity-sidecar", Image: "quay.io/piraeusdatastore/linstor-affinity-sidecar:v0.1.0"}
)

func TestIsUpstreamContainer(t *testing.T) {
	for _, c := range []struct {
		name, image string
		want        bool
	}{
		{UpstreamName, "quay.io/piraeusdatastore/linstor-affinity-controller:v1.5.0", true},
		{"controller", "registry.local:5000/mirror/linstor-affinity-controller@sha256:0123", true},
		{"controller", "linstor-affinity-controller", true},
		{UpstreamName, "example.com/something-else:v1", true},
		{"linstor-affinity-sidecar", "quay.io/piraeusdatastore/linstor-affinity-sidecar:v0.1.0", false},
		{"csi", "quay.io/piraeusdatastore/linstor-affinity-controller-extras:v1", false},
		{"csi", "linstor-affinity-controller.example.com/linstor-csi:v1", false},
	} {
		if got := IsUpstreamContainer(c.name, c.image); got != c.want {
			t.Errorf("IsUpstreamContainer(%q, %q) = %v, want %v", c.name, c.image, got, c.want)
		}
	}
}

// start runs a Watcher on a fake clientset holding objs and waits until it
// has synced.
func start(t *testing.T, o Options, objs ...*corev1.Pod) (*Watcher, *fake.Clientset) {
	t.Helper()
	kube := fake.NewClientset()
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	for _, p := range objs {
		if _, err := kube.CoreV1().Pods(p.Namespace).Create(ctx, p, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	w, err := New(kube, o)
	if err != nil {
		t.Fatal(err)
	}
	if active, detail := w.Active(); !active || !strings.Contains(detail, "not known yet") {
		t.Errorf("before start: Active() = %v, %q; want true: unknown must hold writes", active, detail)
	}
	w.Start(ctx)
	waitFor(t, "sync", w.HasSynced)
	return w, kube
}

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func TestActiveFindsTheUpstreamControllerByOperatorAndChartLabels(t *testing.T) {
	for _, c := range []struct {
		name string
		pods []*corev1.Pod
		want string // in detail; "" means not active
	}{
		{"nothing", nil, ""},
		{"deployed by the operator", []*corev1.Pod{pod("piraeus-datastore", "linstor-affinity-controller-5d8f", corev1.PodRunning, operatorLabels, upstream)},
			"pod piraeus-datastore/linstor-affinity-controller-5d8f, container linstor-affinity-controller"},
		{"deployed by the upstream chart", []*corev1.Pod{pod("storage", "lac-linstor-affinity-controller-77c", corev1.PodRunning, chartLabels, upstream)},
			"pod storage/lac-linstor-affinity-controller-77c"},
		{"pending, not running yet", []*corev1.Pod{pod("piraeus-datastore", "lac", corev1.PodPending, operatorLabels, upstream)}, ""},
		{"finished", []*corev1.Pod{pod("piraeus-datastore", "lac", corev1.PodSucceeded, operatorLabels, upstream)}, ""},
		{"the label without the controller", []*corev1.Pod{pod("x", "impostor", corev1.PodRunning, chartLabels, sidecarCtr)}, ""},
		{"the controller without the labels", []*corev1.Pod{pod("x", "by-hand", corev1.PodRunning, map[string]string{"app": "lac"}, upstream)}, ""},
		{"two of them", []*corev1.Pod{
			pod("a", "one", corev1.PodRunning, operatorLabels, upstream),
			pod("b", "two", corev1.PodRunning, chartLabels, upstream),
		}, "pod a/one, container linstor-affinity-controller, image quay.io/piraeusdatastore/linstor-affinity-controller:v1.5.0 (and 1 more)"},
	} {
		t.Run(c.name, func(t *testing.T) {
			w, _ := start(t, Options{}, c.pods...)
			active, detail := w.Active()
			if active != (c.want != "") || !strings.Contains(detail, c.want) {
				t.Errorf("Active() = %v, %q; want active=%v with %q", active, detail, c.want != "", c.want)
			}
		})
	}
}

func TestEmptySelectorFindsControllersDeployedByHand(t *testing.T) {
	byHand := pod("ops", "affinity-6c9", corev1.PodRunning, map[string]string{"app": "affinity"},
		corev1.Container{Name: "main", Image: "registry.example.com/mirror/linstor-affinity-controller:v1.4.0"})
	w, _ := start(t, Options{Selectors: []string{""}}, byHand)
	if active, detail := w.Active(); !active || !strings.Contains(detail, "ops/affinity-6c9") {
		t.Errorf("Active() = %v, %q; want the pod deployed by hand", active, detail)
	}
}

func TestOwnPodNeverCounts(t *testing.T) {
	// The sidecar's chart with the upstream chart's name, for example.
	self := pod("storage", "me", corev1.PodRunning, chartLabels, upstream)
	w, _ := start(t, Options{Self: types.NamespacedName{Namespace: "storage", Name: "me"}}, self)
	if active, detail := w.Active(); active {
		t.Errorf("Active() = %v, %q for the sidecar's own pod", active, detail)
	}
}

func TestChangedFiresWhenOneAppearsAndGoes(t *testing.T) {
	w, kube := start(t, Options{})
	ctx := context.Background()
	drain := func() {
		select {
		case <-w.Changed():
		default:
		}
	}
	waitFor(t, "first answer", func() bool { a, _ := w.Active(); return !a })
	drain()

	p := pod("piraeus-datastore", "linstor-affinity-controller-1", corev1.PodRunning, operatorLabels, upstream)
	if _, err := kube.CoreV1().Pods(p.Namespace).Create(ctx, p, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	select {
	case <-w.Changed():
	case <-time.After(10 * time.Second):
		t.Fatal("no change signalled when the controller appeared")
	}
	if active, detail := w.Active(); !active || !strings.Contains(detail, p.Name) {
		t.Fatalf("after it appeared: Active() = %v, %q", active, detail)
	}

	// A label change elsewhere in the pod changes nothing: no signal.
	p.Labels = map[string]string{"app.kubernetes.io/component": UpstreamName, "extra": "x"}
	if _, err := kube.CoreV1().Pods(p.Namespace).Update(ctx, p, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	select {
	case <-w.Changed():
		t.Error("change signalled although the answer stayed the same")
	case <-time.After(200 * time.Millisecond):
	}

	if err := kube.CoreV1().Pods(p.Namespace).Delete(ctx, p.Name, metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	select {
	case <-w.Changed():
	case <-time.After(10 * time.Second):
		t.Fatal("no change signalled when the controller went away")
	}
	if active, detail := w.Active(); active {
		t.Errorf("after it went away: Active() = true, %q", detail)
	}
}

func TestReduceKeepsOnlyWhatTheDecisionReads(t *testing.T) {
	p := pod("ns", "p", corev1.PodRunning, operatorLabels, upstream)
	p.Spec.Containers[0].Env = []corev1.EnvVar{{Name: "LS_CONTROLLERS", Value: "http://x"}}
	p.Annotations = map[string]string{"big": strings.Repeat("x", 1000)}
	out, err := reduce(p)
	if err != nil {
		t.Fatal(err)
	}
	small := out.(*corev1.Pod)
	if small.Name != "p" || small.Namespace != "ns" || small.Status.Phase != corev1.PodRunning ||
		len(small.Spec.Containers) != 1 || small.Spec.Containers[0].Image != upstream.Image {
		t.Errorf("reduced pod lost what the decision needs: %+v", small)
	}
	if small.Annotations != nil || small.Labels != nil || small.Spec.Containers[0].Env != nil {
		t.Errorf("reduced pod keeps more than needed: %+v", small)
	}
}

func TestNewRejectsBadSelectors(t *testing.T) {
	if _, err := New(fake.NewClientset(), Options{Selectors: []string{"a in (b"}}); err == nil {
		t.Error("New accepted a selector that does not parse")
	}
	if _, err := New(fake.NewClientset(), Options{Selectors: []string{}}); err == nil {
		t.Error("New accepted no selector at all")
	}
}

func TestWatchesOnlyRunningPodsOfTheSelectors(t *testing.T) {
	_, kube := start(t, Options{})
	got := map[string]bool{}
	for _, a := range kube.Actions() {
		if a.GetVerb() != "list" && a.GetVerb() != "watch" {
			continue
		}
		if a.GetResource().Resource != "pods" {
			t.Errorf("%s %s: the watcher asks only for pods", a.GetVerb(), a.GetResource().Resource)
			continue
		}
		var lbl, fld string
		if w, ok := a.(k8stesting.WatchAction); ok {
			lbl, fld = w.GetWatchRestrictions().Labels.String(), w.GetWatchRestrictions().Fields.String()
		} else {
			r := a.(k8stesting.ListAction).GetListRestrictions()
			lbl, fld = r.Labels.String(), r.Fields.String()
		}
		if fld != "status.phase=Running" {
			t.Errorf("%s pods with field selector %q, want status.phase=Running", a.GetVerb(), fld)
		}
		got[a.GetVerb()+" "+lbl] = true
	}
	for _, sel := range DefaultSelectors() {
		for _, verb := range []string{"list", "watch"} {
			if !got[verb+" "+sel] {
				t.Errorf("no %s of pods with label selector %q; got %v", verb, sel, got)
			}
		}
	}
}
