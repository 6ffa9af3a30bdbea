package sidecar

import (
	"context"
	"fmt"
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
}

// NewLinstor wraps a golinstor client. An empty namespace is detected on the
// first Fetch, as the upstream controller does, and then kept: a namespace that
// changed between cycles would make every volume look moved.
func NewLinstor(c *lapi.Client, namespace string) *Linstor {
	return &Linstor{Client: c, namespace: namespace}
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
	v := &View{Nodes: make(map[string]Segment, len(nodes)), RDs: make(map[string]*RDView, len(rds)), FetchedAt: fetchedAt}
	for _, n := range nodes {
		v.Nodes[n.Name] = NodeSegments(n.Props, namespace)
	}
	for _, rd := range rds {
		r := &RDView{
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
		rd := v.RDs[r.Name]
		if rd == nil {
			continue
		}
		rd.Resources = append(rd.Resources, Resource{Name: r.Name, Node: r.NodeName, Flags: r.Flags})
	}
	return v
}

// SaveState implements StateStore on the volume definition.
func (l *Linstor) SaveState(ctx context.Context, ref VolumeRef, pvJSON string) error {
	return l.Client.ResourceDefinitions.ModifyVolumeDefinition(ctx, ref.RD, ref.Volume, lapi.VolumeDefinitionModify{
		GenericPropsModify: lapi.GenericPropsModify{OverrideProps: lapi.OverrideProps{SavedPVKey: pvJSON}},
	})
}

// ClearState implements StateStore, wherever the state was found.
func (l *Linstor) ClearState(ctx context.Context, s *SavedState) error {
	del := lapi.GenericPropsModify{DeleteProps: lapi.DeleteProps{SavedPVKey}}
	if s.Legacy {
		return l.Client.ResourceDefinitions.Modify(ctx, s.Ref.RD, del)
	}
	return l.Client.ResourceDefinitions.ModifyVolumeDefinition(ctx, s.Ref.RD, s.Ref.Volume, lapi.VolumeDefinitionModify{GenericPropsModify: del})
}
