package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/piraeusdatastore/linstor-affinity-sidecar/sidecar/kubecache"
	"github.com/piraeusdatastore/linstor-affinity-sidecar/test/cluster"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/equality"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/watch"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/cache"
)

// The sidecar's PV cache against a real kube-apiserver: PVs as it stores and
// sends them (defaults, managedFields, timestamps), a list longer than one
// page, the watch, and the ERROR event for a resourceVersion it no longer
// has. Each cached PV holds exactly the kept fields of the PV the typed
// client reads. The API server runs without its watch cache, so lists and
// watches go to etcd: every list is paged, and a watch from a compacted
// revision gets etcd's answer (the watch cache answered one from
// resourceVersion 1 with the whole history).
func TestPVCacheHoldsCompactPVsOfTheAPIServer(t *testing.T) {
	skipShort(t)
	c := cluster.StartT(t, cluster.Options{NoControllerManager: true, NoScheduler: true, APIServerArgs: []string{"--watch-cache=false"}})
	ctx := testContext(t, 4*time.Minute)
	kube := c.Client()
	const n = 520 // more than one page of 500
	var wg sync.WaitGroup
	errs := make(chan error, n)
	next := make(chan int)
	for w := 0; w < 8; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range next {
				if _, err := kube.CoreV1().PersistentVolumes().Create(ctx, cachePV(i), metav1.CreateOptions{}); err != nil {
					errs <- err
				}
			}
		}()
	}
	for i := 0; i < n; i++ {
		next <- i
	}
	close(next)
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}

	var lists atomic.Int32
	cfg := c.RESTConfig()
	cfg.Wrap(func(rt http.RoundTripper) http.RoundTripper {
		return roundTripFunc(func(r *http.Request) (*http.Response, error) {
			if r.URL.Path == "/api/v1/persistentvolumes" && r.URL.Query().Get("watch") == "" {
				lists.Add(1)
			}
			return rt.RoundTrip(r)
		})
	})
	lw := kubecache.NewPVListerWatcher(kubernetes.NewForConfigOrDie(cfg).CoreV1().RESTClient())

	// A list read from etcd (no resourceVersion) comes in pages.
	obj, err := lw.List(metav1.ListOptions{})
	must(t, err)
	items, err := meta.ExtractList(obj)
	must(t, err)
	if len(items) != n || lists.Load() < 2 {
		t.Fatalf("listed %d PVs in %d requests, want %d in at least 2 pages", len(items), lists.Load(), n)
	}
	full, err := kube.CoreV1().PersistentVolumes().List(ctx, metav1.ListOptions{})
	must(t, err)
	byName := map[string]*corev1.PersistentVolume{}
	for i := range full.Items {
		byName[full.Items[i].Name] = &full.Items[i]
	}
	for _, item := range items {
		pv := item.(*corev1.PersistentVolume)
		assertKeptFields(t, pv, byName[pv.Name])
	}

	// The cache follows the watch.
	pvs := kubecache.NewWatch("persistentvolumes", lw, &corev1.PersistentVolume{}, nil, nil)
	go pvs.Run(ctx)
	if !cache.WaitForCacheSync(ctx.Done(), pvs.HasSynced) {
		t.Fatal("PV cache never synced")
	}
	edited, err := kube.CoreV1().PersistentVolumes().Get(ctx, cachePV(1).Name, metav1.GetOptions{})
	must(t, err)
	edited.Annotations[skipAnnotation] = "e2e"
	edited.Labels["edited"] = "yes"
	edited, err = kube.CoreV1().PersistentVolumes().Update(ctx, edited, metav1.UpdateOptions{})
	must(t, err)
	// Deleted, the PV stays while it has finalizers (no controller here
	// removes them): the cache shows it terminating, then gone.
	gone := cachePV(2).Name
	must(t, kube.CoreV1().PersistentVolumes().Delete(ctx, gone, metav1.DeleteOptions{}))
	terminating, err := kube.CoreV1().PersistentVolumes().Get(ctx, gone, metav1.GetOptions{})
	must(t, err)
	added, err := kube.CoreV1().PersistentVolumes().Create(ctx, cachePV(n), metav1.CreateOptions{})
	must(t, err)
	waitCached := func(what string, done func() bool) {
		t.Helper()
		deadline := time.Now().Add(waitTimeout)
		for !done() {
			if time.Now().After(deadline) {
				t.Fatalf("the cache did not follow the watch: %s", what)
			}
			time.Sleep(50 * time.Millisecond)
		}
	}
	cached := func(name, rv string) *corev1.PersistentVolume {
		obj, ok, _ := pvs.Indexer().GetByKey(name)
		if !ok || obj.(*corev1.PersistentVolume).ResourceVersion != rv {
			return nil
		}
		return obj.(*corev1.PersistentVolume)
	}
	for _, want := range []*corev1.PersistentVolume{edited, terminating, added} {
		waitCached(want.Name+" at resourceVersion "+want.ResourceVersion, func() bool { return cached(want.Name, want.ResourceVersion) != nil })
		assertKeptFields(t, cached(want.Name, want.ResourceVersion), want)
	}
	_, err = kube.CoreV1().PersistentVolumes().Patch(ctx, gone, types.MergePatchType, []byte(`{"metadata":{"finalizers":null}}`), metav1.PatchOptions{})
	must(t, err)
	waitCached(gone+" deleted", func() bool { _, ok, _ := pvs.Indexer().GetByKey(gone); return !ok })

	// A watch from a resourceVersion whose history etcd compacted away ends
	// in 410 Gone, which makes the reflector list again.
	compactEtcd(ctx, t, c.EtcdURL())
	w, err := lw.Watch(metav1.ListOptions{ResourceVersion: "1"})
	if err == nil {
		defer w.Stop()
		select {
		case e := <-w.ResultChan():
			if e.Type != watch.Error {
				t.Fatalf("watch from resourceVersion 1 began with %s, want ERROR", e.Type)
			}
			err = apierrors.FromObject(e.Object)
		case <-time.After(waitTimeout):
			t.Fatal("watch from resourceVersion 1 sent nothing")
		}
	}
	if !apierrors.IsResourceExpired(err) && !apierrors.IsGone(err) {
		t.Fatalf("watch from resourceVersion 1: %v, want 410 Gone", err)
	}
}

// compactEtcd drops etcd's history up to its current revision, through its
// JSON gateway, as the API server's periodic compaction does.
func compactEtcd(ctx context.Context, t *testing.T, etcdURL string) {
	t.Helper()
	post := func(path, body string, into any) {
		t.Helper()
		req, err := http.NewRequestWithContext(ctx, http.MethodPost, etcdURL+path, strings.NewReader(body))
		must(t, err)
		resp, err := http.DefaultClient.Do(req)
		must(t, err)
		defer func() { _ = resp.Body.Close() }()
		if resp.StatusCode != http.StatusOK {
			t.Fatalf("etcd %s: %s", path, resp.Status)
		}
		must(t, json.NewDecoder(resp.Body).Decode(into))
	}
	var status struct {
		Header struct {
			Revision string `json:"revision"`
		} `json:"header"`
	}
	post("/v3/kv/range", `{"key":"AA=="}`, &status) // any key: the answer carries the revision
	post("/v3/kv/compaction", fmt.Sprintf(`{"revision":%q,"physical":true}`, status.Header.Revision), &struct{}{})
}

type roundTripFunc func(*http.Request) (*http.Response, error)

func (f roundTripFunc) RoundTrip(r *http.Request) (*http.Response, error) { return f(r) }

// cachePV is a LINSTOR CSI PV as the external-provisioner writes one, with
// a claimRef and fields the cache leaves out.
func cachePV(i int) *corev1.PersistentVolume {
	name := fmt.Sprintf("pvc-cache-%04d", i)
	return &corev1.PersistentVolume{
		ObjectMeta: metav1.ObjectMeta{
			Name:   name,
			Labels: map[string]string{"app": "db"},
			Annotations: map[string]string{
				"pv.kubernetes.io/provisioned-by":                       "linstor.csi.linbit.com",
				"override.piraeus.io/remote-access-policy":              "false",
				"linstor.csi.linbit.com/skip-reclaim":                   "true",
				"volume.kubernetes.io/provisioner-deletion-secret-name": "",
			},
			Finalizers: []string{"external-provisioner.volume.kubernetes.io/finalizer"},
		},
		Spec: corev1.PersistentVolumeSpec{
			Capacity:                      corev1.ResourceList{corev1.ResourceStorage: resource.MustParse("1Gi")},
			AccessModes:                   []corev1.PersistentVolumeAccessMode{corev1.ReadWriteOnce},
			PersistentVolumeReclaimPolicy: corev1.PersistentVolumeReclaimDelete,
			StorageClassName:              "strict",
			MountOptions:                  []string{"noatime"},
			ClaimRef:                      &corev1.ObjectReference{Kind: "PersistentVolumeClaim", APIVersion: "v1", Namespace: "default", Name: "data-" + name, UID: types.UID("claim-uid-" + name)},
			PersistentVolumeSource: corev1.PersistentVolumeSource{CSI: &corev1.CSIPersistentVolumeSource{
				Driver: "linstor.csi.linbit.com", VolumeHandle: name, FSType: "ext4",
				VolumeAttributes: map[string]string{
					"linstor.csi.linbit.com/uses-volume-context":   "true",
					"linstor.csi.linbit.com/remote-access-policy":  "false",
					"storage.kubernetes.io/csiProvisionerIdentity": "e2e",
				},
			}},
			NodeAffinity: &corev1.VolumeNodeAffinity{Required: &corev1.NodeSelector{NodeSelectorTerms: []corev1.NodeSelectorTerm{{
				MatchExpressions: []corev1.NodeSelectorRequirement{{Key: "linbit.com/hostname", Operator: corev1.NodeSelectorOpIn, Values: []string{fmt.Sprintf("n%d", i%4)}}},
			}}}},
		},
	}
}

// assertKeptFields checks a cached PV against the API server's full copy:
// the kept fields equal, nothing else there (see sidecar/kubecache/compactpv.go; the
// list is written out again here on purpose).
func assertKeptFields(t *testing.T, cached, full *corev1.PersistentVolume) {
	t.Helper()
	if full == nil {
		t.Fatalf("cached PV %s is not on the API server", cached.Name)
	}
	keptAnn := map[string]string{}
	for k, v := range full.Annotations {
		if k == skipAnnotation || strings.HasPrefix(k, "override.piraeus.io") || strings.HasSuffix(k, "/skip-reclaim") ||
			k == "linstor-affinity-sidecar.piraeus.io/reclaim-policy-before-replace" {
			keptAnn[k] = v
		}
	}
	keptAttrs := map[string]string{}
	for _, k := range []string{"linstor.csi.linbit.com/uses-volume-context", "linstor.csi.linbit.com/remote-access-policy"} {
		if v, ok := full.Spec.CSI.VolumeAttributes[k]; ok {
			keptAttrs[k] = v
		}
	}
	ref := full.Spec.ClaimRef
	same := cached.Name == full.Name && cached.UID == full.UID && cached.ResourceVersion == full.ResourceVersion &&
		cached.CreationTimestamp.Equal(&full.CreationTimestamp) && equality.Semantic.DeepEqual(cached.DeletionTimestamp, full.DeletionTimestamp) &&
		equality.Semantic.DeepEqual(cached.Labels, full.Labels) && equality.Semantic.DeepEqual(cached.Annotations, keptAnn) &&
		cached.Spec.CSI != nil && cached.Spec.CSI.Driver == full.Spec.CSI.Driver && cached.Spec.CSI.VolumeHandle == full.Spec.CSI.VolumeHandle &&
		equality.Semantic.DeepEqual(cached.Spec.CSI.VolumeAttributes, keptAttrs) &&
		equality.Semantic.DeepEqual(cached.Spec.NodeAffinity, full.Spec.NodeAffinity) &&
		cached.Spec.StorageClassName == full.Spec.StorageClassName &&
		cached.Spec.PersistentVolumeReclaimPolicy == full.Spec.PersistentVolumeReclaimPolicy &&
		cached.Status.Phase == full.Status.Phase &&
		equality.Semantic.DeepEqual(cached.Spec.ClaimRef, &corev1.ObjectReference{Namespace: ref.Namespace, Name: ref.Name, UID: ref.UID})
	dropped := cached.Spec.Capacity == nil && cached.Spec.AccessModes == nil && cached.Spec.MountOptions == nil &&
		cached.Spec.VolumeMode == nil && cached.Finalizers == nil && cached.ManagedFields == nil && cached.Spec.CSI.FSType == "" &&
		cached.Status.LastPhaseTransitionTime == nil
	if !same || !dropped {
		t.Fatalf("cached PV %s is not the compact copy of the API server's:\ncached %+v\nfull   %+v", cached.Name, cached, full)
	}
}
