package repair

import (
	"context"
	"encoding/json"
	"fmt"
	"sync"
	"time"

	"github.com/piraeusdatastore/linstor-affinity-sidecar/sidecar/decide"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/klog/v2"
)

// RepairMethod chooses how a drifted PV is rewritten.
type RepairMethod string

const (
	// MethodAuto repairs in place where the API server allows it (checked,
	// not guessed from the version), by recreate elsewhere.
	MethodAuto RepairMethod = "auto"
	// MethodInPlace only ever updates spec.nodeAffinity of the existing PV
	// (Kubernetes 1.35+ with the MutablePVNodeAffinity feature gate).
	MethodInPlace RepairMethod = "in-place"
	// MethodRecreate always uses the crash-safe recreate.
	MethodRecreate RepairMethod = "recreate"
)

// ParseRepairMethod reads the --repair-method flag.
func ParseRepairMethod(s string) (RepairMethod, error) {
	switch m := RepairMethod(s); m {
	case MethodAuto, MethodInPlace, MethodRecreate:
		return m, nil
	}
	return "", fmt.Errorf("repair method %q: want auto, in-place or recreate", s)
}

// inPlaceRecheck is how long an answer about in-place support is trusted.
const inPlaceRecheck = 10 * time.Minute

// inPlaceSupport remembers whether the API server accepts node affinity
// changes of existing PVs.
type inPlaceSupport struct {
	probing   sync.Mutex
	mu        sync.Mutex
	known     bool
	supported bool
	checkedAt time.Time
}

func (s *inPlaceSupport) get(now time.Time) (supported, known bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if !s.known || now.Sub(s.checkedAt) > inPlaceRecheck {
		return false, false
	}
	return s.supported, true
}

func (s *inPlaceSupport) set(supported bool, now time.Time) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if !s.known || s.supported != supported {
		klog.InfoS("In-place PV affinity updates", "supported", supported)
	}
	s.known, s.supported, s.checkedAt = true, supported, now
}

// affinityPatch is a merge patch that sets the PV's node affinity, made
// conditional on the UID and resourceVersion the decision was made on.
func affinityPatch(pv *corev1.PersistentVolume, affinity *corev1.VolumeNodeAffinity) ([]byte, error) {
	var value any
	if affinity != nil {
		value = affinity
	}
	return json.Marshal(map[string]any{
		"metadata": map[string]any{"uid": pv.UID, "resourceVersion": pv.ResourceVersion},
		"spec":     map[string]any{"nodeAffinity": value},
	})
}

// probeInPlace asks the API server, by a server-side dry run of the very
// change about to be made, whether it accepts it. Only a validation error
// (the field is immutable) means "no"; other errors say nothing.
func (e *Executor) probeInPlace(ctx context.Context, pv *corev1.PersistentVolume, affinity *corev1.VolumeNodeAffinity) (bool, error) {
	body, err := affinityPatch(pv, affinity)
	if err != nil {
		return false, err
	}
	cctx, cancel := e.call(ctx)
	defer cancel()
	_, err = e.Kube.CoreV1().PersistentVolumes().Patch(cctx, pv.Name, types.MergePatchType, body, metav1.PatchOptions{DryRun: []string{metav1.DryRunAll}})
	switch {
	case err == nil:
		return true, nil
	case apierrors.IsInvalid(err):
		return false, nil
	}
	return false, err
}

// useInPlace decides the method for one repair.
func (e *Executor) useInPlace(ctx context.Context, a decide.Action) (bool, error) {
	switch e.Method {
	case MethodRecreate, "":
		return false, nil
	case MethodInPlace:
		return true, nil
	}
	now := time.Now()
	if supported, known := e.inPlace.get(now); known {
		return supported, nil
	}
	// One probe at a time: concurrent workers wait for its answer.
	e.inPlace.probing.Lock()
	defer e.inPlace.probing.Unlock()
	if supported, known := e.inPlace.get(now); known {
		return supported, nil
	}
	supported, err := e.probeInPlace(ctx, a.PV, a.Affinity)
	if err != nil {
		return false, fmt.Errorf("pv %s: check whether node affinity can be updated in place: %w", a.PV.Name, err)
	}
	e.inPlace.set(supported, now)
	return supported, nil
}

// replaceInPlace rewrites the node affinity of the existing PV with one
// conditional update: the PV keeps its UID, its binding never changes.
func (e *Executor) replaceInPlace(ctx context.Context, a decide.Action) (Outcome, error) {
	body, err := affinityPatch(a.PV, a.Affinity)
	if err != nil {
		return Outcome{}, err
	}
	cctx, cancel := e.call(ctx)
	defer cancel()
	pv, err := e.Kube.CoreV1().PersistentVolumes().Patch(cctx, a.PV.Name, types.MergePatchType, body, metav1.PatchOptions{})
	if err != nil {
		if apierrors.IsInvalid(err) && e.Method == MethodAuto {
			e.inPlace.set(false, time.Now())
		}
		if apierrors.IsConflict(err) {
			// The patch carries the UID and resourceVersion decided on.
			return Outcome{}, fmt.Errorf("pv %s: update node affinity in place: %w: %v", a.PV.Name, ErrChangedSinceDecision, err)
		}
		return Outcome{}, fmt.Errorf("pv %s: update node affinity in place: %w", a.PV.Name, err)
	}
	return Outcome{PV: pv, Method: string(MethodInPlace)}, nil
}
