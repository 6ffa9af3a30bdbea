package controller

import (
	"context"
	"fmt"
	"slices"
	"sort"
	"time"

	"github.com/piraeusdatastore/linstor-affinity-sidecar/sidecar/decide"
	"github.com/piraeusdatastore/linstor-affinity-sidecar/sidecar/linstor"
	corev1 "k8s.io/api/core/v1"
	storagev1 "k8s.io/api/storage/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/klog/v2"
)

// Demand repairs what the blocked pods that are due wait for: it reads
// LINSTOR for exactly their volumes (VolumeSource), decides for their PVs
// with the same decision as a full cycle, passes the actions through the
// same checks and brakes, and carries them out. It waits for the first full
// read, whose nodes it uses while they are at most one period old.
func (r *Reconciler) Demand(ctx context.Context) error {
	blocked := r.opts.Blocked
	if blocked == nil || r.opts.Volumes == nil || r.last == nil {
		return nil
	}
	start := r.now()
	due := blocked.Due(start)
	if len(due) == 0 {
		return nil
	}
	pvs, rds, err := r.pvsOf(due)
	if err != nil || len(pvs) == 0 {
		return err
	}
	if !r.driverReady(ctx) {
		return nil
	}
	var nodes map[string]decide.Segment
	if start.Sub(r.last.FetchedAt) < r.period {
		nodes = r.last.Nodes
	}
	view, err := r.readVolumes(ctx, rds, nodes)
	if err != nil {
		return err
	}
	// Pods blocked while LINSTOR answered (recreated together with the
	// first, a moment later) join this batch: their volumes are read now,
	// not after this batch's repairs, each of which waits for several
	// LINSTOR answers. Once only, so a steady trickle of blocked pods cannot
	// hold the repairs back. (A read slower than Blocked.Recheck makes its
	// own pods due again too: they are in the batch already.)
	if more := newPods(blocked.Due(r.now()), due); len(more) > 0 {
		due = append(due, more...)
		read := make(map[string]bool, len(rds))
		for _, rd := range rds {
			read[rd] = true
		}
		if pvs, rds, err = r.pvsOf(due); err != nil {
			return err
		}
		var unread []string
		for _, rd := range rds {
			if !read[rd] {
				unread = append(unread, rd)
			}
		}
		if len(unread) > 0 {
			part, err := r.readVolumes(ctx, unread, view.Nodes)
			if err != nil {
				return err
			}
			view = view.WithFresher(part)
		}
	}
	r.last = r.last.WithFresher(view)
	decisions, _ := decide.DecideAll(pvs, func(pv *corev1.PersistentVolume) *storagev1.StorageClass {
		return StorageClassFor(r.scs, pv)
	}, view, r.opts.Config, start)
	var actions []decide.Action
	wanted := make(map[string]bool, len(pvs))
	for _, pv := range pvs {
		wanted[pv.Name] = true
	}
	for _, a := range decisions {
		// Saved state of other PVs on these volumes is the full cycle's:
		// this read knows nothing of the PVs it was not asked about.
		if !wanted[a.Name] {
			continue
		}
		a = r.gate.Fresh(a, start)
		r.noteWarning(a)
		if a.Kind != decide.KindNone {
			actions = append(actions, a)
		} else {
			klog.V(2).InfoS("Blocked pod's PV not repaired", "pv", a.Name, "reason", a.Reason, "detail", a.Message)
		}
	}
	klog.V(2).InfoS("Read LINSTOR for blocked pods", "pods", len(due), "pvs", len(pvs), "repairs", len(actions),
		"duration", r.now().Sub(start).Round(time.Millisecond))
	actions = r.brake(actions, r.total, false)
	if failed := r.execute(ctx, actions); failed > 0 {
		return fmt.Errorf("%d of %d repairs for blocked pods failed", failed, len(actions))
	}
	return nil
}

// newPods is more without the pods in have.
func newPods(more, have []BlockedPod) []BlockedPod {
	seen := make(map[string]bool, len(have))
	for _, p := range have {
		seen[p.Key] = true
	}
	return slices.DeleteFunc(more, func(p BlockedPod) bool { return seen[p.Key] })
}

// readVolumes reads LINSTOR for the named resource definitions only,
// within one --timeout per batch of requests (volumeBatch names): many
// blocked volumes on a slow LINSTOR must not time out together.
func (r *Reconciler) readVolumes(ctx context.Context, rds []string, nodes map[string]decide.Segment) (*decide.View, error) {
	batches := (len(rds) + linstor.VolumeBatch - 1) / linstor.VolumeBatch
	fctx, cancel := context.WithTimeout(ctx, r.opts.Timeout*time.Duration(max(batches, 1)))
	defer cancel()
	r.metrics.DemandReads.Inc()
	return r.opts.Volumes.FetchVolumes(fctx, rds, nodes)
}

// nextDemand is when a blocked pod still waiting is due for another read
// (zero: none waits).
func (r *Reconciler) nextDemand() time.Time {
	if r.opts.Blocked == nil {
		return time.Time{}
	}
	r.metrics.BlockedPods.Set(float64(r.opts.Blocked.Len()))
	if r.opts.Volumes == nil || r.last == nil {
		return time.Time{} // Demand waits for the first full read
	}
	return r.opts.Blocked.NextDue(r.now())
}

// pvsOf finds the driver's PVs bound to the claims of the blocked pods (by
// their claimRef, from the PV cache: no PVC reads) and the resource
// definitions they are on, sorted.
func (r *Reconciler) pvsOf(pods []BlockedPod) ([]*corev1.PersistentVolume, []string, error) {
	claims := map[types.NamespacedName]bool{}
	for _, p := range pods {
		for _, c := range p.Claims {
			claims[c] = true
		}
	}
	all, err := r.pvs.List(labels.Everything())
	if err != nil {
		return nil, nil, fmt.Errorf("list PVs from cache: %w", err)
	}
	var pvs []*corev1.PersistentVolume
	seenRD := map[string]bool{}
	var rds []string
	for _, pv := range all {
		ref := pv.Spec.ClaimRef
		if ref == nil || pv.Spec.CSI == nil || pv.Spec.CSI.Driver != r.opts.DriverName ||
			!claims[types.NamespacedName{Namespace: ref.Namespace, Name: ref.Name}] {
			continue
		}
		pvs = append(pvs, pv)
		if h, err := decide.ParseVolumeHandle(pv.Spec.CSI.VolumeHandle); err == nil && !seenRD[h.RD] {
			seenRD[h.RD] = true
			rds = append(rds, h.RD)
		}
	}
	sort.Strings(rds)
	return pvs, rds, nil
}

// waitingOn returns the blocked pods waiting on the PV of a, as its repair
// starts (see Blocked.Waiting).
func (r *Reconciler) waitingOn(a decide.Action) []BlockedPod {
	pv := a.PV
	if pv == nil && a.Saved != nil {
		pv = a.Saved.PV
	}
	if r.opts.Blocked == nil || pv == nil || pv.Spec.ClaimRef == nil {
		return nil
	}
	return r.opts.Blocked.Waiting(types.NamespacedName{Namespace: pv.Spec.ClaimRef.Namespace, Name: pv.Spec.ClaimRef.Name})
}

// noteRepaired observes, for every blocked pod that waited on the repaired
// PV when its repair started, the time from the pod becoming unschedulable
// to the repair.
func (r *Reconciler) noteRepaired(pv *corev1.PersistentVolume, waiting []BlockedPod) {
	if r.opts.Blocked == nil || pv == nil || len(waiting) == 0 {
		return
	}
	now := r.now()
	for _, since := range r.opts.Blocked.Repaired(pv.Name, waiting) {
		r.metrics.BlockedPodRepair.Observe(now.Sub(since).Seconds())
	}
}

// VolumeSource reads LINSTOR for a few resource definitions only, for the
// volumes a blocked pod waits for: a view that holds just those resource
// definitions, read afresh.
type VolumeSource interface {
	// FetchVolumes reads the named resource definitions, their volume
	// definitions and resources. nodes are the node segments of the last
	// full read, used while every replica is on a node they know; nil or a
	// replica on another node makes it read the nodes too.
	FetchVolumes(ctx context.Context, rds []string, nodes map[string]decide.Segment) (*decide.View, error)
}
