package kubecache

import (
	"bytes"
	"encoding/json"
	"sync"

	corev1 "k8s.io/api/core/v1"
)

// Compact PVs share what many PVs repeat instead of holding a copy each: the
// driver name, StorageClass names, claim namespaces, reclaim policies and
// phases; the kept volume attributes (LINSTOR CSI gives every PV of a
// StorageClass the same ones); node affinities (every PV of a zone under a
// zone policy has the same one, and so do the PVs on the same nodes). A value
// is looked up by its JSON text, which costs no allocation, so a PV whose
// values are all known is decoded without allocating for them at all.
//
// Cached objects are read-only, as in every informer cache, so they may
// share. Each table is bounded: once full, further values are decoded as
// usual and not kept, so a cluster of unique values costs at most the bound.
var shared = &sharedValues{
	strs:       map[string]string{},
	attrs:      map[string]map[string]string{},
	affinities: map[string]*corev1.VolumeNodeAffinity{},
}

// Bounds of the shared tables, and of the JSON text of one value they take.
const (
	maxSharedStrings    = 4096
	maxSharedAttributes = 1024
	maxSharedAffinities = 1024
	maxSharedText       = 1024
)

type sharedValues struct {
	mu         sync.Mutex
	strs       map[string]string
	attrs      map[string]map[string]string
	affinities map[string]*corev1.VolumeNodeAffinity
}

// str returns the string a JSON string token stands for, shared.
func (t *sharedValues) str(data []byte) (string, error) {
	return lookupShared(&t.mu, t.strs, maxSharedStrings, data, func(data []byte) (s string, err error) {
		err = json.Unmarshal(data, &s)
		return s, err
	})
}

// attributes returns the kept entries of a volume attributes object.
func (t *sharedValues) attributes(data []byte) (map[string]string, error) {
	return lookupShared(&t.mu, t.attrs, maxSharedAttributes, data, func(data []byte) (map[string]string, error) {
		return decodeStringMap(data, keptAttribute)
	})
}

// affinity returns the node affinity a JSON object stands for, shared.
func (t *sharedValues) affinity(data []byte) (*corev1.VolumeNodeAffinity, error) {
	return lookupShared(&t.mu, t.affinities, maxSharedAffinities, data, func(data []byte) (a *corev1.VolumeNodeAffinity, err error) {
		err = json.Unmarshal(data, &a)
		return a, err
	})
}

// lookupShared returns table's value for the JSON text data, or decodes it
// and keeps it while the table has fewer than max values.
func lookupShared[V any](mu *sync.Mutex, table map[string]V, max int, data []byte, decode func([]byte) (V, error)) (V, error) {
	mu.Lock()
	v, ok := table[string(data)]
	mu.Unlock()
	if ok {
		return v, nil
	}
	v, err := decode(data)
	if err != nil || len(data) > maxSharedText {
		return v, err
	}
	mu.Lock()
	if len(table) < max {
		table[string(data)] = v
	}
	mu.Unlock()
	return v, nil
}

// sharedString is a string field of a compact PV that PVs share.
type sharedString string

func (s *sharedString) UnmarshalJSON(data []byte) error {
	if isNull(data) {
		return nil
	}
	v, err := shared.str(data)
	*s = sharedString(v)
	return err
}

// sharedAffinity is a compact PV's node affinity, shared.
type sharedAffinity struct{ *corev1.VolumeNodeAffinity }

func (a *sharedAffinity) UnmarshalJSON(data []byte) error {
	if isNull(data) {
		return nil
	}
	v, err := shared.affinity(data)
	a.VolumeNodeAffinity = v
	return err
}

func isNull(data []byte) bool { return bytes.Equal(bytes.TrimSpace(data), []byte("null")) }
