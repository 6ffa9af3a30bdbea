package testbed

import (
	"context"
	"fmt"
	"sync"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// ProvisionerFinalizer is what the external-provisioner puts on the PVs of
// its driver that it will delete (HonorPVReclaimPolicy); it adds it to a
// bound PV that lacks it, so PVs created here carry it from the start.
const ProvisionerFinalizer = "external-provisioner.volume.kubernetes.io/finalizer"

// CreateStaticVolumes is CreateStaticVolume for many volumes at once: it
// creates every PV (with ProvisionerFinalizer when of DriverName) and its
// claim, parallel calls at a time, then waits until every claim is Bound
// to its PV, looking with one List per poll. Hundreds of PVs are ready in
// seconds when kube-controller-manager may write fast enough (see
// Options.ControllerManagerArgs, --kube-api-qps).
func (b *Bed) CreateStaticVolumes(ctx context.Context, parallel int, vols []StaticVolume) error {
	parallel = max(parallel, 1)
	sem := make(chan struct{}, parallel)
	var (
		wg       sync.WaitGroup
		mu       sync.Mutex
		firstErr error
	)
	for _, v := range vols {
		sem <- struct{}{}
		wg.Add(1)
		go func(v StaticVolume) {
			defer func() { <-sem; wg.Done() }()
			if err := b.createStatic(ctx, v, true); err != nil {
				mu.Lock()
				if firstErr == nil {
					firstErr = err
				}
				mu.Unlock()
			}
		}(v)
	}
	wg.Wait()
	if firstErr != nil {
		return firstErr
	}
	want := make(map[string]string, len(vols))
	for _, v := range vols {
		want[v.Claim] = v.PV
	}
	return Poll(ctx, fmt.Sprintf("%d claims Bound", len(vols)), func(ctx context.Context) (bool, string) {
		list, err := b.Kube.CoreV1().PersistentVolumeClaims(Namespace).List(ctx, metav1.ListOptions{})
		if err != nil {
			return false, err.Error()
		}
		bound := 0
		for _, c := range list.Items {
			if pv, ok := want[c.Name]; ok && c.Status.Phase == corev1.ClaimBound && c.Spec.VolumeName == pv {
				bound++
			}
		}
		return bound == len(want), fmt.Sprintf("%d of %d Bound", bound, len(want))
	})
}
