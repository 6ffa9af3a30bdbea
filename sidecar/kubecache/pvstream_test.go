package kubecache

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/piraeusdatastore/linstor-affinity-sidecar/sidecar/internal/fixture"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/equality"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/watch"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
)

// fakePVServer plays the API server's PV list and watch over HTTP, with PV
// JSON taken from a real one (testdata/pv).
type fakePVServer struct {
	t    *testing.T
	srv  *httptest.Server
	mu   sync.Mutex
	pvs  [][]byte // the PVs' JSON, in name order
	rv   string
	reqs []*http.Request
	// watch answers a watch request; nil: an empty stream that stays open
	// until the client goes away.
	watch func(w http.ResponseWriter, r *http.Request)
}

func newFakePVServer(t *testing.T, n int) *fakePVServer {
	t.Helper()
	f := &fakePVServer{t: t, rv: "500"}
	for i := 0; i < n; i++ {
		f.pvs = append(f.pvs, realPVJSON(t, fmt.Sprintf("pv-%05d", i)))
	}
	f.srv = httptest.NewServer(http.HandlerFunc(f.serve))
	t.Cleanup(f.srv.Close)
	return f
}

// realPVJSON is a real LINSTOR CSI PV's JSON, renamed.
func realPVJSON(t testing.TB, name string) []byte {
	t.Helper()
	data, err := os.ReadFile("testdata/pv/linstor-zone.json")
	if err != nil {
		t.Fatal(err)
	}
	var obj map[string]any
	if err := json.Unmarshal(data, &obj); err != nil {
		t.Fatal(err)
	}
	obj["metadata"].(map[string]any)["name"] = name
	obj["metadata"].(map[string]any)["uid"] = "uid-" + name
	out, err := json.Marshal(obj)
	if err != nil {
		t.Fatal(err)
	}
	return out
}

func (f *fakePVServer) client() *PVListerWatcher {
	kube := kubernetes.NewForConfigOrDie(&rest.Config{Host: f.srv.URL})
	return NewPVListerWatcher(kube.CoreV1().RESTClient())
}

func (f *fakePVServer) requests() []*http.Request {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]*http.Request(nil), f.reqs...)
}

func (f *fakePVServer) serve(w http.ResponseWriter, r *http.Request) {
	f.mu.Lock()
	f.reqs = append(f.reqs, r)
	watchFn := f.watch
	f.mu.Unlock()
	if r.URL.Path != "/api/v1/persistentvolumes" || r.Header.Get("Accept") != "application/json" {
		http.Error(w, "unexpected request "+r.URL.String()+" accepting "+r.Header.Get("Accept"), http.StatusBadRequest)
		return
	}
	q := r.URL.Query()
	if q.Get("watch") == "true" {
		w.Header().Set("Content-Type", "application/json")
		if watchFn != nil {
			watchFn(w, r)
			return
		}
		w.(http.Flusher).Flush()
		<-r.Context().Done()
		return
	}
	f.list(w, q)
}

// list serves a page as the API server does: limit, an opaque continue
// token, remainingItemCount, and a 400 for a resourceVersion next to a token.
func (f *fakePVServer) list(w http.ResponseWriter, q map[string][]string) {
	get := func(k string) string {
		if v := q[k]; len(v) > 0 {
			return v[0]
		}
		return ""
	}
	if get("continue") != "" && get("resourceVersion") != "" {
		http.Error(w, "specifying resource version is not allowed when using continue", http.StatusBadRequest)
		return
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	start, _ := strconv.Atoi(strings.TrimPrefix(get("continue"), "from-"))
	end := len(f.pvs)
	if limit, _ := strconv.Atoi(get("limit")); limit > 0 && start+limit < end {
		end = start + limit
	}
	meta := map[string]any{"resourceVersion": f.rv}
	if end < len(f.pvs) {
		meta["continue"] = fmt.Sprintf("from-%d", end)
		meta["remainingItemCount"] = len(f.pvs) - end
	}
	metaJSON, _ := json.Marshal(meta)
	w.Header().Set("Content-Type", "application/json")
	// Metadata after the items, and a field the decoder does not know: the
	// order of keys is not the decoder's business.
	fmt.Fprintf(w, `{"kind":"PersistentVolumeList","apiVersion":"v1","items":[`)
	for i := start; i < end; i++ {
		if i > start {
			fmt.Fprint(w, ",")
		}
		_, _ = w.Write(f.pvs[i])
	}
	fmt.Fprintf(w, `],"unknown":{"a":[1,2,{"b":null}]},"metadata":%s}`, metaJSON)
}

func TestPVListReadsEveryPageCompact(t *testing.T) {
	f := newFakePVServer(t, 1234)
	obj, err := f.client().List(metav1.ListOptions{ResourceVersion: "0", Limit: 5000})
	if err != nil {
		t.Fatal(err)
	}
	list := obj.(*metav1.List)
	if len(list.Items) != 1234 || list.ResourceVersion != "500" || list.Continue != "" || list.RemainingItemCount != nil {
		t.Fatalf("got %d PVs at %q, continue %q, remaining %v; want 1234 at 500 and no continue", len(list.Items), list.ResourceVersion, list.Continue, list.RemainingItemCount)
	}
	// The reflector takes the listed PVs themselves, copying none.
	items, err := meta.ExtractListWithAlloc(list)
	if err != nil {
		t.Fatal(err)
	}
	for i := range items {
		var full corev1.PersistentVolume
		if err := json.Unmarshal(f.pvs[i], &full); err != nil {
			t.Fatal(err)
		}
		if !equality.Semantic.DeepEqual(items[i], compactOf(&full)) {
			t.Fatalf("item %d is not the compact PV of %s: %+v", i, full.Name, items[i])
		}
		if items[i] != list.Items[i].Object {
			t.Fatalf("item %d was copied", i)
		}
	}
	var pages []string
	for _, r := range f.requests() {
		pages = append(pages, r.URL.RawQuery)
	}
	want := []string{"limit=500&resourceVersion=0", "continue=from-500&limit=500", "continue=from-1000&limit=500"}
	if strings.Join(pages, " ") != strings.Join(want, " ") {
		t.Errorf("requests %q, want %q", pages, want)
	}
}

func TestPVListFailsOnAnAPIError(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(http.StatusGone)
		fmt.Fprint(w, `{"kind":"Status","apiVersion":"v1","status":"Failure","message":"continue token expired","reason":"Expired","code":410}`)
	}))
	defer srv.Close()
	kube := kubernetes.NewForConfigOrDie(&rest.Config{Host: srv.URL})
	_, err := NewPVListerWatcher(kube.CoreV1().RESTClient()).List(metav1.ListOptions{})
	if !apierrors.IsResourceExpired(err) {
		t.Fatalf("got %v, want the API server's 410 Expired as an error the reflector recognises", err)
	}
}

// watchEvents writes events as the API server streams them.
func watchEvents(events ...string) func(w http.ResponseWriter, r *http.Request) {
	return func(w http.ResponseWriter, r *http.Request) {
		for _, e := range events {
			fmt.Fprintln(w, e)
			w.(http.Flusher).Flush()
		}
	}
}

const goneStatus = `{"kind":"Status","apiVersion":"v1","metadata":{},"status":"Failure","message":"too old resource version: 1 (500)","reason":"Expired","code":410}`

func TestPVWatchDecodesEveryEventType(t *testing.T) {
	f := newFakePVServer(t, 0)
	pv := realPVJSON(t, "pv-a")
	f.watch = watchEvents(
		`{"type":"ADDED","object":`+string(pv)+`}`,
		`{"type":"MODIFIED","object":`+string(pv)+`}`,
		`{"object":`+string(pv)+`,"type":"MODIFIED"}`, // object first
		`{"type":"BOOKMARK","object":{"kind":"PersistentVolume","apiVersion":"v1","metadata":{"resourceVersion":"777","creationTimestamp":null}}}`,
		`{"type":"DELETED","object":`+string(pv)+`}`,
		`{"type":"ERROR","object":`+goneStatus+`}`,
	)
	timeout := int64(60)
	w, err := f.client().Watch(metav1.ListOptions{ResourceVersion: "500", AllowWatchBookmarks: true, TimeoutSeconds: &timeout})
	if err != nil {
		t.Fatal(err)
	}
	defer w.Stop()
	var full corev1.PersistentVolume
	if err := json.Unmarshal(pv, &full); err != nil {
		t.Fatal(err)
	}
	var got []watch.EventType
	for e := range w.ResultChan() {
		got = append(got, e.Type)
		switch e.Type {
		case watch.Added, watch.Modified, watch.Deleted:
			if !equality.Semantic.DeepEqual(e.Object, compactOf(&full)) {
				t.Errorf("%s: not the compact PV: %+v", e.Type, e.Object)
			}
		case watch.Bookmark:
			if pv, ok := e.Object.(*corev1.PersistentVolume); !ok || pv.ResourceVersion != "777" {
				t.Errorf("bookmark %+v, want a PV with resourceVersion 777", e.Object)
			}
		case watch.Error:
			if err := apierrors.FromObject(e.Object); !apierrors.IsResourceExpired(err) {
				t.Errorf("ERROR event gives %v, want 410 Expired", err)
			}
		}
	}
	want := []watch.EventType{watch.Added, watch.Modified, watch.Modified, watch.Bookmark, watch.Deleted, watch.Error}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("events %v, want %v", got, want)
	}
	q := f.requests()[0].URL.Query()
	if q.Get("watch") != "true" || q.Get("resourceVersion") != "500" || q.Get("allowWatchBookmarks") != "true" || q.Get("timeoutSeconds") != "60" {
		t.Errorf("watch request %s", f.requests()[0].URL.RawQuery)
	}
}

// A stream that breaks off in the middle of an event, or sends something
// that is no event, ends the watch; the reflector then watches again.
func TestPVWatchEndsOnABrokenStream(t *testing.T) {
	for name, stream := range map[string]string{
		"cut off":      `{"type":"ADDED","object":{"metadata":{"name":"pv-a"`,
		"not an event": `["ADDED"]`,
		"unknown type": `{"type":"RENAMED","object":{}}`,
		"no object":    `{"type":"ADDED"}`,
	} {
		t.Run(name, func(t *testing.T) {
			f := newFakePVServer(t, 0)
			f.watch = watchEvents(stream)
			w, err := f.client().Watch(metav1.ListOptions{})
			if err != nil {
				t.Fatal(err)
			}
			defer w.Stop()
			for e := range w.ResultChan() {
				if e.Type != watch.Error {
					t.Errorf("got a %s event from %q", e.Type, stream)
				}
			}
		})
	}
}

// The PV cache on the compact list and watch: it fills from a paged list,
// follows the watch, and lists again after the API server says 410 Gone.
func TestPVCacheRelistsAfterGone(t *testing.T) {
	f := newFakePVServer(t, 3)
	pvD, pv1 := realPVJSON(t, "pv-d"), realPVJSON(t, "pv-00001")
	var watches int
	f.watch = func(w http.ResponseWriter, r *http.Request) {
		f.mu.Lock()
		watches++
		n := watches
		f.mu.Unlock()
		switch n {
		case 1: // history compacted: list again
			f.mu.Lock()
			f.pvs, f.rv = append(f.pvs[1:], pvD), "600" // pv-00000 deleted, pv-d added meanwhile
			f.mu.Unlock()
			watchEvents(`{"type":"ERROR","object":`+goneStatus+`}`)(w, r)
		default:
			watchEvents(`{"type":"MODIFIED","object":`+string(pv1)+`}`)(w, r)
			<-r.Context().Done()
		}
	}
	var mu sync.Mutex
	relists := 0
	pvw := NewWatch("persistentvolumes", f.client(), &corev1.PersistentVolume{}, nil, func(obj any) {
		if obj == nil {
			mu.Lock()
			relists++
			mu.Unlock()
		}
	})
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	go pvw.Run(ctx)
	for {
		mu.Lock()
		n := relists
		mu.Unlock()
		_, hasD, _ := pvw.Indexer().GetByKey("pv-d")
		_, hasGone, _ := pvw.Indexer().GetByKey("pv-00000")
		if n >= 2 && hasD && !hasGone {
			break
		}
		select {
		case <-ctx.Done():
			t.Fatalf("the cache did not list again after 410 Gone: %d lists, keys %v", n, pvw.Indexer().ListKeys())
		case <-time.After(10 * time.Millisecond):
		}
	}
	for _, obj := range pvw.Indexer().List() {
		pv := obj.(*corev1.PersistentVolume)
		if pv.Spec.Capacity != nil || pv.Finalizers != nil || pv.ManagedFields != nil || pv.Spec.CSI == nil || pv.Spec.CSI.Driver != fixture.Driver {
			t.Errorf("cached PV %s is not compact: %+v", pv.Name, pv)
		}
	}
	if got := pvw.Indexer().ListKeys(); len(got) != 3 {
		t.Errorf("cache holds %v, want pv-00001, pv-00002, pv-d", got)
	}
	if first := f.requests()[0].URL.Query(); first.Get("watch") != "" || first.Get("sendInitialEvents") != "" {
		t.Errorf("first request %s, want a plain list (no streaming list)", f.requests()[0].URL.RawQuery)
	}
	// The list after the 410 names the last version seen: with a limit, a
	// resourceVersion alone would ask the API server for exactly that old
	// version, and the watch from it would end with 410 again, forever.
	for _, r := range f.requests() {
		q := r.URL.Query()
		if q.Get("watch") == "" && q.Get("continue") == "" && q.Get("resourceVersion") != "" && q.Get("resourceVersion") != "0" &&
			q.Get("resourceVersionMatch") != string(metav1.ResourceVersionMatchNotOlderThan) {
			t.Errorf("list %s asks for an exact resourceVersion, want resourceVersionMatch=NotOlderThan", r.URL.RawQuery)
		}
	}
}
