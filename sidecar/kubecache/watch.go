package kubecache

import (
	"context"
	"math"
	"sync/atomic"
	"time"

	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/client-go/tools/cache"
	"k8s.io/klog/v2"
)

// Watch retry: 200 ms after a broken watch or failed list, doubling to at
// most 2 s. client-go's shared informers back off up to 30 s with full
// jitter, so after an API server restart their watch can stay away for up
// to a minute; the PV cache would be that old, every repair would wait for
// it, and in the fault suite's -race runs it did (one sidecar, one watch
// per resource: a retry every 2 s costs the API server nothing).
const (
	watchRetryInit = 200 * time.Millisecond
	watchRetryMax  = 2 * time.Second
)

// Watch is a cache of one resource kept by a reflector of its own, so its
// retry backoff is the sidecar's choice (SharedInformerFactory does not let
// it be set). It offers what the loop uses of an informer: an indexer for
// listers, a sync flag, and a callback for every change.
type Watch struct {
	name      string
	reflector *cache.Reflector
	store     *notifyingStore
}

// NewWatch builds a Watch of objects of type example listed and watched
// by lw. transform (may be nil) trims each object before it is stored;
// changed (may be nil) is called with every added, updated or deleted
// object, and with nil after a relist.
func NewWatch(name string, lw cache.ListerWatcher, example runtime.Object, transform cache.TransformFunc, changed func(obj any)) *Watch {
	store := &notifyingStore{Indexer: cache.NewIndexer(cache.MetaNamespaceKeyFunc, cache.Indexers{}), transform: transform, changed: changed, name: name}
	backoff := &wait.Backoff{
		Duration: watchRetryInit,
		Cap:      watchRetryMax,
		Steps:    int(math.Ceil(float64(watchRetryMax) / float64(watchRetryInit))),
		Factor:   2,
		Jitter:   0.5,
	}
	r := cache.NewReflectorWithOptions(lw, example, store, cache.ReflectorOptions{Name: name, Backoff: backoff})
	return &Watch{name: name, reflector: r, store: store}
}

// Indexer holds the cached objects (for listers).
func (w *Watch) Indexer() cache.Indexer { return w.store.Indexer }

// HasSynced reports whether the first list has been stored.
func (w *Watch) HasSynced() bool { return w.store.synced.Load() }

// Run keeps the cache until ctx ends.
func (w *Watch) Run(ctx context.Context) { w.reflector.RunWithContext(ctx) }

// notifyingStore is an indexer that reports every change.
type notifyingStore struct {
	cache.Indexer
	name      string
	transform cache.TransformFunc
	changed   func(obj any)
	synced    atomic.Bool
	lists     atomic.Int64
}

func (s *notifyingStore) trim(obj any) (any, error) {
	if s.transform == nil {
		return obj, nil
	}
	return s.transform(obj)
}

func (s *notifyingStore) notify(obj any) {
	if s.changed != nil {
		s.changed(obj)
	}
}

func (s *notifyingStore) Add(obj any) error { return s.put(obj, s.Indexer.Add) }

func (s *notifyingStore) Update(obj any) error { return s.put(obj, s.Indexer.Update) }

// put trims obj, stores it with store and reports it.
func (s *notifyingStore) put(obj any, store func(any) error) error {
	obj, err := s.trim(obj)
	if err != nil {
		return err
	}
	if err := store(obj); err != nil {
		return err
	}
	s.notify(obj)
	return nil
}

func (s *notifyingStore) Delete(obj any) error {
	if err := s.Indexer.Delete(obj); err != nil {
		return err
	}
	s.notify(obj)
	return nil
}

// Replace stores a fresh list: the first one, or the relist after a watch
// that could not be resumed (an API server restart, a compacted history).
func (s *notifyingStore) Replace(list []any, resourceVersion string) error {
	for i := range list {
		obj, err := s.trim(list[i])
		if err != nil {
			return err
		}
		list[i] = obj
	}
	if err := s.Indexer.Replace(list, resourceVersion); err != nil {
		return err
	}
	if n := s.lists.Add(1); n > 1 {
		klog.InfoS("Cache listed again", "resource", s.name, "objects", len(list), "resourceVersion", resourceVersion)
	}
	s.synced.Store(true)
	s.notify(nil)
	return nil
}

func (s *notifyingStore) Resync() error { return nil }
