package kubecache

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/watch"
	"k8s.io/client-go/kubernetes/scheme"
	"k8s.io/client-go/rest"
)

// pvPageSize is how many PVs one list request asks for.
const pvPageSize = 500

// PVListerWatcher lists and watches PersistentVolumes for the PV cache and
// decodes each PV straight from the API server's JSON into a compact PV: a
// *corev1.PersistentVolume holding only what the loop reads from a cached
// PV (see compactPV for the list). A full PV is never built, not even for a
// moment, so the cache costs a fraction of what client-go's typed watch
// costs, and no freed full copy leaves holes between the cached ones.
//
// A compact PV must never be written back or copied into a PV that is: the
// write path reads the PV live before it builds anything from it (see
// Executor.replace).
//
// Lists are read in pages of pvPageSize; List follows the continue tokens
// itself and returns the whole collection. The PV cache uses plain list and
// watch, not the streaming list (watch-list): a list decoded one PV at a
// time already never holds the full collection in memory, which is what the
// streaming list is for, and list and watch is what every API server serves.
type PVListerWatcher struct {
	client rest.Interface
}

// NewPVListerWatcher returns a PVListerWatcher that talks to the API server
// through client, a core/v1 REST client (CoreV1().RESTClient()).
func NewPVListerWatcher(client rest.Interface) *PVListerWatcher {
	return &PVListerWatcher{client: client}
}

// IsWatchListSemanticsUnSupported tells client-go's reflector to list and
// then watch rather than ask for a streaming list.
func (lw *PVListerWatcher) IsWatchListSemanticsUnSupported() bool { return true }

// List lists every PV (see ListWithContext).
func (lw *PVListerWatcher) List(opts metav1.ListOptions) (runtime.Object, error) {
	return lw.ListWithContext(context.Background(), opts)
}

// Watch watches PVs (see WatchWithContext).
func (lw *PVListerWatcher) Watch(opts metav1.ListOptions) (watch.Interface, error) {
	return lw.WatchWithContext(context.Background(), opts)
}

// ListWithContext lists every PV in pages of pvPageSize, following the
// continue tokens, and returns them all in one list (no continue token) at
// the resourceVersion of the last page.
//
// The list is a *metav1.List whose items are the *corev1.PersistentVolume
// the cache keeps, not a PersistentVolumeList: the reflector takes those as
// they are, while it copies each item of a PersistentVolumeList into an
// object of its own. That copy and the list's growing array of PVs next to
// it cost 45 MB of allocations per 10,000 PVs listed, against 17 now.
func (lw *PVListerWatcher) ListWithContext(ctx context.Context, opts metav1.ListOptions) (runtime.Object, error) {
	opts.Limit = pvPageSize
	if opts.ResourceVersion != "" && opts.ResourceVersion != "0" && opts.ResourceVersionMatch == "" {
		// Next to a limit, a resourceVersion alone asks for exactly that
		// version (read from etcd), not for one at least as new: the
		// reflector, listing again at its last version after its watch
		// ended with 410 Gone (an API server restart), would get the old
		// PVs again, watch from the same expired version again, and go
		// round forever. Without a limit the reflector means "not older
		// than"; so do the pages.
		opts.ResourceVersionMatch = metav1.ResourceVersionMatchNotOlderThan
	}
	list := &metav1.List{}
	for {
		err := lw.listPage(ctx, opts, list)
		if err != nil {
			return nil, err
		}
		if list.Continue == "" {
			list.RemainingItemCount = nil
			return list, nil
		}
		// A continued list is read at the first page's resourceVersion; the
		// API server refuses one given next to the token.
		opts.Continue = list.Continue
		opts.ResourceVersion, opts.ResourceVersionMatch = "", ""
	}
}

func (lw *PVListerWatcher) listPage(ctx context.Context, opts metav1.ListOptions, into *metav1.List) error {
	body, err := lw.client.Get().Resource("persistentvolumes").
		VersionedParams(&opts, scheme.ParameterCodec).
		SetHeader("Accept", "application/json").
		Stream(ctx)
	if err != nil {
		return err
	}
	defer func() { _ = body.Close() }()
	if err := decodePVList(body, into); err != nil {
		return fmt.Errorf("decode PV list: %w", err)
	}
	return nil
}

// WatchWithContext opens a watch of PVs and decodes its events as they
// arrive, one at a time.
func (lw *PVListerWatcher) WatchWithContext(ctx context.Context, opts metav1.ListOptions) (watch.Interface, error) {
	var timeout time.Duration
	if opts.TimeoutSeconds != nil {
		timeout = time.Duration(*opts.TimeoutSeconds) * time.Second
	}
	opts.Watch = true
	body, err := lw.client.Get().Resource("persistentvolumes").
		VersionedParams(&opts, scheme.ParameterCodec).
		SetHeader("Accept", "application/json").
		Timeout(timeout).
		Stream(ctx)
	if err != nil {
		return nil, err
	}
	return watch.NewStreamWatcher(newPVEventDecoder(body),
		apierrors.NewClientErrorReporter(http.StatusInternalServerError, http.MethodGet, "ClientWatchDecoding")), nil
}

// decodePVList reads a PersistentVolumeList from r, one PV at a time,
// appending compact PVs to into.Items and setting into's list metadata.
func decodePVList(r io.Reader, into *metav1.List) error {
	dec := json.NewDecoder(r)
	if err := expectDelim(dec, '{'); err != nil {
		return err
	}
	var pvs pvDecoder
	for dec.More() {
		key, err := objectKey(dec)
		if err != nil {
			return err
		}
		switch key {
		case "metadata":
			var meta metav1.ListMeta
			if err := dec.Decode(&meta); err != nil {
				return fmt.Errorf("list metadata: %w", err)
			}
			into.ResourceVersion, into.Continue, into.RemainingItemCount = meta.ResourceVersion, meta.Continue, meta.RemainingItemCount
		case "items":
			if err := pvs.decodeItems(dec, into); err != nil {
				return err
			}
		default:
			if err := dec.Decode(&skipValue{}); err != nil {
				return err
			}
		}
	}
	return expectDelim(dec, '}')
}

// decodeItems reads the items array (or null) into compact PVs.
func (d *pvDecoder) decodeItems(dec *json.Decoder, into *metav1.List) error {
	tok, err := dec.Token()
	if err != nil {
		return err
	}
	if tok == nil {
		return nil
	}
	if tok != json.Delim('[') {
		return fmt.Errorf("items: want an array, got %v", tok)
	}
	for dec.More() {
		pv := &corev1.PersistentVolume{}
		if err := d.decode(dec.Decode, pv); err != nil {
			return fmt.Errorf("item %d: %w", len(into.Items), err)
		}
		into.Items = append(into.Items, runtime.RawExtension{Object: pv})
	}
	return expectDelim(dec, ']')
}

// pvEventDecoder reads watch events ({"type": ..., "object": ...}, one after
// the other) from a watch response, for watch.NewStreamWatcher. PVs come out
// compact; an ERROR event's object is the metav1.Status the API server sent,
// which the reflector turns into the matching error (410 Gone: list again).
type pvEventDecoder struct {
	body io.ReadCloser
	dec  *json.Decoder
	pvs  pvDecoder
}

func newPVEventDecoder(body io.ReadCloser) *pvEventDecoder {
	return &pvEventDecoder{body: body, dec: json.NewDecoder(body)}
}

// Decode returns the next event. At the end of the stream it returns io.EOF,
// which the stream watcher takes for a watch that ended normally.
func (d *pvEventDecoder) Decode() (watch.EventType, runtime.Object, error) {
	if err := expectDelim(d.dec, '{'); err != nil {
		return "", nil, err
	}
	var (
		typ     watch.EventType
		obj     runtime.Object
		pending json.RawMessage
	)
	for d.dec.More() {
		key, err := objectKey(d.dec)
		if err != nil {
			return "", nil, err
		}
		switch {
		case key == "type":
			err = d.dec.Decode(&typ)
		case key == "object" && typ == "":
			// Not the API server's order (type first): keep the bytes
			// until the type says what they are.
			err = d.dec.Decode(&pending)
		case key == "object":
			obj, err = d.object(typ, d.dec.Decode)
		default:
			err = d.dec.Decode(&skipValue{})
		}
		if err != nil {
			return "", nil, fmt.Errorf("watch event: %w", err)
		}
	}
	if err := expectDelim(d.dec, '}'); err != nil {
		return "", nil, err
	}
	switch typ {
	case watch.Added, watch.Modified, watch.Deleted, watch.Bookmark, watch.Error:
	default:
		return "", nil, fmt.Errorf("watch event of unknown type %q", typ)
	}
	if obj == nil && pending != nil {
		var err error
		if obj, err = d.object(typ, func(v any) error { return json.Unmarshal(pending, v) }); err != nil {
			return "", nil, fmt.Errorf("watch event: %w", err)
		}
	}
	if obj == nil {
		return "", nil, fmt.Errorf("watch event %s without an object", typ)
	}
	return typ, obj, nil
}

func (d *pvEventDecoder) object(typ watch.EventType, decode func(any) error) (runtime.Object, error) {
	if typ == watch.Error {
		status := &metav1.Status{}
		if err := decode(status); err != nil {
			return nil, err
		}
		return status, nil
	}
	pv := &corev1.PersistentVolume{}
	if err := d.pvs.decode(decode, pv); err != nil {
		return nil, err
	}
	return pv, nil
}

// Close ends the watch: the response body is closed.
func (d *pvEventDecoder) Close() { _ = d.body.Close() }

func expectDelim(dec *json.Decoder, want json.Delim) error {
	tok, err := dec.Token()
	if err != nil {
		return err
	}
	if tok != want {
		return fmt.Errorf("want %q, got %v", want, tok)
	}
	return nil
}

func objectKey(dec *json.Decoder) (string, error) {
	tok, err := dec.Token()
	if err != nil {
		return "", err
	}
	key, ok := tok.(string)
	if !ok {
		return "", fmt.Errorf("want an object key, got %v", tok)
	}
	return key, nil
}

// skipValue reads any JSON value and keeps nothing of it.
type skipValue struct{}

func (*skipValue) UnmarshalJSON([]byte) error { return nil }

// errNotStringMap: a map of strings (annotations, volume attributes) that is
// something else.
var errNotStringMap = errors.New("want an object of strings")
