package repair

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/piraeusdatastore/linstor-affinity-sidecar/sidecar/decide"
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
	SaveState(ctx context.Context, ref decide.VolumeRef, pvJSON string) error
	// ClearState removes a saved state from where it was found.
	ClearState(ctx context.Context, s *decide.SavedState) error
	// LoadState reads a saved-state property live, "" when it is not set:
	// the legacy one on the resource definition, or the volume definition's.
	LoadState(ctx context.Context, ref decide.VolumeRef, legacy bool) (string, error)
}

// Outcome is what an executed action left behind: the PV as the API server
// returned it after the last write (or, for ErrChangedSinceDecision, read it
// before a write that was then not made), so the loop can wait for its
// informer to catch up before deciding about that PV again.
type Outcome struct {
	PV *corev1.PersistentVolume
	// Method says how the PV was repaired ("recreate"), empty when no repair.
	Method string
	// Wrote is set once the action wrote to the PV (patch, delete, create),
	// also when it then failed: the informer's copy is behind from then on.
	Wrote bool
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

// Execute carries out one action the Gate let through; it checks nothing
// but what its own writes build on (step 5 of the gate). Actions of KindNone
// do nothing.
func (e *Executor) Execute(ctx context.Context, a decide.Action) (Outcome, error) {
	switch a.Kind {
	case decide.KindReplace:
		inPlace, err := e.useInPlace(ctx, a)
		if err != nil {
			return Outcome{}, err
		}
		if inPlace {
			out, err := e.replaceInPlace(ctx, a)
			if err == nil || e.Method == MethodInPlace || !IsAffinityImmutable(err) {
				return out, err
			}
			klog.InfoS("API server refused the in-place update: node affinity is immutable here; recreating instead", "pv", a.Name, "err", err)
		}
		return e.replace(ctx, a)
	case decide.KindRecreate, decide.KindClearSaved:
		return e.finishSaved(ctx, a.Saved)
	}
	return Outcome{}, nil
}

// replace is the crash-safe recreate: read the PV live, check that the API
// server would take both the delete and the replacement, save state, retain,
// delete, strip finalizers, create, clear state.
//
// The replacement and its saved state are built from the PV read live, never
// from the decision's copy: the cache holds PVs compact (see compactPV), and
// a replacement built from one would lose the capacity, the access modes,
// the CSI attributes and the rest.
func (e *Executor) replace(ctx context.Context, a decide.Action) (Outcome, error) {
	old, err := e.liveAsDecided(ctx, a.PV)
	if err != nil {
		return Outcome{PV: old}, fmt.Errorf("pv %s: %w", a.Name, err)
	}
	replacement := decide.Replacement(old, a.Affinity)
	raw, err := decide.EncodeSavedPV(replacement)
	if err != nil {
		return Outcome{}, err
	}
	if err := e.preflight(ctx, old, replacement); err != nil {
		return Outcome{}, fmt.Errorf("pv %s: %w", old.Name, err)
	}
	if err := e.claimSlot(ctx, a.Ref, old.Name); err != nil {
		return Outcome{}, fmt.Errorf("pv %s: %w", old.Name, err)
	}
	if err := e.saveState(ctx, a.Ref, raw); err != nil {
		return Outcome{}, fmt.Errorf("pv %s: save state on volume-definition %s: %w", old.Name, a.Ref, err)
	}
	if err := e.done(StepSaveState, old.Name); err != nil {
		return Outcome{}, err
	}
	saved := &decide.SavedState{Ref: a.Ref, PV: replacement, Raw: raw}
	if err := e.ownSlot(ctx, saved); err != nil {
		return Outcome{}, fmt.Errorf("pv %s: %w", old.Name, err)
	}
	out := Outcome{Wrote: true}
	retained, err := e.retain(ctx, old)
	if err != nil {
		return out, fmt.Errorf("pv %s: set reclaim policy Retain: %w", old.Name, err)
	}
	if err := e.done(StepRetain, old.Name); err != nil {
		return out, err
	}
	// The last look before the step that cannot be taken back: a write to
	// the slot that LINSTOR held back (another instance's, sent before it
	// died) may have landed since. Without our state there, a failed create
	// would leave no copy of the PV.
	if err := e.ownSlot(ctx, saved); err != nil {
		if patch := e.restorePatch(replacement, retained); patch != nil {
			if _, perr := e.mergePatch(ctx, old.Name, patch); perr != nil {
				err = fmt.Errorf("%w; undoing the retain: %v", err, perr)
			}
		}
		return out, fmt.Errorf("pv %s: %w", old.Name, err)
	}
	if err := e.deleteExact(ctx, retained); err != nil {
		return out, fmt.Errorf("pv %s: delete: %w", old.Name, err)
	}
	if err := e.done(StepDelete, old.Name); err != nil {
		return out, err
	}
	out, err = e.recreate(ctx, saved, retained)
	out.Wrote = true
	return out, err
}

// ErrChangedSinceDecision marks a repair not made because the PV the API
// server has is no longer the one the decision was made on: the cache had
// not shown the change yet. Nothing was written; the next cycle decides on
// the new copy, so it is no failure of the PV's repair and puts the PV in no
// backoff.
var ErrChangedSinceDecision = errors.New("the PV changed since the decision")

// liveAsDecided reads the PV live for a write to build on, and checks that
// it is the very PV the decision was made on (UID and resourceVersion). On
// ErrChangedSinceDecision it returns the live PV (nil when it is gone), so
// the loop waits for its cache to show it.
func (e *Executor) liveAsDecided(ctx context.Context, decided *corev1.PersistentVolume) (*corev1.PersistentVolume, error) {
	live, err := e.Get(ctx, decided.Name)
	switch {
	case apierrors.IsNotFound(err):
		return nil, fmt.Errorf("%w: it is gone; deciding again", ErrChangedSinceDecision)
	case err != nil:
		return nil, fmt.Errorf("read it before the replace: %w", err)
	case live.UID != decided.UID || live.ResourceVersion != decided.ResourceVersion:
		return live, fmt.Errorf("%w: decided on uid %s resourceVersion %s, the API server has uid %s resourceVersion %s; deciding again on the new copy",
			ErrChangedSinceDecision, decided.UID, decided.ResourceVersion, live.UID, live.ResourceVersion)
	}
	return live, nil
}

// preflight asks the API server, by server-side dry runs, whether it would
// accept the two writes a replace cannot take back: deleting the old PV and
// creating its replacement. A validating webhook or admission policy that
// refuses either, or a replacement the API server finds invalid (a bad key
// from an override policy), is found before anything is written. The dry
// run of the create uses a generated name, since the old PV still holds its
// own.
func (e *Executor) preflight(ctx context.Context, old, replacement *corev1.PersistentVolume) error {
	cctx, cancel := e.call(ctx)
	defer cancel()
	err := e.Kube.CoreV1().PersistentVolumes().Delete(cctx, old.Name, metav1.DeleteOptions{
		DryRun:        []string{metav1.DryRunAll},
		Preconditions: &metav1.Preconditions{UID: &old.UID},
	})
	if err != nil {
		return fmt.Errorf("server-side dry run of the delete failed; not starting the replace: %w", err)
	}
	probe := replacement.DeepCopy()
	probe.GenerateName = dryRunNamePrefix(old.Name)
	probe.Name, probe.ResourceVersion, probe.UID = "", "", ""
	probe.Status = corev1.PersistentVolumeStatus{}
	if _, err := e.Kube.CoreV1().PersistentVolumes().Create(cctx, probe, metav1.CreateOptions{DryRun: []string{metav1.DryRunAll}}); err != nil {
		return fmt.Errorf("server-side dry run of the replacement PV's create failed; not starting the replace: %w", err)
	}
	return nil
}

// dryRunNamePrefix is the generateName of a dry-run replacement: the PV's
// name, cut so the generated name stays a valid object name.
func dryRunNamePrefix(name string) string {
	const max = 240
	if len(name) > max {
		name = name[:max]
	}
	return name + "-"
}

// claimSlot reads the volume definition's saved-state slot live right before
// the save: it must be empty. Anything there is another replace's (a PV
// sharing this volume, the upstream controller, another instance) or text
// nobody can read; writing over it could lose the only copy of a PV.
func (e *Executor) claimSlot(ctx context.Context, ref decide.VolumeRef, name string) error {
	cctx, cancel := e.call(ctx)
	defer cancel()
	raw, err := e.State.LoadState(cctx, ref, false)
	if err != nil {
		return fmt.Errorf("read the saved-state slot of volume-definition %s: %w", ref, err)
	}
	if raw == "" {
		return nil
	}
	owner := "text that is not a saved PV"
	if pv, err := decide.DecodeSavedPV(raw); err == nil {
		owner = "the saved state of PV " + pv.Name
	}
	return fmt.Errorf("%w: volume-definition %s holds %s; not starting a replace of %s", ErrSlotTaken, ref, owner, name)
}

// ownSlot checks that the slot holds exactly the state this replace saved.
func (e *Executor) ownSlot(ctx context.Context, s *decide.SavedState) error {
	still, err := e.stateUnchanged(ctx, s)
	if err != nil {
		return fmt.Errorf("read back the saved state on %s: %w", s.Location(), err)
	}
	if !still {
		return fmt.Errorf("%w: %s no longer holds the state this replace saved (another write landed); stopping before the delete", ErrSlotTaken, s.Location())
	}
	return nil
}

// ErrSlotTaken marks a replace not started because the volume's saved-state
// slot was in use.
var ErrSlotTaken = errors.New("saved-state slot in use")

// IsAffinityImmutable reports whether err is the API server's refusal to
// change spec.nodeAffinity of an existing PV (no MutablePVNodeAffinity):
// the one refusal after which a recreate may stand in for an in-place
// update. Any other refusal (a webhook, an admission policy, a bad value)
// would refuse the recreate too, or says something a person must see.
func IsAffinityImmutable(err error) bool {
	if !apierrors.IsInvalid(err) {
		return false
	}
	var status apierrors.APIStatus
	if !errors.As(err, &status) || status.Status().Details == nil {
		return false
	}
	causes := status.Status().Details.Causes
	if len(causes) == 0 {
		return false
	}
	for _, c := range causes {
		if !strings.HasSuffix(c.Field, "nodeAffinity") || !strings.Contains(c.Message, "immutable") {
			return false
		}
	}
	return true
}

func (e *Executor) saveState(ctx context.Context, ref decide.VolumeRef, raw string) error {
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
			"annotations": map[string]any{
				e.SkipReclaimAnnotation():     "true",
				decide.RetainedFromAnnotation: string(pv.Spec.PersistentVolumeReclaimPolicy),
			},
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
		current, gerr := e.Get(ctx, pv.Name)
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

// finishSaved finishes or undoes a replace from its saved state, deciding
// on the PV and the slot as the API server and LINSTOR have them now, not
// on the informer's copy, which can be seconds old: a PV the copy shows
// alive may have been deleted by the interrupted replace, and one it shows
// untouched may still carry Retain and skip-reclaim. Missing or
// terminating: recreate it. Alive: undo the replace's retain, then clear.
func (e *Executor) finishSaved(ctx context.Context, s *decide.SavedState) (Outcome, error) {
	name := s.PV.Name
	still, err := e.stateUnchanged(ctx, s)
	if err != nil {
		return Outcome{}, fmt.Errorf("pv %s: read saved state on %s: %w", name, s.Location(), err)
	}
	live, err := e.Get(ctx, name)
	switch {
	case apierrors.IsNotFound(err):
		live = nil
	case err != nil:
		return Outcome{}, fmt.Errorf("pv %s: read it before using its saved state: %w", name, err)
	}
	if !still {
		// Someone (another instance, the upstream controller) finished or
		// replaced the state since the view was read: decide again.
		klog.InfoS("Saved state changed since it was read; deciding again next cycle", "pv", name, "location", s.Location())
		return Outcome{PV: live}, nil
	}
	if live == nil || live.DeletionTimestamp != nil {
		return e.recreate(ctx, s, live)
	}
	return e.settle(ctx, s, live)
}

// stateUnchanged reads the saved-state property live and reports whether it
// still holds exactly the text s was read from.
func (e *Executor) stateUnchanged(ctx context.Context, s *decide.SavedState) (bool, error) {
	cctx, cancel := e.call(ctx)
	defer cancel()
	raw, err := e.State.LoadState(cctx, s.Ref, s.Legacy)
	if err != nil {
		return false, err
	}
	return raw == s.Raw, nil
}

// recreate finishes a replace from its saved state: make sure the old PV is
// gone (stripping its finalizers if it is stuck terminating), create the
// replacement, clear the saved state. old is the deleted (or terminating) PV,
// nil when it is gone already.
func (e *Executor) recreate(ctx context.Context, s *decide.SavedState, old *corev1.PersistentVolume) (Outcome, error) {
	return e.recreateOnce(ctx, s, old, true)
}

func (e *Executor) recreateOnce(ctx context.Context, s *decide.SavedState, old *corev1.PersistentVolume, retry bool) (Outcome, error) {
	name := s.PV.Name
	out := Outcome{}
	if old != nil {
		if err := e.stripFinalizers(ctx, old); err != nil {
			return out, fmt.Errorf("pv %s: remove finalizers: %w", name, err)
		}
		out.Wrote = len(old.Finalizers) > 0
		if err := e.done(StepStripFinalizers, name); err != nil {
			return out, err
		}
		if err := e.waitGone(ctx, old); err != nil {
			return out, fmt.Errorf("pv %s: wait for deletion: %w", name, err)
		}
	}
	created, err := e.create(ctx, s.PV)
	if apierrors.IsAlreadyExists(err) {
		// Someone (another instance, another controller) was quicker. Look
		// at what is there and finish from that instead.
		current, gerr := e.Get(ctx, name)
		if gerr != nil {
			return out, fmt.Errorf("pv %s: exists, but cannot read it: %w", name, gerr)
		}
		if current.DeletionTimestamp == nil {
			settled, err := e.settle(ctx, s, current)
			settled.Wrote = settled.Wrote || out.Wrote
			return settled, err
		}
		if !retry {
			return out, fmt.Errorf("pv %s: create replacement: %w", name, err)
		}
		return e.recreateOnce(ctx, s, current, false)
	}
	out.Wrote = true // a failed create may have been applied all the same
	if err != nil {
		return out, fmt.Errorf("pv %s: create replacement: %w", name, err)
	}
	out.PV, out.Method = created, string(MethodRecreate)
	if err := e.done(StepCreate, name); err != nil {
		return out, err
	}
	if err := e.clearState(ctx, s); err != nil {
		return out, fmt.Errorf("pv %s: clear saved state on %s: %w", name, s.Location(), err)
	}
	return out, e.done(StepClearState, name)
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

// Get reads PV name live from the API server, within one --timeout: the read
// a write builds on, never the informer's copy.
func (e *Executor) Get(ctx context.Context, name string) (*corev1.PersistentVolume, error) {
	cctx, cancel := e.call(ctx)
	defer cancel()
	return e.Kube.CoreV1().PersistentVolumes().Get(cctx, name, metav1.GetOptions{})
}

// clearState removes the saved state, but only while LINSTOR still holds
// exactly the text it was read as: a state someone wrote since (a PV sharing
// the volume, the upstream controller) is not ours to remove.
func (e *Executor) clearState(ctx context.Context, s *decide.SavedState) error {
	still, err := e.stateUnchanged(ctx, s)
	if err != nil {
		return err
	}
	if !still {
		klog.InfoS("Saved state changed since it was written or read; leaving it", "pv", s.Name(), "location", s.Location())
		return nil
	}
	cctx, cancel := e.call(ctx)
	defer cancel()
	return e.State.ClearState(cctx, s)
}

// settle handles saved state next to a live PV (read from the API server
// just before): the replace never got as far as deleting it, or the
// replacement exists already. Whatever the replace did to the live PV to
// keep its volume safe is undone, then the state is cleared; the next cycle
// decides afresh whether the PV still needs a replace.
func (e *Executor) settle(ctx context.Context, s *decide.SavedState, live *corev1.PersistentVolume) (Outcome, error) {
	out := Outcome{PV: live}
	if patch := e.restorePatch(s.PV, live); patch != nil {
		out.Wrote = true
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

// restorePatch returns the merge patch that undoes the retain step of an
// interrupted replace on the live PV, or nil when there is nothing to undo.
//
// When the live PV carries RetainedFromAnnotation, this sidecar's retain
// step ran: the reclaim policy goes back to the one the annotation recorded
// (unless someone changed it from Retain since: then theirs stays), the
// skip-reclaim annotation back to what the saved replacement has (which is
// what the PV had before), and the mark goes.
//
// Without the mark (a replace of the upstream controller, or of an older
// version of this sidecar) the reclaim policy is only restored when the live
// PV carries skip-reclaim "true" and the saved replacement does not: only
// then is Retain known to be the replace's doing. Otherwise the policy on
// the live PV may be the user's; setting it back to the saved (older) value
// could turn a Retain the user chose into Delete.
func (e *Executor) restorePatch(saved, live *corev1.PersistentVolume) map[string]any {
	key := e.SkipReclaimAnnotation()
	savedValue, savedHas := saved.Annotations[key]
	liveValue, liveHas := live.Annotations[key]
	before, marked := live.Annotations[decide.RetainedFromAnnotation]
	annotationDiffers := savedHas != liveHas || savedValue != liveValue
	isRetain := live.Spec.PersistentVolumeReclaimPolicy == corev1.PersistentVolumeReclaimRetain
	var want corev1.PersistentVolumeReclaimPolicy
	switch {
	case marked && isRetain && before != "":
		want = corev1.PersistentVolumeReclaimPolicy(before)
	case !marked && isRetain && liveValue == "true" && savedValue != "true":
		want = saved.Spec.PersistentVolumeReclaimPolicy
	}
	policyDiffers := want != "" && want != live.Spec.PersistentVolumeReclaimPolicy
	if want == "" && saved.Spec.PersistentVolumeReclaimPolicy != live.Spec.PersistentVolumeReclaimPolicy {
		klog.InfoS("Keeping the reclaim policy a user set during an interrupted replace", "pv", live.Name,
			"reclaimPolicy", live.Spec.PersistentVolumeReclaimPolicy, "saved", saved.Spec.PersistentVolumeReclaimPolicy)
	}
	if !annotationDiffers && !policyDiffers && !marked {
		return nil
	}
	annotations := map[string]any{}
	if annotationDiffers {
		if savedHas {
			annotations[key] = savedValue
		} else {
			annotations[key] = nil
		}
	}
	if marked {
		annotations[decide.RetainedFromAnnotation] = nil
	}
	patch := map[string]any{"metadata": map[string]any{"uid": live.UID, "resourceVersion": live.ResourceVersion, "annotations": annotations}}
	if policyDiffers {
		patch["spec"] = map[string]any{"persistentVolumeReclaimPolicy": want}
	}
	return patch
}

// ErrInterrupted is what test hooks return to stop an action as a crash would.
var ErrInterrupted = errors.New("interrupted")
