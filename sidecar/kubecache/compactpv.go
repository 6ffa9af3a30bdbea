package kubecache

import (
	"bytes"
	"encoding/json"
	"fmt"
	"unicode/utf8"

	"github.com/piraeusdatastore/linstor-affinity-sidecar/sidecar/decide"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
)

// A compact PV is a *corev1.PersistentVolume holding only what the loop reads
// from a cached PV (the decision, policy resolution, the backoff fingerprint,
// the expectations, the report, Events and the wake filter):
//
//   - metadata: name, uid, resourceVersion, creationTimestamp,
//     deletionTimestamp, labels, and only the annotations keptAnnotation names;
//   - spec.csi: driver, volumeHandle, and of the volume attributes only
//     VolumeContextMarker and VolumeContextPolicyKey;
//   - spec: nodeAffinity, storageClassName, claimRef (namespace, name, uid),
//     persistentVolumeReclaimPolicy;
//   - status.phase.
//
// Everything else (capacity, access and volume modes, mount options, the
// other volume attributes, secret references, finalizers, owner references,
// managedFields, the other annotations...) is left out. So a compact PV is
// good for deciding, never for writing: the write path reads the PV live.
//
// compactPV's fields mirror the PV's JSON; decoding into it skips everything
// else without allocating for it. Values many PVs repeat are shared between
// them (see sharedValues).
type compactPV struct {
	Metadata struct {
		Name              string            `json:"name"`
		UID               types.UID         `json:"uid"`
		ResourceVersion   string            `json:"resourceVersion"`
		CreationTimestamp metav1.Time       `json:"creationTimestamp"`
		DeletionTimestamp *metav1.Time      `json:"deletionTimestamp"`
		Labels            map[string]string `json:"labels"`
		Annotations       keptAnnotations   `json:"annotations"`
	} `json:"metadata"`
	Spec struct {
		CSI              *compactCSI      `json:"csi"`
		NodeAffinity     sharedAffinity   `json:"nodeAffinity"`
		StorageClassName sharedString     `json:"storageClassName"`
		ClaimRef         *compactClaimRef `json:"claimRef"`
		ReclaimPolicy    sharedString     `json:"persistentVolumeReclaimPolicy"`
	} `json:"spec"`
	Status struct {
		Phase sharedString `json:"phase"`
	} `json:"status"`
}

type compactCSI struct {
	Driver           sharedString   `json:"driver"`
	VolumeHandle     string         `json:"volumeHandle"`
	VolumeAttributes keptAttributes `json:"volumeAttributes"`
}

type compactClaimRef struct {
	Namespace sharedString `json:"namespace"`
	Name      string       `json:"name"`
	UID       types.UID    `json:"uid"`
}

// keptAnnotation says which PV annotations a compact PV keeps: the skip
// annotation and the policy overrides (the decision reads them), and the
// replace's own marks, the reclaim policy before the retain and
// <driver>/skip-reclaim (present only on a PV in the middle of a replace, so
// a cached copy shows that; the write path reads them live).
func keptAnnotation(key []byte) bool {
	return string(key) == decide.SkipAnnotation ||
		bytes.HasPrefix(key, []byte(decide.OverrideAnnotationPrefix)) ||
		string(key) == decide.RetainedFromAnnotation ||
		bytes.HasSuffix(key, []byte(skipReclaimSuffix))
}

// skipReclaimSuffix ends the skip-reclaim annotation of any driver.
const skipReclaimSuffix = "/skip-reclaim"

// keptAttribute says which CSI volume attributes a compact PV keeps: the two
// ResolvePolicy reads.
func keptAttribute(key []byte) bool {
	return string(key) == decide.VolumeContextMarker || string(key) == decide.VolumeContextPolicyKey
}

type keptAnnotations map[string]string

func (m *keptAnnotations) UnmarshalJSON(data []byte) error {
	kept, err := decodeStringMap(data, keptAnnotation)
	*m = kept
	return err
}

// keptAttributes are the kept volume attributes, one map shared by every PV
// whose volume attributes have the same JSON text (LINSTOR CSI puts the same
// StorageClass parameters on every PV of a class).
type keptAttributes map[string]string

func (m *keptAttributes) UnmarshalJSON(data []byte) error {
	kept, err := shared.attributes(data)
	*m = kept
	return err
}

// pvDecoder decodes PVs compact, reusing its scratch space between PVs.
type pvDecoder struct {
	scratch compactPV
}

// decode reads one PV with decode (a json.Decoder's Decode, or Unmarshal of
// bytes) and fills pv, which must be empty, with its compact form.
func (d *pvDecoder) decode(decode func(any) error, pv *corev1.PersistentVolume) error {
	d.scratch = compactPV{}
	if err := decode(&d.scratch); err != nil {
		return err
	}
	c := &d.scratch
	pv.Name, pv.UID, pv.ResourceVersion = c.Metadata.Name, c.Metadata.UID, c.Metadata.ResourceVersion
	pv.CreationTimestamp, pv.DeletionTimestamp = c.Metadata.CreationTimestamp, c.Metadata.DeletionTimestamp
	pv.Labels, pv.Annotations = c.Metadata.Labels, c.Metadata.Annotations
	if csi := c.Spec.CSI; csi != nil {
		pv.Spec.CSI = &corev1.CSIPersistentVolumeSource{Driver: string(csi.Driver), VolumeHandle: csi.VolumeHandle, VolumeAttributes: csi.VolumeAttributes}
	}
	pv.Spec.NodeAffinity = c.Spec.NodeAffinity.VolumeNodeAffinity
	pv.Spec.StorageClassName = string(c.Spec.StorageClassName)
	if ref := c.Spec.ClaimRef; ref != nil {
		pv.Spec.ClaimRef = &corev1.ObjectReference{Namespace: string(ref.Namespace), Name: ref.Name, UID: ref.UID}
	}
	pv.Spec.PersistentVolumeReclaimPolicy = corev1.PersistentVolumeReclaimPolicy(c.Spec.ReclaimPolicy)
	pv.Status.Phase = corev1.PersistentVolumePhase(c.Status.Phase)
	return nil
}

// decodeStringMap reads a JSON object of strings (or null) and returns the
// entries keep accepts; nil when it keeps none. Keys it does not keep cost
// no allocation. data is one JSON value, as UnmarshalJSON receives it.
func decodeStringMap(data []byte, keep func(key []byte) bool) (map[string]string, error) {
	s := jsonScanner{data: data}
	if s.literal("null") {
		return nil, s.end()
	}
	if !s.consume('{') {
		return nil, errNotStringMap
	}
	var out map[string]string
	if s.consume('}') {
		return nil, s.end()
	}
	for {
		rawKey, ok := s.str()
		if !ok || !s.consume(':') {
			return nil, errNotStringMap
		}
		rawValue, null := []byte(nil), s.literal("null")
		if !null {
			if rawValue, ok = s.str(); !ok {
				return nil, fmt.Errorf("%w: the value of %s is not a string", errNotStringMap, rawKey)
			}
		}
		key, err := unquote(rawKey)
		if err != nil {
			return nil, err
		}
		if keep(key) {
			value := ""
			if !null {
				text, err := unquote(rawValue)
				if err != nil {
					return nil, err
				}
				value = string(text)
			}
			if out == nil {
				out = map[string]string{}
			}
			out[string(key)] = value
		}
		if s.consume(',') {
			continue
		}
		if s.consume('}') {
			return out, s.end()
		}
		return nil, errNotStringMap
	}
}

// jsonScanner walks the tokens of one JSON value held in memory.
type jsonScanner struct {
	data []byte
	pos  int
}

func (s *jsonScanner) skipSpace() {
	for s.pos < len(s.data) {
		switch s.data[s.pos] {
		case ' ', '\t', '\n', '\r':
			s.pos++
		default:
			return
		}
	}
}

// consume skips white space and c, if c comes next.
func (s *jsonScanner) consume(c byte) bool {
	s.skipSpace()
	if s.pos < len(s.data) && s.data[s.pos] == c {
		s.pos++
		return true
	}
	return false
}

// literal skips white space and lit, if lit comes next.
func (s *jsonScanner) literal(lit string) bool {
	s.skipSpace()
	if bytes.HasPrefix(s.data[s.pos:], []byte(lit)) {
		s.pos += len(lit)
		return true
	}
	return false
}

// str skips white space and returns the string that comes next, quotes
// included, escapes as they are.
func (s *jsonScanner) str() ([]byte, bool) {
	s.skipSpace()
	if s.pos >= len(s.data) || s.data[s.pos] != '"' {
		return nil, false
	}
	for i := s.pos + 1; i < len(s.data); i++ {
		switch s.data[i] {
		case '\\':
			i++
		case '"':
			raw := s.data[s.pos : i+1]
			s.pos = i + 1
			return raw, true
		}
	}
	return nil, false
}

// end checks that only white space follows.
func (s *jsonScanner) end() error {
	s.skipSpace()
	if s.pos != len(s.data) {
		return errNotStringMap
	}
	return nil
}

// unquote returns the text of a JSON string (quotes included): the bytes
// between the quotes when there is nothing to unescape, else a decoded copy.
func unquote(raw []byte) ([]byte, error) {
	inner := raw[1 : len(raw)-1]
	if bytes.IndexByte(inner, '\\') < 0 && utf8.Valid(inner) {
		return inner, nil
	}
	var text string
	if err := json.Unmarshal(raw, &text); err != nil {
		return nil, err
	}
	return []byte(text), nil
}

// Compact returns pv as the PV cache holds it: its JSON decoded compact, with
// only the fields the decision reads. The loop's tests build their caches
// with it, so they decide on what the sidecar's own cache would hold.
func Compact(pv *corev1.PersistentVolume) (*corev1.PersistentVolume, error) {
	data, err := json.Marshal(pv)
	if err != nil {
		return nil, err
	}
	out, err := decodeOne(data)
	if err != nil {
		return nil, fmt.Errorf("compact decode of pv %s: %w", pv.Name, err)
	}
	return out, nil
}

// decodeOne decodes one PV's JSON compact, as the cache's list and watch
// decode each PV of their stream.
func decodeOne(data []byte) (*corev1.PersistentVolume, error) {
	var d pvDecoder
	pv := &corev1.PersistentVolume{}
	if err := d.decode(func(v any) error { return json.Unmarshal(data, v) }, pv); err != nil {
		return nil, err
	}
	return pv, nil
}
