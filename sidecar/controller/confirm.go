package controller

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sort"
	"strings"

	"github.com/piraeusdatastore/linstor-affinity-sidecar/sidecar/decide"
)

// ReplicaConfirmer re-reads the replicas of one resource definition with a
// request of its own. A LINSTOR answer can come back partial (a resource
// view missing entries): a volume with two replicas then looks like it has
// one, and its PV would lose a node it may still be used from. Before a PV
// is rewritten, the gate checks the replicas the decision saw in the bulk
// view against this second, per-volume read (Options.Replicas; nil: no
// check).
type ReplicaConfirmer interface {
	Replicas(ctx context.Context, rd string) ([]decide.Resource, error)
}

// ErrReplicasUnconfirmed marks a repair not made because LINSTOR's two
// answers about a volume's replicas disagreed.
var ErrReplicasUnconfirmed = errors.New("LINSTOR's answers about the replicas disagree")

// confirmReplicas is the gate's step 4: it checks a replace's decision
// against a fresh per-volume read of its replicas; on disagreement the PV is
// left as it is and the next cycle decides again.
func (g *Gate) confirmReplicas(ctx context.Context, a decide.Action) error {
	if g.replicas == nil || a.Topology == nil || a.Ref.RD == "" {
		return nil
	}
	cctx, cancel := context.WithTimeout(ctx, g.timeout)
	defer cancel()
	fresh, err := g.replicas.Replicas(cctx, a.Ref.RD)
	if err != nil {
		return fmt.Errorf("pv %s: confirm the replicas of resource definition %s: %w", a.Name, a.Ref.RD, err)
	}
	var nodes []string
	for _, r := range fresh {
		if r.Diskful() && !slices.Contains(nodes, r.Node) {
			nodes = append(nodes, r.Node)
		}
	}
	sort.Strings(nodes)
	decided := slices.Clone(a.Topology.Diskful)
	sort.Strings(decided)
	if !slices.Equal(nodes, decided) {
		return fmt.Errorf("pv %s: %w: the resource view shows diskful replicas on [%s], resource definition %s on [%s]; not repairing until they agree",
			a.Name, ErrReplicasUnconfirmed, strings.Join(decided, ", "), a.Ref.RD, strings.Join(nodes, ", "))
	}
	return nil
}
