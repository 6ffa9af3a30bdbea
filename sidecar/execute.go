package sidecar

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/equality"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/client-go/kubernetes"
	"k8s.io/klog/v2"
)

// Step names one step of the crash-safe replace (DOMAIN.md section 3). A crash
// after any step leaves state from which Decide finds the way to finish.
type Step string

const (
	StepSaveState       Step = "save-state"
	StepRetain          Step = "retain"
	StepDelete          Step = "delete"
	StepStripFinalizers Step = "strip-finalizers"
	StepCreate          Step = "create"
	StepClearState      Step = "clear-state"
	StepRestore         Step = "restore"
)

// StateStore keeps saved state in LINSTOR, where the upstream controller keeps it.
type StateStore interface {
	// SaveState writes the replacement PV's JSON on the volume definition.
	SaveState(ctx context.Context, ref VolumeRef, pvJSON string) error
	// ClearState removes a saved state from where it was found.
	ClearState(ctx context.Context, s *SavedState) error
}

// Outcome is what an executed action left behind: the PV as the API server
// returned it after the last write, so the loop can wait for its informer to
// catch up before deciding about that PV again.
type Outcome struct {
	PV *corev1.PersistentVolume
	// Method says how the PV was repaired ("recreate"), empty when no repair.
	Method string
}

// Executor carries out decisions against the API server and LINSTOR. Every call
// is bounded by Timeout. Writes carry preconditions (UID, resourceVersion), so a
// stale view makes a step fail and the next cycle decide again, never act twice.
type Executor struct {
	Kube       kubernetes.Interface
	State      StateStore
	DriverName string
	Timeout    time.Duration
	// PollInterval is how often a deleted PV is checked for being gone.
	PollInterval time.Duration
	// AfterStep, when set, runs after each completed step; an error stops the
	// action there, as a crash would. Tests use it to interrupt replaces.
	AfterStep func(step Step, pv string) error
	// Method chooses in-place updates or the recreate; empty means recreate.
	Method RepairMethod

	inPlace inPlaceSupport
}

// SkipReclaimAnnotation tells csi-reclaim-controller style reclaimers to keep
// the volume when the PV goes away; the replace sets it on the old PV.
func (e *Executor) SkipReclaimAnnotation() string {
	return e.DriverName + "/skip-reclaim"
}

func (e *Executor) call(ctx context.Context) (context.Context, context.CancelFunc) {
	return context.WithTimeout(ctx, e.Timeout)
}

func (e *Executor) done(step Step, pv string) error {
	klog.V(4).InfoS("Replace step done", "pv", pv, "step", step)
	faultHook(step, pv)
	if e.AfterStep != nil {
		return e.AfterStep(step, pv)
	}
	return nil
}

// Execute carries out one action. Actions of KindNone do nothing.
func (e *Executor) Execute(ctx context.Context, a Action) (Outcome, error) {
	switch a.Kind {
	case KindReplace:
		if err := e.confirmReplicas(ctx, a); err != nil {
			return Outcome{}, err
		}
		inPlace, err := e.useInPlace(ctx, a)
		if err != nil {
			return Outcome{}, err
		}
		if inPlace {
			out, err := e.replaceInPlace(ctx, a)
			if err == nil || e.Method == MethodInPlace || !apierrors.IsInvalid(err) {
				return out, err
			}
			klog.InfoS("API server refused the in-place update; recreating instead", "pv", a.Name, "err", err)
		}
		return e.replace(ctx, a)
	case KindRecreate:
		return e.recreate(ctx, a.Saved, a.PV)
	case KindClearSaved:
		return e.settle(ctx, a.Saved, a.PV)
	}
	return Outcome{}, nil
}

// replace is the crash-safe recreate: save state, retain, delete, strip
// finalizers, create, clear state.
func (e *Executor) replace(ctx context.Context, a Action) (Outcome, error) {
	old := a.PV
	replacement := Replacement(old, a.Affinity)
	raw, err := EncodeSavedPV(replacement)
	if err != nil {
		return Outcome{}, err
	}
	if err := e.saveState(ctx, a.Ref, raw); err != nil {
		return Outcome{}, fmt.Errorf("pv %s: save state on volume-definition %s: %w", old.Name, a.Ref, err)
	}
	if err := e.done(StepSaveState, old.Name); err != nil {
		return Outcome{}, err
	}
	retained, err := e.retain(ctx, old)
	if err != nil {
		return Outcome{}, fmt.Errorf("pv %s: set reclaim policy Retain: %w", old.Name, err)
	}
	if err := e.done(StepRetain, old.Name); err != nil {
		return Outcome{}, err
	}
	if err := e.deleteExact(ctx, retained); err != nil {
		return Outcome{}, fmt.Errorf("pv %s: delete: %w", old.Name, err)
	}
	if err := e.done(StepDelete, old.Name); err != nil {
		return Outcome{}, err
	}
	saved := &SavedState{Ref: a.Ref, PV: replacement}
	return e.recreate(ctx, saved, retained)
}

func (e *Executor) saveState(ctx context.Context, ref VolumeRef, raw string) error {
	cctx, cancel := e.call(ctx)
	defer cancel()
	return e.State.SaveState(cctx, ref, raw)
}

// retain makes sure deleting the PV object cannot delete the volume: reclaim
// policy Retain and the skip-reclaim annotation. The patch carries the UID and
// resourceVersion the decision was made on, so it fails on any newer PV.
func (e *Executor) retain(ctx context.Context, pv *corev1.PersistentVolume) (*corev1.PersistentVolume, error) {
	patch := map[string]any{
		"metadata": map[string]any{
			"uid":             pv.UID,
			"resourceVersion": pv.ResourceVersion,
			"annotations":     map[string]any{e.SkipReclaimAnnotation(): "true"},
		},
		"spec": map[string]any{"persistentVolumeReclaimPolicy": corev1.PersistentVolumeReclaimRetain},
	}
	return e.mergePatch(ctx, pv.Name, patch)
}

func (e *Executor) mergePatch(ctx context.Context, name string, patch map[string]any) (*corev1.PersistentVolume, error) {
	body, err := json.Marshal(patch)
	if err != nil {
		return nil, err
	}
	cctx, cancel := e.call(ctx)
	defer cancel()
	return e.Kube.CoreV1().PersistentVolumes().Patch(cctx, name, types.MergePatchType, body, metav1.PatchOptions{})
}

// deleteExact deletes exactly this PV, and only while it is still retained.
// Other controllers legitimately touch the PV right after the Retain patch
// (the external-provisioner drops its finalizer from retained PVs), so a
// resourceVersion conflict is not a reason to give up: the PV is read again,
// and the delete retried with the new resourceVersion as long as it is the
// same PV (UID) and still has reclaim policy Retain and the skip-reclaim
// annotation. Were either undone meanwhile, deleting could delete the volume.
func (e *Executor) deleteExact(ctx context.Context, pv *corev1.PersistentVolume) error {
	const attempts = 5
	for i := 0; ; i++ {
		cctx, cancel := e.call(ctx)
		err := e.Kube.CoreV1().PersistentVolumes().Delete(cctx, pv.Name, metav1.DeleteOptions{
			Preconditions: &metav1.Preconditions{UID: &pv.UID, ResourceVersion: &pv.ResourceVersion},
		})
		cancel()
		if err == nil || apierrors.IsNotFound(err) {
			return nil
		}
		if !apierrors.IsConflict(err) || i+1 == attempts {
			return err
		}
		current, gerr := e.get(ctx, pv.Name)
		if apierrors.IsNotFound(gerr) {
			return nil
		}
		if gerr != nil {
			return fmt.Errorf("%w; reading it again: %v", err, gerr)
		}
		if current.UID != pv.UID {
			return nil // our PV is gone already; this one is someone else's
		}
		if current.Spec.PersistentVolumeReclaimPolicy != corev1.PersistentVolumeReclaimRetain || current.Annotations[e.SkipReclaimAnnotation()] != "true" {
			return fmt.Errorf("PV changed during the replace (reclaim policy %s, %s=%q): not deleting it",
				current.Spec.PersistentVolumeReclaimPolicy, e.SkipReclaimAnnotation(), current.Annotations[e.SkipReclaimAnnotation()])
		}
		// The replacement was built from the PV as decided; an edit of its
		// spec, labels or annotations since would be lost with the old PV.
		// Finalizers are the one change other controllers make here.
		if what := editedBesidesFinalizers(pv, current); what != "" {
			return fmt.Errorf("PV's %s changed during the replace: not deleting it; the next cycle starts over from the edited PV", what)
		}
		klog.V(4).InfoS("PV changed between retain and delete; retrying with its new resourceVersion", "pv", pv.Name,
			"resourceVersion", current.ResourceVersion)
		pv = current
	}
}

// editedBesidesFinalizers names what differs between two versions of a PV
// apart from finalizers, status and bookkeeping metadata ("" when nothing).
func editedBesidesFinalizers(was, now *corev1.PersistentVolume) string {
	switch {
	case !equality.Semantic.DeepEqual(was.Spec, now.Spec):
		return "spec"
	case !equality.Semantic.DeepEqual(was.Labels, now.Labels):
		return "labels"
	case !equality.Semantic.DeepEqual(was.Annotations, now.Annotations):
		return "annotations"
	case !equality.Semantic.DeepEqual(was.OwnerReferences, now.OwnerReferences):
		return "owner references"
	}
	return ""
}

// recreate finishes a replace from its saved state: make sure the old PV is
// gone (stripping its finalizers if it is stuck terminating), create the
// replacement, clear the saved state. old is the deleted (or terminating) PV,
// nil when it is gone already.
func (e *Executor) recreate(ctx context.Context, s *SavedState, old *corev1.PersistentVolume) (Outcome, error) {
	return e.recreateOnce(ctx, s, old, true)
}

func (e *Executor) recreateOnce(ctx context.Context, s *SavedState, old *corev1.PersistentVolume, retry bool) (Outcome, error) {
	name := s.PV.Name
	if old != nil {
		if err := e.stripFinalizers(ctx, old); err != nil {
			return Outcome{}, fmt.Errorf("pv %s: remove finalizers: %w", name, err)
		}
		if err := e.done(StepStripFinalizers, name); err != nil {
			return Outcome{}, err
		}
		if err := e.waitGone(ctx, old); err != nil {
			return Outcome{}, fmt.Errorf("pv %s: wait for deletion: %w", name, err)
		}
	}
	created, err := e.create(ctx, s.PV)
	if apierrors.IsAlreadyExists(err) {
		// Someone (a stale cache here, or another controller) was quicker. Look
		// at what is there and finish from that instead.
		current, gerr := e.get(ctx, name)
		if gerr != nil {
			return Outcome{}, fmt.Errorf("pv %s: exists, but cannot read it: %w", name, gerr)
		}
		if current.DeletionTimestamp == nil {
			return e.settle(ctx, s, current)
		}
		if !retry {
			return Outcome{}, fmt.Errorf("pv %s: create replacement: %w", name, err)
		}
		return e.recreateOnce(ctx, s, current, false)
	}
	if err != nil {
		return Outcome{}, fmt.Errorf("pv %s: create replacement: %w", name, err)
	}
	if err := e.done(StepCreate, name); err != nil {
		return Outcome{}, err
	}
	if err := e.clearState(ctx, s); err != nil {
		return Outcome{PV: created, Method: string(MethodRecreate)}, fmt.Errorf("pv %s: clear saved state on %s: %w", name, s.Location(), err)
	}
	if err := e.done(StepClearState, name); err != nil {
		return Outcome{PV: created, Method: string(MethodRecreate)}, err
	}
	return Outcome{PV: created, Method: string(MethodRecreate)}, nil
}

func (e *Executor) stripFinalizers(ctx context.Context, pv *corev1.PersistentVolume) error {
	if len(pv.Finalizers) == 0 {
		return nil
	}
	patch, err := json.Marshal([]map[string]any{
		{"op": "test", "path": "/metadata/uid", "value": pv.UID},
		{"op": "replace", "path": "/metadata/finalizers", "value": []string{}},
	})
	if err != nil {
		return err
	}
	cctx, cancel := e.call(ctx)
	defer cancel()
	_, err = e.Kube.CoreV1().PersistentVolumes().Patch(cctx, pv.Name, types.JSONPatchType, patch, metav1.PatchOptions{})
	if apierrors.IsNotFound(err) {
		return nil
	}
	return err
}

// waitGone waits until the PV with old's UID no longer exists.
func (e *Executor) waitGone(ctx context.Context, old *corev1.PersistentVolume) error {
	interval := e.PollInterval
	if interval <= 0 {
		interval = 100 * time.Millisecond
	}
	cctx, cancel := e.call(ctx)
	defer cancel()
	return wait.PollUntilContextCancel(cctx, interval, true, func(ctx context.Context) (bool, error) {
		pv, err := e.Kube.CoreV1().PersistentVolumes().Get(ctx, old.Name, metav1.GetOptions{})
		if apierrors.IsNotFound(err) {
			return true, nil
		}
		if err != nil {
			klog.V(4).InfoS("Waiting for PV deletion", "pv", old.Name, "err", err)
			return false, nil
		}
		return pv.UID != old.UID, nil
	})
}

func (e *Executor) create(ctx context.Context, pv *corev1.PersistentVolume) (*corev1.PersistentVolume, error) {
	cctx, cancel := e.call(ctx)
	defer cancel()
	fresh := pv.DeepCopy()
	fresh.ResourceVersion, fresh.UID = "", ""
	fresh.Status = corev1.PersistentVolumeStatus{}
	return e.Kube.CoreV1().PersistentVolumes().Create(cctx, fresh, metav1.CreateOptions{})
}

func (e *Executor) get(ctx context.Context, name string) (*corev1.PersistentVolume, error) {
	cctx, cancel := e.call(ctx)
	defer cancel()
	return e.Kube.CoreV1().PersistentVolumes().Get(cctx, name, metav1.GetOptions{})
}

func (e *Executor) clearState(ctx context.Context, s *SavedState) error {
	cctx, cancel := e.call(ctx)
	defer cancel()
	return e.State.ClearState(cctx, s)
}

// settle handles saved state next to a live PV: the replace never got as far
// as deleting it (or the replacement exists already). Whatever the replace did
// to the live PV to keep its volume safe is undone, then the state is cleared;
// the next cycle decides afresh whether the PV still needs a replace.
func (e *Executor) settle(ctx context.Context, s *SavedState, live *corev1.PersistentVolume) (Outcome, error) {
	out := Outcome{PV: live}
	if patch := e.restorePatch(s.PV, live); patch != nil {
		restored, err := e.mergePatch(ctx, live.Name, patch)
		if err != nil {
			return out, fmt.Errorf("pv %s: restore reclaim policy: %w", live.Name, err)
		}
		out.PV = restored
		klog.InfoS("Restored PV after an interrupted replace", "pv", live.Name,
			"reclaimPolicy", restored.Spec.PersistentVolumeReclaimPolicy)
		if err := e.done(StepRestore, live.Name); err != nil {
			return out, err
		}
	}
	if err := e.clearState(ctx, s); err != nil {
		return out, fmt.Errorf("pv %s: clear saved state on %s: %w", live.Name, s.Location(), err)
	}
	return out, e.done(StepClearState, live.Name)
}

// restorePatch returns the merge patch that gives the live PV back the reclaim
// policy and skip-reclaim annotation of the saved replacement, or nil when
// they agree already.
//
// The reclaim policy is only restored when the live PV carries the mark of
// the replace's retain step (skip-reclaim "true", which the saved replacement
// lacks): only then is Retain known to be the sidecar's own doing. Without
// the mark the retain step never ran, or someone undid it, and the policy on
// the live PV is the user's; setting it back to the saved (older) value could
// turn a Retain the user chose into Delete.
func (e *Executor) restorePatch(saved, live *corev1.PersistentVolume) map[string]any {
	key := e.SkipReclaimAnnotation()
	savedValue, savedHas := saved.Annotations[key]
	liveValue, liveHas := live.Annotations[key]
	annotationDiffers := savedHas != liveHas || savedValue != liveValue
	retainedByUs := liveValue == "true" && savedValue != "true" &&
		live.Spec.PersistentVolumeReclaimPolicy == corev1.PersistentVolumeReclaimRetain
	policyDiffers := retainedByUs && saved.Spec.PersistentVolumeReclaimPolicy != live.Spec.PersistentVolumeReclaimPolicy
	if !retainedByUs && saved.Spec.PersistentVolumeReclaimPolicy != live.Spec.PersistentVolumeReclaimPolicy {
		klog.InfoS("Keeping the reclaim policy a user set during an interrupted replace", "pv", live.Name,
			"reclaimPolicy", live.Spec.PersistentVolumeReclaimPolicy, "saved", saved.Spec.PersistentVolumeReclaimPolicy)
	}
	if !annotationDiffers && !policyDiffers {
		return nil
	}
	meta := map[string]any{"uid": live.UID, "resourceVersion": live.ResourceVersion}
	if annotationDiffers {
		if savedHas {
			meta["annotations"] = map[string]any{key: savedValue}
		} else {
			meta["annotations"] = map[string]any{key: nil}
		}
	}
	patch := map[string]any{"metadata": meta}
	if policyDiffers {
		patch["spec"] = map[string]any{"persistentVolumeReclaimPolicy": saved.Spec.PersistentVolumeReclaimPolicy}
	}
	return patch
}

// ErrInterrupted is what test hooks return to stop an action as a crash would.
var ErrInterrupted = errors.New("interrupted")
