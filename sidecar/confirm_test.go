package sidecar

import (
	"context"
	"errors"
	"testing"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// TestPartialResourceViewRewritesNothing: the bulk resource view comes back
// missing one of a volume's two replicas, so the decision wants to narrow
// the PV to one node. The per-volume read before the repair shows both
// replicas: the PV is left untouched and the repair is reported failed, to
// be decided again from the next view.
func TestPartialResourceViewRewritesNothing(t *testing.T) {
	b := newExBed(t)
	pvs := b.addVolume("vol-p", 1, []string{"n2", "n3"}, []string{"n2", "n3"})
	r, _ := b.reconciler(nil)
	v, err := b.linstor.Fetch(context.Background())
	b.must(err)
	rd := v.RDs["vol-p"]
	if len(rd.Resources) != 2 {
		t.Fatalf("view has %d resources of vol-p, want 2", len(rd.Resources))
	}
	rd.Resources = rd.Resources[:1] // what a partial answer leaves
	actions, err := planned(r, v)
	b.must(err)
	if len(actions) != 1 || actions[0].Kind != KindReplace {
		t.Fatalf("partial view decided %+v, want one replace (the case the check is for)", actions)
	}
	err = r.attempt(context.Background(), actions[0])
	if !errors.Is(err, ErrReplicasUnconfirmed) {
		t.Fatalf("replace on a partial view: err %v, want ErrReplicasUnconfirmed", err)
	}
	pv, err := b.kube.CoreV1().PersistentVolumes().Get(context.Background(), pvs[0].Name, metav1.GetOptions{})
	b.must(err)
	if pv.UID != pvs[0].UID || pv.ResourceVersion != pvs[0].ResourceVersion {
		t.Errorf("PV was written on a partial view (UID %s, resourceVersion %s)", pv.UID, pv.ResourceVersion)
	}
	if s := b.savedStates()[pv.Name]; s != nil {
		t.Errorf("saved state written on a partial view: %s", s.Location())
	}
	// The complete view agrees with LINSTOR: nothing to do.
	b.converge(1)
	b.assertHealed(pvs[0], []string{"n2", "n3"})
}
