package kubecache

import (
	"context"
	"errors"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/watch"
	"k8s.io/client-go/kubernetes/fake"
	"k8s.io/client-go/tools/cache"
)

// TestWatchKeepsTheCacheAcrossBrokenWatches: the watch fails twice (an API
// server going away), then works; the cache lists again, stores every
// change, trims objects and reports each change and each relist.
func TestWatchKeepsTheCacheAcrossBrokenWatches(t *testing.T) {
	kube := fake.NewClientset(&corev1.PersistentVolume{ObjectMeta: metav1.ObjectMeta{Name: "pv-1", ManagedFields: []metav1.ManagedFieldsEntry{{Manager: "x"}}}})
	var failures atomic.Int32
	watching := make(chan struct{})
	lw := cache.ToListWatcherWithWatchListSemantics(&cache.ListWatch{
		ListWithContextFunc: func(ctx context.Context, o metav1.ListOptions) (runtime.Object, error) {
			return kube.CoreV1().PersistentVolumes().List(ctx, o)
		},
		WatchFuncWithContext: func(ctx context.Context, o metav1.ListOptions) (watch.Interface, error) {
			n := failures.Add(1)
			if n <= 2 {
				return nil, errors.New("connection refused")
			}
			w, err := kube.CoreV1().PersistentVolumes().Watch(ctx, o)
			if n == 3 {
				close(watching)
			}
			return w, err
		},
	}, kube)
	var mu sync.Mutex
	var seen []string
	trim := func(obj any) (any, error) {
		obj.(metav1.Object).SetManagedFields(nil)
		return obj, nil
	}
	w := NewWatch("persistentvolumes", lw, &corev1.PersistentVolume{}, trim, func(obj any) {
		mu.Lock()
		defer mu.Unlock()
		if obj == nil {
			seen = append(seen, "relist")
			return
		}
		seen = append(seen, obj.(*corev1.PersistentVolume).Name)
	})
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	go w.Run(ctx)
	if !cache.WaitForCacheSync(ctx.Done(), w.HasSynced) {
		t.Fatal("never synced")
	}
	select { // the third watch is the one that works
	case <-ctx.Done():
		t.Fatal("the failed watches were not retried")
	case <-watching:
	}
	_, err := kube.CoreV1().PersistentVolumes().Create(ctx, &corev1.PersistentVolume{ObjectMeta: metav1.ObjectMeta{Name: "pv-2"}}, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	for {
		if _, ok, _ := w.Indexer().GetByKey("pv-2"); ok {
			break
		}
		select {
		case <-ctx.Done():
			t.Fatal("pv-2 never reached the cache after the watch came back")
		case <-time.After(10 * time.Millisecond):
		}
	}
	obj, ok, _ := w.Indexer().GetByKey("pv-1")
	if !ok || len(obj.(*corev1.PersistentVolume).ManagedFields) != 0 {
		t.Errorf("pv-1 cached = %v, managed fields kept: %v", ok, obj)
	}
	mu.Lock()
	defer mu.Unlock()
	if len(seen) < 2 || seen[0] != "relist" || seen[len(seen)-1] != "pv-2" {
		t.Errorf("notifications %v, want a relist first and pv-2 last", seen)
	}
}
