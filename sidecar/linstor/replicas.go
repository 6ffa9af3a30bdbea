package linstor

import (
	"context"

	"github.com/piraeusdatastore/linstor-affinity-sidecar/sidecar/decide"
)

// Replicas implements controller.ReplicaConfirmer (the gate's replica
// confirmation) with LINSTOR's per-resource-definition
// resource list, a different request from the bulk resource view.
func (l *Linstor) Replicas(ctx context.Context, rd string) ([]decide.Resource, error) {
	res, err := l.Client.Resources.GetAll(ctx, rd)
	if err != nil {
		return nil, err
	}
	out := make([]decide.Resource, 0, len(res))
	for _, r := range res {
		out = append(out, decide.Resource{Name: r.Name, Node: r.NodeName, Flags: r.Flags})
	}
	return out, nil
}
