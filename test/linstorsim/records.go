package linstorsim

import (
	"slices"
	"sort"
	"strings"
	"time"

	lapiconst "github.com/LINBIT/golinstor"
	"github.com/LINBIT/golinstor/client"
)

// The records below are never changed once stored: a mutation builds a new
// record (copying slices, and maps it changes) and swaps it in. Readers may
// therefore keep and encode a record after dropping the state lock.

const disklessPool = "DfltDisklessStorPool"

// nodeRec is one LINSTOR satellite.
type nodeRec struct {
	name   string
	props  map[string]string
	flags  []string
	online bool
	pools  []poolRec // sorted by name, always includes the diskless pool
	uuid   string
}

// poolRec is one storage pool of a node.
type poolRec struct {
	name     string
	provider client.ProviderKind
	totalKiB int64
}

func (n *nodeRec) pool(name string) (poolRec, bool) {
	for _, p := range n.pools {
		if p.name == name {
			return p, true
		}
	}
	return poolRec{}, false
}

func (n *nodeRec) clone() *nodeRec {
	c := *n
	c.flags = slices.Clone(n.flags)
	c.pools = slices.Clone(n.pools)
	return &c
}

// rgRec is one resource group with its select filter.
type rgRec struct {
	name        string
	description string
	props       map[string]string
	filter      client.AutoSelectFilter
	vgs         []int32
	uuid        string
}

// rdRec is one resource definition with its volume definitions and its
// resources (one per node).
type rdRec struct {
	name    string
	rg      string
	props   map[string]string
	flags   []string
	uuid    string
	port    int32
	created time.Time
	vds     []vdRec  // sorted by number
	res     []resRec // sorted by node name

	// enc holds the lazily encoded JSON of this exact record.
	enc *rdEncoding
}

// vdRec is one volume definition of a resource definition.
type vdRec struct {
	nr      int32
	sizeKiB uint64
	props   map[string]string
	flags   []string
	uuid    string
	minor   int32
}

// resRec is one resource (replica) of a resource definition on a node.
type resRec struct {
	node     string
	flags    []string
	props    map[string]string
	pool     string
	provider client.ProviderKind
	nodeID   int32
	healthy  bool
	inUse    bool
	created  time.Time
	uuid     string
	volProps map[int32]map[string]string
	// volFlags are the flags of every volume of the resource (LINSTOR
	// flags them DRBD_DELETE and DELETE with the resource).
	volFlags []string
	// delSeq is nonzero while the resource is being deleted in realistic
	// mode (see deletewindow.go); it ties the pending deletion to this
	// resource.
	delSeq uint64
}

// diskful reports whether the resource keeps data: not diskless in any form.
func (r *resRec) diskful() bool {
	return !slices.Contains(r.flags, lapiconst.FlagDiskless)
}

// live reports whether the resource is neither being deleted (in either
// phase) nor failed.
func (r *resRec) live() bool {
	for _, f := range r.flags {
		switch f {
		case lapiconst.FlagDelete, lapiconst.FlagDrbdDelete, lapiconst.FlagFailedDeployment, lapiconst.FlagFailedDisconnect:
			return false
		}
	}
	return true
}

// clone copies the record's slices so the copy can be changed freely; maps
// stay shared and must be replaced, never written, by the caller.
func (r *rdRec) clone() *rdRec {
	c := *r
	c.flags = slices.Clone(r.flags)
	c.vds = slices.Clone(r.vds)
	c.res = slices.Clone(r.res)
	c.enc = nil
	return &c
}

func (r *rdRec) resource(node string) (int, bool) {
	for i := range r.res {
		if r.res[i].node == node {
			return i, true
		}
	}
	return -1, false
}

func (r *rdRec) vd(nr int32) (int, bool) {
	for i := range r.vds {
		if r.vds[i].nr == nr {
			return i, true
		}
	}
	return -1, false
}

// addResource inserts a resource keeping the node order and picks the
// lowest free DRBD node id.
func (r *rdRec) addResource(res resRec) {
	used := map[int32]bool{}
	for _, x := range r.res {
		used[x.nodeID] = true
	}
	for id := int32(0); ; id++ {
		if !used[id] {
			res.nodeID = id
			break
		}
	}
	r.res = append(r.res, res)
	sort.Slice(r.res, func(i, j int) bool { return r.res[i].node < r.res[j].node })
}

func (r *rdRec) totalSizeKiB() uint64 {
	var sum uint64
	for _, v := range r.vds {
		sum += v.sizeKiB
	}
	return sum
}

// rdEncoding holds the JSON forms of one rdRec, encoded when the record is
// stored so lists only copy bytes.
type rdEncoding struct {
	plain  []byte   // client.ResourceDefinition
	withVD []byte   // client.ResourceDefinitionWithVolumeDefinition
	res    [][]byte // client.ResourceWithVolumes, parallel to rdRec.res
}

// seal encodes the record; every stored rdRec is sealed.
func (r *rdRec) seal() *rdRec {
	enc := &rdEncoding{
		plain:  encodeRD(r, false),
		withVD: encodeRD(r, true),
		res:    make([][]byte, len(r.res)),
	}
	for i := range r.res {
		enc.res[i] = encodeResource(r, &r.res[i])
	}
	r.enc = enc
	return r
}

// applyProps returns a new map: base with override set, then keys and
// namespaces deleted, in LINSTOR's order.
func applyProps(base map[string]string, override map[string]string, del []string, delNS []string) map[string]string {
	out := make(map[string]string, len(base)+len(override))
	for k, v := range base {
		out[k] = v
	}
	for k, v := range override {
		out[k] = v
	}
	for _, k := range del {
		delete(out, k)
	}
	for _, ns := range delNS {
		prefix := strings.TrimSuffix(ns, "/") + "/"
		for k := range out {
			if strings.HasPrefix(k, prefix) {
				delete(out, k)
			}
		}
	}
	return out
}

func copyProps(m map[string]string) map[string]string {
	out := make(map[string]string, len(m))
	for k, v := range m {
		out[k] = v
	}
	return out
}
