package linstor

import (
	"bytes"
	"context"
	"fmt"
	"hash/maphash"
	"io"
	"maps"
	"net/http"
	"slices"
	"strconv"
	"strings"

	lapi "github.com/LINBIT/golinstor/client"
	"github.com/piraeusdatastore/linstor-affinity-sidecar/sidecar/decide"
)

// BulkTransport is the HTTP transport of the sidecar's LINSTOR client. It
// acts only on requests whose context carries a bulk slot (see Linstor.Fetch);
// everything else passes through untouched.
type BulkTransport struct {
	base http.RoundTripper
}

// NewBulkTransport wraps base (nil: a clone of http.DefaultTransport).
func NewBulkTransport(base http.RoundTripper) *BulkTransport {
	if base == nil {
		base = http.DefaultTransport.(*http.Transport).Clone()
	}
	return &BulkTransport{base: base}
}

// bulkSlot is one bulk read: how to decode the answer, and whether one came.
type bulkSlot struct {
	decode func(io.Reader) error
	// seen is set once a 200 answer went through the transport.
	seen bool
}

type bulkSlotKey struct{}

func withBulkSlot(ctx context.Context, s *bulkSlot) context.Context {
	return context.WithValue(ctx, bulkSlotKey{}, s)
}

// RoundTrip implements http.RoundTripper.
func (t *BulkTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	resp, err := t.base.RoundTrip(req)
	slot, _ := req.Context().Value(bulkSlotKey{}).(*bulkSlot)
	if slot == nil || err != nil || resp.StatusCode != http.StatusOK {
		return resp, err
	}
	readErr := slot.decode(resp.Body)
	if readErr == nil {
		// Nothing but whitespace is left; read it so the connection is
		// reused.
		_, readErr = io.Copy(io.Discard, resp.Body)
	}
	_ = resp.Body.Close()
	slot.seen = true
	if readErr != nil {
		return nil, fmt.Errorf("read %s: %w", req.URL.Path, readErr)
	}
	resp.Body = io.NopCloser(strings.NewReader("[]"))
	resp.ContentLength = 2
	resp.Header.Del("Content-Length")
	return resp, nil
}

// The fields of LINSTOR's answers that decisions use (see BuildView), as
// the decoders below keep them; every other field is read past.
type (
	leanVD struct {
		VolumeNumber *int32
		Props        map[string]string
	}
	leanRD struct {
		Name              string
		Props             map[string]string
		VolumeDefinitions []leanVD
	}
	leanResource struct {
		Name     string
		NodeName string
		Flags    []string
	}
)

// digest sums a hash of each list element's decision-relevant fields. The
// sum does not depend on the order of the elements (LINSTOR's lists may come
// in any order; decisions do not care), and any change of a field it covers
// changes it.
type digest struct {
	h   maphash.Hash
	sum uint64
}

func newDigest(seed maphash.Seed) *digest {
	d := &digest{}
	d.h.SetSeed(seed)
	return d
}

// field adds one field to the current element.
func (d *digest) field(s string) {
	_, _ = d.h.WriteString(s)
	_ = d.h.WriteByte(0)
}

// end closes the current element.
func (d *digest) end() {
	d.sum += d.h.Sum64()
	d.h.Reset()
}

// decodeNodes keeps each node's name and the properties under prefix (the
// property namespace, or Aux/ while it is not known yet).
func decodeNodes(r io.Reader, prefix string, d *digest) ([]lapi.Node, error) {
	var (
		out  []lapi.Node
		cur  lapi.Node
		keys []string
	)
	under := func(key []byte) bool { return bytes.HasPrefix(key, []byte(prefix)) }
	err := decodeList(r, func(s *scanner, key []byte) (err error) {
		switch string(key) {
		case "name":
			cur.Name, err = s.str()
		case "props":
			cur.Props, err = s.strMap(under)
		default:
			err = s.skip()
		}
		return err
	}, func() {
		d.field(cur.Name)
		keys = slices.AppendSeq(keys[:0], maps.Keys(cur.Props))
		slices.Sort(keys)
		for _, k := range keys {
			d.field(k)
			d.field(cur.Props[k])
		}
		d.end()
		out = append(out, cur)
		cur = lapi.Node{}
	})
	if err != nil {
		return nil, fmt.Errorf("decode nodes: %w", err)
	}
	return out, nil
}

// rdKeep are the only resource and volume definition properties decisions
// read; the others are read past.
var rdKeep = []string{decide.SkipRDKey, decide.SavedPVKey}

func rdKeeps(key []byte) bool {
	for _, k := range rdKeep {
		if string(key) == k {
			return true
		}
	}
	return false
}

// decodeRDs keeps each resource definition's name, the properties of rdKeep
// on it and on its volume definitions, and their numbers.
func decodeRDs(r io.Reader, d *digest) ([]leanRD, error) {
	var (
		out []leanRD
		cur leanRD
		vd  leanVD
	)
	vdField := func(s *scanner) func(key []byte) error {
		return func(key []byte) (err error) {
			switch string(key) {
			case "volume_number":
				vd.VolumeNumber = nil
				if isNull, err := s.null(); isNull || err != nil {
					return err
				}
				var n int32
				if n, err = s.int32(); err == nil {
					vd.VolumeNumber = &n
				}
			case "props":
				vd.Props, err = s.strMap(rdKeeps)
			default:
				err = s.skip()
			}
			return err
		}
	}
	err := decodeList(r, func(s *scanner, key []byte) (err error) {
		switch string(key) {
		case "name":
			cur.Name, err = s.str()
		case "props":
			cur.Props, err = s.strMap(rdKeeps)
		case "volume_definitions":
			field := vdField(s)
			cur.VolumeDefinitions, err = readArray(s, func() (leanVD, error) {
				vd = leanVD{}
				err := s.object(field)
				return vd, err
			})
		default:
			err = s.skip()
		}
		return err
	}, func() {
		d.field(cur.Name)
		for _, k := range rdKeep {
			d.field(cur.Props[k])
		}
		d.end()
		for _, vd := range cur.VolumeDefinitions {
			d.field(cur.Name)
			if vd.VolumeNumber != nil {
				d.field(strconv.Itoa(int(*vd.VolumeNumber)))
			}
			d.field(vd.Props[decide.SavedPVKey])
			d.end()
		}
		out = append(out, cur)
		cur = leanRD{}
	})
	if err != nil {
		return nil, fmt.Errorf("decode resource definitions: %w", err)
	}
	return out, nil
}

// decodeResources keeps each resource's name, node and flags. The digest
// covers only what the flags decide, whether the replica counts as holding
// the data (Resource.Diskful): flags that come and go without changing that
// (RESIZE, INACTIVE, ...) do not make a view look changed. Node names and
// flags repeat over tens of thousands of resources and are stored once.
func decodeResources(r io.Reader, d *digest) ([]leanResource, error) {
	var (
		out    []leanResource
		cur    leanResource
		intern = map[string]string{}
	)
	err := decodeList(r, func(s *scanner, key []byte) (err error) {
		switch string(key) {
		case "name":
			cur.Name, err = s.str()
		case "node_name":
			cur.NodeName, err = s.internStr(intern)
		case "flags":
			cur.Flags, err = readArray(s, func() (string, error) { return s.internStr(intern) })
		default:
			err = s.skip()
		}
		return err
	}, func() {
		d.field(cur.Name)
		d.field(cur.NodeName)
		if (decide.Resource{Name: cur.Name, Node: cur.NodeName, Flags: cur.Flags}).Diskful() {
			d.field("diskful")
		}
		d.end()
		out = append(out, cur)
		cur = leanResource{}
	})
	if err != nil {
		return nil, fmt.Errorf("decode resources: %w", err)
	}
	return out, nil
}

// readArray reads a JSON array (or null), each element with read.
func readArray[T any](s *scanner, read func() (T, error)) ([]T, error) {
	var out []T
	err := s.array(func() error {
		v, err := read()
		out = append(out, v)
		return err
	})
	return out, err
}

// decodeList reads a JSON array (or null) of objects one element at a time,
// so the memory it holds is one buffer, not the answer (35 MB for a real
// LINSTOR's resource view at 10,000 volumes). field is called for each key
// of each element and must read its value; done after each element.
// Anything but whitespace after the array is an error.
func decodeList(r io.Reader, field func(s *scanner, key []byte) error, done func()) error {
	s := newScanner(r)
	elemField := func(key []byte) error { return field(s, key) }
	err := s.array(func() error {
		if err := s.object(elemField); err != nil {
			return err
		}
		done()
		return nil
	})
	if err != nil {
		return err
	}
	return s.done()
}
