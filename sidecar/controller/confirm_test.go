package controller

import (
	"context"
	"errors"
	"testing"

	"github.com/piraeusdatastore/linstor-affinity-sidecar/sidecar/decide"
	"github.com/piraeusdatastore/linstor-affinity-sidecar/sidecar/internal/fakebed"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// TestPartialResourceViewRewritesNothing: the bulk resource view comes back
// missing one of a volume's two replicas, so the decision wants to narrow
// the PV to one node. The per-volume read before the repair shows both
// replicas: the PV is left untouched and the repair is reported failed, to
// be decided again from the next view.
func TestPartialResourceViewRewritesNothing(t *testing.T) {
	b := fakebed.New(t)
	pvs := b.AddVolume("vol-p", 1, []string{"n2", "n3"}, []string{"n2", "n3"})
	r, _ := newReconciler(b, nil)
	v, err := b.Linstor.Fetch(context.Background())
	b.Must(err)
	rd := v.RDs["vol-p"]
	if len(rd.Resources) != 2 {
		t.Fatalf("view has %d resources of vol-p, want 2", len(rd.Resources))
	}
	rd.Resources = rd.Resources[:1] // what a partial answer leaves
	actions, err := planned(r, v)
	b.Must(err)
	if len(actions) != 1 || actions[0].Kind != decide.KindReplace {
		t.Fatalf("partial view decided %+v, want one replace (the case the check is for)", actions)
	}
	err = r.attempt(context.Background(), actions[0])
	if !errors.Is(err, ErrReplicasUnconfirmed) {
		t.Fatalf("replace on a partial view: err %v, want ErrReplicasUnconfirmed", err)
	}
	pv, err := b.Kube.CoreV1().PersistentVolumes().Get(context.Background(), pvs[0].Name, metav1.GetOptions{})
	b.Must(err)
	if pv.UID != pvs[0].UID || pv.ResourceVersion != pvs[0].ResourceVersion {
		t.Errorf("PV was written on a partial view (UID %s, resourceVersion %s)", pv.UID, pv.ResourceVersion)
	}
	if s := b.SavedStates()[pv.Name]; s != nil {
		t.Errorf("saved state written on a partial view: %s", s.Location())
	}
	// The complete view agrees with LINSTOR: nothing to do.
	converge(b, 1)
	b.AssertHealed(pvs[0], []string{"n2", "n3"})
}
