package sidecar

import (
	"context"
	"errors"
	"fmt"
	"io"
	"sync"
	"time"

	lapi "github.com/LINBIT/golinstor/client"
	"k8s.io/klog/v2"
)

// Property namespaces LINSTOR CSI may store node topology under.
const (
	NamespaceTopology = "Aux/topology"
	NamespaceLegacy   = "Aux"
)

// Linstor reads LINSTOR in bulk and keeps saved state there. One Fetch is three
// requests whatever the number of volumes: nodes, resource definitions with
// their volume definitions, and the resource view.
type Linstor struct {
	Client *lapi.Client

	mu        sync.Mutex
	namespace string

	// bulk, when set (NewBulkLinstor), lets Fetch hash the bulk answers and
	// decode only what changed; last is what the previous Fetch decoded.
	bulk     *BulkTransport
	fetchMu  sync.Mutex
	last     *bulkLast
	maxReuse time.Duration
}

// bulkLast is what the last bulk Fetch read: the trimmed lists, the sums of
// the answers they came from, and the view built from them.
type bulkLast struct {
	nodes     []lapi.Node
	rds       []leanRD
	res       []leanResource
	sums      [3]uint64
	namespace string
	view      *View
	decodedAt time.Time
}

// DefaultMaxReuse bounds how long Fetch keeps trusting that equal sums mean
// equal answers: past it, the lists are decoded afresh even if unchanged.
const DefaultMaxReuse = 5 * time.Minute

// NewLinstor wraps a golinstor client. An empty namespace is detected on the
// first Fetch, as the upstream controller does, and then kept: a namespace that
// changed between cycles would make every volume look moved.
func NewLinstor(c *lapi.Client, namespace string) *Linstor {
	return &Linstor{Client: c, namespace: namespace}
}

// NewBulkLinstor is NewLinstor for a client made by NewLinstorClient: its
// Fetch still sends the same three requests every time, but decodes only the
// fields decisions need, and only for answers whose bytes changed since the
// last Fetch (see View.Unchanged). maxReuse bounds how long an unchanged
// answer is trusted without decoding it (0: DefaultMaxReuse).
func NewBulkLinstor(c *lapi.Client, t *BulkTransport, namespace string, maxReuse time.Duration) *Linstor {
	if maxReuse <= 0 {
		maxReuse = DefaultMaxReuse
	}
	return &Linstor{Client: c, namespace: namespace, bulk: t, maxReuse: maxReuse}
}

// Namespace is the property namespace in use ("" until detected).
func (l *Linstor) Namespace() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.namespace
}

// DetectNamespace picks Aux/topology when any node carries
// Aux/topology/kubernetes.io/hostname (Piraeus Operator v2 sets it), else Aux.
func DetectNamespace(nodes []lapi.Node) string {
	for _, n := range nodes {
		if _, ok := n.Props[NamespaceTopology+"/kubernetes.io/hostname"]; ok {
			return NamespaceTopology
		}
	}
	return NamespaceLegacy
}

// Fetch reads one consistent-enough view of LINSTOR. The three reads run
// concurrently; any failure fails the whole fetch, since a decision on half a
// view could rewrite PVs wrongly.
func (l *Linstor) Fetch(ctx context.Context) (*View, error) {
	start := time.Now()
	if l.bulk != nil {
		return l.fetchBulk(ctx, start)
	}
	var (
		wg    sync.WaitGroup
		nodes []lapi.Node
		rds   []lapi.ResourceDefinitionWithVolumeDefinition
		res   []lapi.ResourceWithVolumes
		errs  [3]error
	)
	wg.Add(3)
	go func() {
		defer wg.Done()
		nodes, errs[0] = l.Client.Nodes.GetAll(ctx)
	}()
	go func() {
		defer wg.Done()
		rds, errs[1] = l.Client.ResourceDefinitions.GetAll(ctx, lapi.RDGetAllRequest{WithVolumeDefinitions: true})
	}()
	go func() {
		defer wg.Done()
		res, errs[2] = l.Client.Resources.GetResourceView(ctx)
	}()
	wg.Wait()
	for i, what := range []string{"nodes", "resource definitions", "resources"} {
		if errs[i] != nil {
			return nil, fmt.Errorf("linstor: list %s: %w", what, errs[i])
		}
	}
	ns := l.ensureNamespace(nodes)
	return BuildView(start, ns, nodes, rds, res), nil
}

func (l *Linstor) ensureNamespace(nodes []lapi.Node) string {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.namespace == "" && len(nodes) > 0 {
		l.namespace = DetectNamespace(nodes)
		klog.InfoS("Detected LINSTOR property namespace", "namespace", l.namespace)
	}
	return l.namespace
}

// BuildView trims LINSTOR's answers to what decisions need.
func BuildView(fetchedAt time.Time, namespace string, nodes []lapi.Node, rds []lapi.ResourceDefinitionWithVolumeDefinition, res []lapi.ResourceWithVolumes) *View {
	lrds := make([]leanRD, len(rds))
	for i, rd := range rds {
		lrds[i] = leanRD{Name: rd.Name, Props: rd.Props, VolumeDefinitions: make([]leanVD, len(rd.VolumeDefinitions))}
		for j, vd := range rd.VolumeDefinitions {
			lrds[i].VolumeDefinitions[j] = leanVD{VolumeNumber: vd.VolumeNumber, Props: vd.Props}
		}
	}
	lres := make([]leanResource, len(res))
	for i, r := range res {
		lres[i] = leanResource{Name: r.Name, NodeName: r.NodeName, Flags: r.Flags}
	}
	return buildView(fetchedAt, namespace, nodes, lrds, lres)
}

func buildView(fetchedAt time.Time, namespace string, nodes []lapi.Node, rds []leanRD, res []leanResource) *View {
	v := &View{Nodes: make(map[string]Segment, len(nodes)), RDs: make(map[string]*RDView, len(rds)), FetchedAt: fetchedAt}
	for _, n := range nodes {
		v.Nodes[n.Name] = NodeSegments(n.Props, namespace)
	}
	// One allocation for every RDView and one for every Resource: at tens of
	// thousands of volumes this is most of a rebuild's cost otherwise.
	views := make([]RDView, len(rds))
	perRD := make(map[string]int, len(rds))
	for i, rd := range rds {
		r := &views[i]
		*r = RDView{
			Name:        rd.Name,
			Skip:        rd.Props[SkipRDKey],
			LegacySaved: rd.Props[SavedPVKey],
			Volumes:     make(map[int]string, len(rd.VolumeDefinitions)),
		}
		for _, vd := range rd.VolumeDefinitions {
			if vd.VolumeNumber == nil {
				continue
			}
			r.Volumes[int(*vd.VolumeNumber)] = vd.Props[SavedPVKey]
		}
		v.RDs[rd.Name] = r
	}
	for _, r := range res {
		if v.RDs[r.Name] != nil {
			perRD[r.Name]++
		}
	}
	backing := make([]Resource, 0, len(res))
	for _, r := range res {
		rd := v.RDs[r.Name]
		if rd == nil {
			continue
		}
		if rd.Resources == nil {
			n := perRD[r.Name]
			rd.Resources = backing[len(backing) : len(backing) : len(backing)+n]
			backing = backing[:len(backing)+n]
		}
		rd.Resources = append(rd.Resources, Resource{Name: r.Name, Node: r.NodeName, Flags: r.Flags})
	}
	return v
}

// bulk request slots, in the order of bulkLast.sums.
const (
	bulkNodes = iota
	bulkRDs
	bulkResources
)

// fetchBulk is Fetch on a BulkTransport. Nodes (a small answer) are always
// decoded. The two large answers are first only hashed; one whose sum differs
// from the last decoded one is asked for again and decoded, so a cycle in
// which something changed costs one or two more requests, and a cycle in which
// nothing did costs three requests and no decoding at all.
func (l *Linstor) fetchBulk(ctx context.Context, start time.Time) (*View, error) {
	l.fetchMu.Lock()
	defer l.fetchMu.Unlock()
	last := l.last
	fresh := last == nil || start.Sub(last.decodedAt) >= l.maxReuse
	var (
		nodes []lapi.Node
		rds   []leanRD
		res   []leanResource
		slots [3]bulkSlot
	)
	slots[bulkNodes].decode = func(r io.Reader) (err error) { nodes, err = decodeNodes(r); return err }
	decodeRDSlot := func(r io.Reader) (err error) { rds, err = decodeRDs(r); return err }
	decodeResSlot := func(r io.Reader) (err error) { res, err = decodeResources(r); return err }
	if fresh {
		slots[bulkRDs].decode, slots[bulkResources].decode = decodeRDSlot, decodeResSlot
	}
	if err := l.bulkRound(ctx, &slots, [3]bool{true, true, true}); err != nil {
		return nil, err
	}
	if !fresh {
		var again [3]bool
		for i, d := range []func(io.Reader) error{bulkRDs: decodeRDSlot, bulkResources: decodeResSlot} {
			if d != nil && slots[i].sum != last.sums[i] {
				slots[i] = bulkSlot{decode: d}
				again[i] = true
			}
		}
		if again[bulkRDs] || again[bulkResources] {
			if err := l.bulkRound(ctx, &slots, again); err != nil {
				return nil, err
			}
		}
		if rds == nil && !again[bulkRDs] {
			rds = last.rds
		}
		if res == nil && !again[bulkResources] {
			res = last.res
		}
	}
	ns := l.ensureNamespace(nodes)
	sums := [3]uint64{slots[0].sum, slots[1].sum, slots[2].sum}
	if !fresh && sums == last.sums && ns == last.namespace {
		v := *last.view
		v.FetchedAt, v.Unchanged = start, true
		return &v, nil
	}
	next := &bulkLast{nodes: nodes, rds: rds, res: res, sums: sums, namespace: ns, decodedAt: start}
	if !fresh {
		next.decodedAt = last.decodedAt
	}
	next.view = buildView(start, ns, nodes, rds, res)
	l.last = next
	return next.view, nil
}

// bulkRound sends the marked bulk requests concurrently, each with its slot.
func (l *Linstor) bulkRound(ctx context.Context, slots *[3]bulkSlot, which [3]bool) error {
	var (
		wg   sync.WaitGroup
		errs [3]error
	)
	calls := [3]func(context.Context) error{
		bulkNodes: func(ctx context.Context) error { _, err := l.Client.Nodes.GetAll(ctx); return err },
		bulkRDs: func(ctx context.Context) error {
			_, err := l.Client.ResourceDefinitions.GetAll(ctx, lapi.RDGetAllRequest{WithVolumeDefinitions: true})
			return err
		},
		bulkResources: func(ctx context.Context) error { _, err := l.Client.Resources.GetResourceView(ctx); return err },
	}
	for i := range calls {
		if !which[i] {
			continue
		}
		wg.Add(1)
		go func(i int) {
			defer wg.Done()
			errs[i] = calls[i](withBulkSlot(ctx, &slots[i]))
			if errs[i] == nil && !slots[i].seen {
				errs[i] = errors.New("the LINSTOR client does not use the bulk transport")
			}
		}(i)
	}
	wg.Wait()
	for i, what := range []string{"nodes", "resource definitions", "resources"} {
		if errs[i] != nil {
			return fmt.Errorf("linstor: list %s: %w", what, errs[i])
		}
	}
	return nil
}

// SaveState implements StateStore on the volume definition.
func (l *Linstor) SaveState(ctx context.Context, ref VolumeRef, pvJSON string) error {
	return l.Client.ResourceDefinitions.ModifyVolumeDefinition(ctx, ref.RD, ref.Volume, lapi.VolumeDefinitionModify{
		GenericPropsModify: lapi.GenericPropsModify{OverrideProps: lapi.OverrideProps{SavedPVKey: pvJSON}},
	})
}

// LoadState implements StateStore: the saved-state property as LINSTOR has
// it now, read with a request of its own ("" when not set).
func (l *Linstor) LoadState(ctx context.Context, ref VolumeRef, legacy bool) (string, error) {
	if legacy {
		rd, err := l.Client.ResourceDefinitions.Get(ctx, ref.RD)
		if err != nil {
			return "", err
		}
		return rd.Props[SavedPVKey], nil
	}
	// The list rather than the single volume definition: every LINSTOR
	// version (and golinstor's fakelinstor) serves it.
	vds, err := l.Client.ResourceDefinitions.GetVolumeDefinitions(ctx, ref.RD)
	if err != nil {
		return "", err
	}
	for _, vd := range vds {
		if vd.VolumeNumber != nil && int(*vd.VolumeNumber) == ref.Volume {
			return vd.Props[SavedPVKey], nil
		}
	}
	return "", fmt.Errorf("resource definition %s has no volume definition %d", ref.RD, ref.Volume)
}

// ClearState implements StateStore, wherever the state was found.
func (l *Linstor) ClearState(ctx context.Context, s *SavedState) error {
	del := lapi.GenericPropsModify{DeleteProps: lapi.DeleteProps{SavedPVKey}}
	if s.Legacy {
		return l.Client.ResourceDefinitions.Modify(ctx, s.Ref.RD, del)
	}
	return l.Client.ResourceDefinitions.ModifyVolumeDefinition(ctx, s.Ref.RD, s.Ref.Volume, lapi.VolumeDefinitionModify{GenericPropsModify: del})
}
