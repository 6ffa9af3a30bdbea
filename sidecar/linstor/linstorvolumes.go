package linstor

import (
	"context"
	"fmt"
	"time"

	lapi "github.com/LINBIT/golinstor/client"
	"github.com/piraeusdatastore/linstor-affinity-sidecar/sidecar/decide"
)

// VolumeBatch bounds the names in one filtered request, so its URL stays
// short (a resource definition name is up to 48 characters).
const VolumeBatch = 50

// FetchVolumes implements controller.VolumeSource: per batch of names, one filtered
// list of resource definitions with their volume definitions and one
// filtered resource view; the nodes only when needed.
func (l *Linstor) FetchVolumes(ctx context.Context, rds []string, nodes map[string]decide.Segment) (*decide.View, error) {
	start := time.Now()
	var (
		allRDs []lapi.ResourceDefinitionWithVolumeDefinition
		allRes []lapi.ResourceWithVolumes
	)
	for i := 0; i < len(rds); i += VolumeBatch {
		names := rds[i:min(i+VolumeBatch, len(rds))]
		got, err := l.Client.ResourceDefinitions.GetAll(ctx, lapi.RDGetAllRequest{ResourceDefinitions: names, WithVolumeDefinitions: true})
		if err != nil {
			return nil, fmt.Errorf("linstor: read resource definitions %v: %w", names, err)
		}
		allRDs = append(allRDs, keepNamed(got, names)...)
		res, err := l.Client.Resources.GetResourceView(ctx, &lapi.ListOpts{Resource: names})
		if err != nil {
			return nil, fmt.Errorf("linstor: read the resources of %v: %w", names, err)
		}
		allRes = append(allRes, res...)
	}
	v := BuildView(start, l.Namespace(), nil, allRDs, allRes)
	v.Nodes = nodes
	if nodes == nil || !knowsEveryNode(v, nodes) {
		all, err := l.Client.Nodes.GetAll(ctx)
		if err != nil {
			return nil, fmt.Errorf("linstor: list nodes: %w", err)
		}
		ns := l.ensureNamespace(all)
		v.Nodes = make(map[string]decide.Segment, len(all))
		for _, n := range all {
			v.Nodes[n.Name] = decide.NodeSegments(n.Props, ns)
		}
	}
	return v, nil
}

// keepNamed drops resource definitions the filter did not ask for: a
// LINSTOR that ignores the filter must not put others into the view.
func keepNamed(rds []lapi.ResourceDefinitionWithVolumeDefinition, names []string) []lapi.ResourceDefinitionWithVolumeDefinition {
	want := make(map[string]bool, len(names))
	for _, n := range names {
		want[n] = true
	}
	out := rds[:0]
	for _, rd := range rds {
		if want[rd.Name] {
			out = append(out, rd)
		}
	}
	return out
}

// knowsEveryNode reports whether every resource of v is on a node in nodes.
func knowsEveryNode(v *decide.View, nodes map[string]decide.Segment) bool {
	for _, rd := range v.RDs {
		for _, r := range rd.Resources {
			if _, ok := nodes[r.Node]; !ok {
				return false
			}
		}
	}
	return true
}
