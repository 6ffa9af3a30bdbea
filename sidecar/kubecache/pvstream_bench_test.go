package kubecache

import (
	"bytes"
	"encoding/json"
	"fmt"
	"runtime"
	"testing"

	"github.com/piraeusdatastore/linstor-affinity-sidecar/sidecar/decide"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	kruntime "k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/serializer/protobuf"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/kubernetes/scheme"
	"k8s.io/client-go/tools/cache"
)

const benchCachePVs = 10000

// benchPVList is a list response of n real LINSTOR CSI PVs (managedFields
// included, as the API server sends them), in JSON and in protobuf, the
// encoding client-go's typed PV client asks for. Every PV has its own name,
// UID, volume handle and claim; half of them are strict, with replicas on
// two of 100 nodes, the others the zone policy's.
func benchPVList(b *testing.B, n int) (jsonList, protoList []byte) {
	b.Helper()
	template := realPVJSON(b, "pvc-template")
	var buf bytes.Buffer
	buf.WriteString(`{"kind":"PersistentVolumeList","apiVersion":"v1","metadata":{"resourceVersion":"9"},"items":[`)
	for i := 0; i < n; i++ {
		if i > 0 {
			buf.WriteByte(',')
		}
		var pv corev1.PersistentVolume
		if err := json.Unmarshal(template, &pv); err != nil {
			b.Fatal(err)
		}
		pv.Name = fmt.Sprintf("pvc-%08d-6356-4e0a-a496-b69ac18d93e0", i)
		pv.UID = types.UID(fmt.Sprintf("%08d-9e37-424c-9a79-73bc8d020d85", i))
		pv.Spec.CSI.VolumeHandle = pv.Name
		pv.Spec.ClaimRef.Name, pv.Spec.ClaimRef.UID = fmt.Sprintf("data-%d", i), types.UID(pv.Name[4:])
		if i%2 == 0 {
			pv.Spec.NodeAffinity = decide.AffinityFor(decide.Topology{Segments: []decide.Segment{
				{decide.HostnameKey: fmt.Sprintf("node-%03d", i%100)}, {decide.HostnameKey: fmt.Sprintf("node-%03d", (i+37)%100)}}})
		}
		data, err := json.Marshal(&pv)
		if err != nil {
			b.Fatal(err)
		}
		buf.Write(data)
	}
	buf.WriteString(`]}`)
	var list corev1.PersistentVolumeList
	if err := decodePVListFull(buf.Bytes(), &list); err != nil {
		b.Fatal(err)
	}
	var pb bytes.Buffer
	if err := protobuf.NewSerializer(scheme.Scheme, scheme.Scheme).Encode(&list, &pb); err != nil {
		b.Fatal(err)
	}
	return buf.Bytes(), pb.Bytes()
}

func decodePVListFull(data []byte, into *corev1.PersistentVolumeList) error {
	_, _, err := scheme.Codecs.UniversalDeserializer().Decode(data, nil, into)
	return err
}

// benchmarkPVCache fills a cache as the reflector does (list, one object
// per item, store) with PVs decoded by decode, and reports what the cache
// keeps: retained-B/PV (live heap) and inuse-B/PV (heap spans in use, so
// with the holes that freed objects leave between live ones).
func benchmarkPVCache(b *testing.B, data []byte, decode func([]byte) (kruntime.Object, error)) {
	b.ReportAllocs()
	var retained, inuse float64
	for i := 0; i < b.N; i++ {
		var before, after runtime.MemStats
		runtime.GC()
		runtime.ReadMemStats(&before)
		list, err := decode(data)
		if err != nil {
			b.Fatal(err)
		}
		items, err := meta.ExtractListWithAlloc(list)
		if err != nil {
			b.Fatal(err)
		}
		store := cache.NewIndexer(cache.MetaNamespaceKeyFunc, cache.Indexers{})
		objs := make([]any, len(items))
		for j := range items {
			objs[j] = items[j]
		}
		list, items = nil, nil
		if err := store.Replace(objs, "9"); err != nil {
			b.Fatal(err)
		}
		objs = nil
		runtime.GC()
		runtime.ReadMemStats(&after)
		if n := len(store.ListKeys()); n != benchCachePVs {
			b.Fatalf("%d PVs cached", n)
		}
		retained += float64(after.HeapAlloc) - float64(before.HeapAlloc)
		inuse += float64(after.HeapInuse) - float64(before.HeapInuse)
		runtime.KeepAlive(store)
	}
	b.ReportMetric(retained/float64(b.N)/benchCachePVs, "retained-B/PV")
	b.ReportMetric(inuse/float64(b.N)/benchCachePVs, "inuse-B/PV")
}

// BenchmarkPVCacheCompact10k: 10,000 PVs decoded compact from the JSON list
// (PVListerWatcher).
func BenchmarkPVCacheCompact10k(b *testing.B) {
	data, _ := benchPVList(b, benchCachePVs)
	b.ResetTimer()
	benchmarkPVCache(b, data, func(data []byte) (kruntime.Object, error) {
		list := &metav1.List{}
		return list, decodePVList(bytes.NewReader(data), list)
	})
}

// BenchmarkPVCacheFull10k: the same PVs as the typed client decoded them
// before (protobuf), managedFields dropped by the cache's transform.
func BenchmarkPVCacheFull10k(b *testing.B) {
	_, data := benchPVList(b, benchCachePVs)
	b.ResetTimer()
	benchmarkPVCache(b, data, func(data []byte) (kruntime.Object, error) {
		list := &corev1.PersistentVolumeList{}
		if err := decodePVListFull(data, list); err != nil {
			return nil, err
		}
		for i := range list.Items {
			list.Items[i].ManagedFields = nil
		}
		return list, nil
	})
}
