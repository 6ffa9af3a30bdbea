package linstor

import (
	"context"
	"errors"
	"fmt"
	"hash/maphash"
	"io"
	"sync"
	"time"

	lapi "github.com/LINBIT/golinstor/client"
	"github.com/piraeusdatastore/linstor-affinity-sidecar/sidecar/decide"
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

	// bulk, when set (NewBulkLinstor), lets Fetch read the bulk lists lean
	// (see fetchBulk); last is what the previous Fetch built.
	bulk     *BulkTransport
	seed     maphash.Seed
	fetchMu  sync.Mutex
	last     *bulkLast
	maxReuse time.Duration
}

// bulkLast is what the last bulk Fetch built: the view, the digests of the
// decision-relevant content it was built from, and since when that content
// has not changed.
type bulkLast struct {
	digests   [3]uint64
	namespace string
	view      *decide.View
	since     time.Time
}

// DefaultMaxReuse bounds how long Fetch keeps reporting a view unchanged:
// past it, the view is reported changed once, so the loop decides afresh.
const DefaultMaxReuse = 5 * time.Minute

// NewLinstor wraps a golinstor client. An empty namespace is detected on the
// first Fetch, as the upstream controller does, and then kept: a namespace that
// changed between cycles would make every volume look moved.
func NewLinstor(c *lapi.Client, namespace string) *Linstor {
	return &Linstor{Client: c, namespace: namespace}
}

// NewBulkLinstor is NewLinstor for a client made by NewLinstorClient: its
// Fetch sends the same three requests every time and decodes each answer as
// it streams in, keeping only the fields decisions need, and tells whether
// those changed since the last Fetch (see View.Unchanged). maxReuse bounds
// how long a view is reported unchanged in a row (0: DefaultMaxReuse).
func NewBulkLinstor(c *lapi.Client, t *BulkTransport, namespace string, maxReuse time.Duration) *Linstor {
	if maxReuse <= 0 {
		maxReuse = DefaultMaxReuse
	}
	return &Linstor{Client: c, namespace: namespace, bulk: t, seed: maphash.MakeSeed(), maxReuse: maxReuse}
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
func (l *Linstor) Fetch(ctx context.Context) (*decide.View, error) {
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
func BuildView(fetchedAt time.Time, namespace string, nodes []lapi.Node, rds []lapi.ResourceDefinitionWithVolumeDefinition, res []lapi.ResourceWithVolumes) *decide.View {
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

func buildView(fetchedAt time.Time, namespace string, nodes []lapi.Node, rds []leanRD, res []leanResource) *decide.View {
	v := &decide.View{Nodes: make(map[string]decide.Segment, len(nodes)), RDs: make(map[string]*decide.RDView, len(rds)), FetchedAt: fetchedAt}
	for _, n := range nodes {
		v.Nodes[n.Name] = decide.NodeSegments(n.Props, namespace)
	}
	// One allocation for every RDView and one for every Resource: at tens of
	// thousands of volumes this is most of a rebuild's cost otherwise.
	views := make([]decide.RDView, len(rds))
	perRD := make(map[string]int, len(rds))
	for i, rd := range rds {
		r := &views[i]
		*r = decide.RDView{
			Name:        rd.Name,
			Skip:        rd.Props[decide.SkipRDKey],
			LegacySaved: rd.Props[decide.SavedPVKey],
			Volumes:     make(map[int]string, len(rd.VolumeDefinitions)),
		}
		for _, vd := range rd.VolumeDefinitions {
			if vd.VolumeNumber == nil {
				continue
			}
			r.Volumes[int(*vd.VolumeNumber)] = vd.Props[decide.SavedPVKey]
		}
		v.RDs[rd.Name] = r
	}
	for _, r := range res {
		if v.RDs[r.Name] != nil {
			perRD[r.Name]++
		}
	}
	backing := make([]decide.Resource, 0, len(res))
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
		rd.Resources = append(rd.Resources, decide.Resource{Name: r.Name, Node: r.NodeName, Flags: r.Flags})
	}
	return v
}

// bulk request slots, in the order of bulkLast.digests.
const (
	bulkNodes = iota
	bulkRDs
	bulkResources
)

// bulkLists is what one bulk round read.
type bulkLists struct {
	nodes   []lapi.Node
	rds     []leanRD
	res     []leanResource
	digests [3]uint64
}

// fetchBulk is Fetch on a BulkTransport: exactly one request per list, each
// answer decoded while it streams in, one element at a time, into the
// fields decisions read, which are summed into a digest per list. A real
// LINSTOR's answers differ in almost every request (allocated sizes, DRBD
// states, timestamps), so bytes say nothing; the digests say whether
// anything a decision reads changed. When none did, the last view is
// returned, marked Unchanged; else a new one is built.
func (l *Linstor) fetchBulk(ctx context.Context, start time.Time) (*decide.View, error) {
	l.fetchMu.Lock()
	defer l.fetchMu.Unlock()
	var lists bulkLists
	if err := l.bulkRound(ctx, &lists); err != nil {
		return nil, err
	}
	ns := l.ensureNamespace(lists.nodes)
	if last := l.last; last != nil && lists.digests == last.digests && ns == last.namespace {
		v := *last.view
		v.FetchedAt = start
		v.Unchanged = start.Sub(last.since) < l.maxReuse
		if !v.Unchanged {
			last.since = start
		}
		return &v, nil
	}
	view := buildView(start, ns, lists.nodes, lists.rds, lists.res)
	l.last = &bulkLast{digests: lists.digests, namespace: ns, view: view, since: start}
	return view, nil
}

// nodePropPrefix is the prefix of the node properties decisions read: those
// under the property namespace, or under Aux/ (where both namespaces LINSTOR
// CSI uses live) until it is detected.
func (l *Linstor) nodePropPrefix() string {
	if ns := l.Namespace(); ns != "" {
		return ns + "/"
	}
	return NamespaceLegacy + "/"
}

// bulkRound sends the three bulk requests concurrently, each decoded by its
// slot into lists.
func (l *Linstor) bulkRound(ctx context.Context, lists *bulkLists) error {
	var (
		wg    sync.WaitGroup
		errs  [3]error
		slots [3]bulkSlot
	)
	prefix := l.nodePropPrefix()
	// Each decode starts its digest afresh: an answer golinstor asks for
	// again (another controller) is summed alone.
	slots[bulkNodes].decode = func(r io.Reader) (err error) {
		d := newDigest(l.seed)
		lists.nodes, err = decodeNodes(r, prefix, d)
		lists.digests[bulkNodes] = d.sum
		return err
	}
	slots[bulkRDs].decode = func(r io.Reader) (err error) {
		d := newDigest(l.seed)
		lists.rds, err = decodeRDs(r, d)
		lists.digests[bulkRDs] = d.sum
		return err
	}
	slots[bulkResources].decode = func(r io.Reader) (err error) {
		d := newDigest(l.seed)
		lists.res, err = decodeResources(r, d)
		lists.digests[bulkResources] = d.sum
		return err
	}
	calls := [3]func(context.Context) error{
		bulkNodes: func(ctx context.Context) error { _, err := l.Client.Nodes.GetAll(ctx); return err },
		bulkRDs: func(ctx context.Context) error {
			_, err := l.Client.ResourceDefinitions.GetAll(ctx, lapi.RDGetAllRequest{WithVolumeDefinitions: true})
			return err
		},
		bulkResources: func(ctx context.Context) error { _, err := l.Client.Resources.GetResourceView(ctx); return err },
	}
	for i := range calls {
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

// SaveState implements repair.StateStore on the volume definition.
func (l *Linstor) SaveState(ctx context.Context, ref decide.VolumeRef, pvJSON string) error {
	return l.Client.ResourceDefinitions.ModifyVolumeDefinition(ctx, ref.RD, ref.Volume, lapi.VolumeDefinitionModify{
		GenericPropsModify: lapi.GenericPropsModify{OverrideProps: lapi.OverrideProps{decide.SavedPVKey: pvJSON}},
	})
}

// LoadState implements repair.StateStore: the saved-state property as LINSTOR has
// it now, read with a request of its own ("" when not set).
func (l *Linstor) LoadState(ctx context.Context, ref decide.VolumeRef, legacy bool) (string, error) {
	if legacy {
		rd, err := l.Client.ResourceDefinitions.Get(ctx, ref.RD)
		if err != nil {
			return "", err
		}
		return rd.Props[decide.SavedPVKey], nil
	}
	// The list rather than the single volume definition: every LINSTOR
	// version (and golinstor's fakelinstor) serves it.
	vds, err := l.Client.ResourceDefinitions.GetVolumeDefinitions(ctx, ref.RD)
	if err != nil {
		return "", err
	}
	for _, vd := range vds {
		if vd.VolumeNumber != nil && int(*vd.VolumeNumber) == ref.Volume {
			return vd.Props[decide.SavedPVKey], nil
		}
	}
	return "", fmt.Errorf("resource definition %s has no volume definition %d", ref.RD, ref.Volume)
}

// ClearState implements repair.StateStore, wherever the state was found.
func (l *Linstor) ClearState(ctx context.Context, s *decide.SavedState) error {
	del := lapi.GenericPropsModify{DeleteProps: lapi.DeleteProps{decide.SavedPVKey}}
	if s.Legacy {
		return l.Client.ResourceDefinitions.Modify(ctx, s.Ref.RD, del)
	}
	return l.Client.ResourceDefinitions.ModifyVolumeDefinition(ctx, s.Ref.RD, s.Ref.Volume, lapi.VolumeDefinitionModify{GenericPropsModify: del})
}
