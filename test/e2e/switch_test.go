package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"net/url"
	"os"
	"path/filepath"
	"testing"
	"time"

	lapi "github.com/LINBIT/golinstor/client"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/equality"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	corev1ac "k8s.io/client-go/applyconfigurations/core/v1"

	"github.com/piraeusdatastore/linstor-affinity-sidecar/test/testbed"
)

// What the README says is left behind and how to remove it, written out so
// a change in the code that names them fails here.
const (
	// leaseName is the sidecar's leader Lease in the CSI controller's
	// namespace: component "linstor-affinity-sidecar" and the driver name,
	// made a valid name.
	leaseName = "linstor-affinity-sidecar-linstor-csi-linbit-com"
	// retainedFromAnnotation marks a PV the sidecar's replace set to Retain.
	retainedFromAnnotation = "linstor-affinity-sidecar.piraeus.io/reclaim-policy-before-replace"
	// killFileEnv is sidecar.FaultKillFileEnv (the fault hook's arm file).
	killFileEnv = "SIDECAR_FAULT_KILL_FILE"
)

// TestSwitchingMidReplaceLosesNothing switches between the upstream LINSTOR
// Affinity Controller and the sidecar, both ways, while PVs are in the
// middle of a replace, through the LINSTOR keys the two share.
//
// The upstream controller cannot run here (its module is not served), so its
// side is a model written for this test from its documented behaviour
// (DOMAIN.md section 3), not the real controller: upstreamModel. It saves
// the replacement PV's JSON (an apply configuration: name, labels,
// annotations, claimRef, CSI source, capacity, access modes, volume mode,
// storage class, reclaim policy, new affinity) on the volume definition
// (legacy: the resource definition), retains the PV (Retain and
// <driver>/skip-reclaim), deletes it, strips its finalizers, and applies the
// replacement; on start it finishes saved state: no live PV, create it; a
// live healthy PV, clear the property. How upstream treats a PV still being
// deleted is not documented; the model strips its finalizers and recreates
// it, as its own replace does after the delete.
//
// Upstream to sidecar: PVs are left as an upstream controller killed
// mid-replace leaves them (retained; being deleted; deleted and gone, with
// the state on the volume definition and, once, on the resource definition)
// and the sidecar is started: it finishes every replace.
//
// Sidecar to upstream: the sidecar is killed (fault hook, -tags faulthooks)
// right after each step of its replace in turn; what it left must be what
// upstream's start-up reads (the saved state decodes as the full
// replacement PV) and the model's start-up brings every PV back. Between
// rounds the README's clean-up runs (the Lease deleted; a PV left at Retain
// by an interrupted replace set back) and the sidecar takes over again.
func TestSwitchingMidReplaceLosesNothing(t *testing.T) {
	began := time.Now()
	ctx := testContext(t, 4*time.Minute)
	kill := filepath.Join(t.TempDir(), "kill-at")
	t.Setenv(killFileEnv, kill) // inherited by the sidecar's process
	b := startBed(t, testbed.Options{
		SidecarBinary: faultHookSidecar(ctx, t), NoSidecar: true, LeaderElection: true,
		ReconcileRate: time.Second, SidecarArgs: []string{"--workers=1"},
	})
	createStorageClasses(ctx, t, b)
	up := newUpstreamModel(t, b)

	// Where each upstream replace was when its controller stopped.
	upstreamCases := []struct {
		claim  string
		legacy bool
		after  string
	}{
		{"up-retained", false, "retain"},
		{"up-terminating", false, "delete"},
		{"up-gone", false, "strip-finalizers"},
		{"up-gone-legacy", true, "strip-finalizers"},
	}
	sidecarSteps := []string{"save-state", "retain", "delete", "strip-finalizers", "create"}
	var claims []testbed.Claim
	for _, c := range upstreamCases {
		claims = append(claims, testbed.Claim{Name: c.claim, StorageClass: "strict", Node: "n1"})
	}
	for i := range sidecarSteps {
		claims = append(claims, testbed.Claim{Name: fmt.Sprintf("sw-%d", i), StorageClass: "strict", Node: "n1"})
	}
	wctx, cancel := within(ctx)
	pvs, err := b.ProvisionVolumes(wctx, claims...)
	cancel()
	must(t, err)
	step(t, began, "%d volumes provisioned on n1", len(claims))

	// Upstream to sidecar.
	for _, c := range upstreamCases {
		pv := pvs[c.claim]
		must(t, b.Sim.MoveReplica(pv.Name, "n1", "n2"))
		up.interruptedReplace(ctx, t, pv, testbed.AffinityOf(expected(t, b, pv.Name, "strict")...), c.legacy, c.after)
	}
	step(t, began, "upstream model stopped %d replaces mid-way", len(upstreamCases))
	wctx, cancel = within(ctx)
	must(t, b.StartSidecar(wctx))
	cancel()
	for _, c := range upstreamCases {
		assertReplaced(ctx, t, b, pvs[c.claim], "strict")
	}
	wctx, cancel = within(ctx)
	must(t, b.WaitCycles(wctx, 2))
	cancel()
	for _, c := range upstreamCases {
		assertNoSavedState(t, b, pvs[c.claim].Name, 1)
	}
	lease, err := b.Kube.CoordinationV1().Leases(testbed.ControllerNamespace).Get(ctx, leaseName, metav1.GetOptions{})
	must(t, err)
	if lease.Spec.HolderIdentity == nil || *lease.Spec.HolderIdentity == "" {
		t.Errorf("Lease %s/%s has no holder while the sidecar leads", testbed.ControllerNamespace, leaseName)
	}
	step(t, began, "sidecar finished every upstream replace; Lease %s/%s held", testbed.ControllerNamespace, leaseName)

	// Sidecar to upstream, once after each step of the sidecar's replace.
	for i, s := range sidecarSteps {
		pv := pvs[fmt.Sprintf("sw-%d", i)]
		must(t, os.WriteFile(kill, []byte(s), 0o600))
		must(t, b.Sim.MoveReplica(pv.Name, "n1", "n3"))
		wctx, cancel := within(ctx)
		victim, err := b.WaitFaultKill(wctx, s)
		cancel()
		must(t, err)
		if victim != pv.Name {
			t.Fatalf("the sidecar was killed after %s of %s, want %s (the only drifted PV)", s, victim, pv.Name)
		}
		// What the sidecar left is what upstream's start-up reads: the
		// replacement, in full, on the volume definition.
		props := vdProps(t, b, pv.Name)
		saved, ok := props[savedPVKey]
		if !ok {
			t.Fatalf("killed after %s: no saved state on volume definition %s/0", s, pv.Name)
		}
		assertFullReplacement(t, saved, pv, testbed.AffinityOf(expected(t, b, pv.Name, "strict")...))

		finished := up.start(ctx, t)
		if len(finished) != 1 || finished[0] != pv.Name {
			t.Errorf("killed after %s: upstream's start-up finished %v, want %s", s, finished, pv.Name)
		}
		assertAllBack(ctx, t, b, pvs)
		if s == "retain" {
			// Upstream clears the state next to a live PV and keeps it as
			// it is: Retain, as the sidecar's retain step left it. The
			// README's command sets it back.
			restoreRetained(ctx, t, b, pv.Name)
		}
		// The README's clean-up of what the sidecar leaves; the next
		// sidecar takes the Lease at once instead of after the dead
		// holder's term.
		must(t, b.Kube.CoordinationV1().Leases(testbed.ControllerNamespace).Delete(ctx, leaseName, metav1.DeleteOptions{}))
		wctx, cancel = within(ctx)
		must(t, b.RestartSidecar(wctx))
		_, err = b.WaitPVAffinity(wctx, pv.Name, expected(t, b, pv.Name, "strict")...)
		cancel()
		must(t, err)
		step(t, began, "killed after %-16s: upstream finished %v; sidecar back, %s in sync", s, finished, pv.Name)
	}

	for _, c := range claims {
		assertReplaced(ctx, t, b, pvs[c.Name], "strict")
	}
	wctx, cancel = within(ctx)
	must(t, b.WaitCycles(wctx, 2))
	cancel()
	list, err := b.Kube.CoreV1().PersistentVolumes().List(ctx, metav1.ListOptions{})
	must(t, err)
	if len(list.Items) != len(claims) {
		t.Errorf("%d PVs exist, want %d", len(list.Items), len(claims))
	}
	for _, c := range claims {
		assertNoSavedState(t, b, pvs[c.Name].Name, 1)
	}
	assertNoVolumeDeleted(t, b)
	step(t, began, "every PV in sync, bound to its claim, reclaim policy as provisioned; no saved state, no volume deleted")
}

// faultHookSidecar builds the sidecar with the test-only fault hook.
func faultHookSidecar(ctx context.Context, t *testing.T) string {
	t.Helper()
	skipShort(t)
	bin, err := testbed.BuildSidecarWith(ctx, t.TempDir(), testbed.BuildOptions{Tags: "faulthooks"})
	must(t, err)
	return bin
}

// assertReplaced waits until the PV provisioned as was has the affinity
// LINSTOR's placement gives it, and checks it is the same volume for the
// same claim: claimRef, CSI source, capacity, access modes, volume mode,
// storage class and reclaim policy as provisioned, no replace annotations
// left, the claim Bound to it and not recreated.
func assertReplaced(ctx context.Context, t *testing.T, b *testbed.Bed, was *corev1.PersistentVolume, class string) {
	t.Helper()
	wctx, cancel := within(ctx)
	defer cancel()
	pv, err := b.WaitPVAffinity(wctx, was.Name, expected(t, b, was.Name, class)...)
	must(t, err)
	samePV(t, was, pv.Spec, "PV "+pv.Name)
	for _, a := range []string{testbed.DriverName + "/skip-reclaim", retainedFromAnnotation} {
		if v, ok := pv.Annotations[a]; ok {
			t.Errorf("PV %s keeps annotation %s=%q of a replace", pv.Name, a, v)
		}
	}
	pvc, err := b.WaitClaimBound(wctx, was.Spec.ClaimRef.Name, was.Name)
	must(t, err)
	if pvc.UID != was.Spec.ClaimRef.UID {
		t.Errorf("claim %s was recreated (UID %s, was %s)", pvc.Name, pvc.UID, was.Spec.ClaimRef.UID)
	}
}

// samePV fails for every field of spec (other than the node affinity) that
// a replace must carry over from was and did not.
func samePV(t *testing.T, was *corev1.PersistentVolume, spec corev1.PersistentVolumeSpec, what string) {
	t.Helper()
	w := was.Spec
	if spec.ClaimRef == nil || spec.ClaimRef.UID != w.ClaimRef.UID || spec.ClaimRef.Name != w.ClaimRef.Name || spec.ClaimRef.Namespace != w.ClaimRef.Namespace {
		t.Errorf("%s: claimRef %+v, want claim %s/%s (%s)", what, spec.ClaimRef, w.ClaimRef.Namespace, w.ClaimRef.Name, w.ClaimRef.UID)
	}
	if !equality.Semantic.DeepEqual(spec.CSI, w.CSI) {
		t.Errorf("%s: CSI source %+v, want %+v", what, spec.CSI, w.CSI)
	}
	if !equality.Semantic.DeepEqual(spec.Capacity, w.Capacity) {
		t.Errorf("%s: capacity %v, want %v", what, spec.Capacity, w.Capacity)
	}
	if !equality.Semantic.DeepEqual(spec.AccessModes, w.AccessModes) {
		t.Errorf("%s: access modes %v, want %v", what, spec.AccessModes, w.AccessModes)
	}
	if !equality.Semantic.DeepEqual(spec.VolumeMode, w.VolumeMode) {
		t.Errorf("%s: volume mode %v, want %v", what, spec.VolumeMode, w.VolumeMode)
	}
	if spec.StorageClassName != w.StorageClassName {
		t.Errorf("%s: storage class %q, want %q", what, spec.StorageClassName, w.StorageClassName)
	}
	if spec.PersistentVolumeReclaimPolicy != w.PersistentVolumeReclaimPolicy {
		t.Errorf("%s: reclaim policy %s, want %s", what, spec.PersistentVolumeReclaimPolicy, w.PersistentVolumeReclaimPolicy)
	}
}

// assertFullReplacement decodes a saved state the sidecar wrote as
// upstream's start-up would (an apply configuration) and checks it is the
// whole replacement of was: its name and every field a replace carries
// over, with the new affinity.
func assertFullReplacement(t *testing.T, saved string, was *corev1.PersistentVolume, affinity *corev1.VolumeNodeAffinity) {
	t.Helper()
	var ac corev1ac.PersistentVolumeApplyConfiguration
	if err := json.Unmarshal([]byte(saved), &ac); err != nil {
		t.Fatalf("saved state of %s is no PV: %v", was.Name, err)
	}
	if ac.Kind == nil || *ac.Kind != "PersistentVolume" || ac.APIVersion == nil || *ac.APIVersion != "v1" {
		t.Errorf("saved state of %s: kind %v, apiVersion %v, want a v1 PersistentVolume", was.Name, ac.Kind, ac.APIVersion)
	}
	if ac.Name == nil || *ac.Name != was.Name || ac.Spec == nil {
		t.Fatalf("saved state of %s names PV %v, spec %v", was.Name, ac.Name, ac.Spec)
	}
	// Back to the API type through the JSON form both share.
	var pv corev1.PersistentVolume
	if err := json.Unmarshal([]byte(saved), &pv); err != nil {
		t.Fatal(err)
	}
	samePV(t, was, pv.Spec, "saved state of "+was.Name)
	if !equality.Semantic.DeepEqual(pv.Spec.NodeAffinity, affinity) {
		t.Errorf("saved state of %s: affinity %s, want the new %s", was.Name,
			testbed.DescribeAffinity(pv.Spec.NodeAffinity), testbed.DescribeAffinity(affinity))
	}
}

// assertAllBack checks that every provisioned PV exists, is not being
// deleted, is bound to its claim as before, and that no saved state is
// left: nothing was lost in the switch.
func assertAllBack(ctx context.Context, t *testing.T, b *testbed.Bed, pvs map[string]*corev1.PersistentVolume) {
	t.Helper()
	wctx, cancel := within(ctx)
	defer cancel()
	for claim, was := range pvs {
		pv, err := b.WaitPVBound(wctx, was.Name)
		must(t, err)
		if pv.DeletionTimestamp != nil {
			t.Errorf("PV %s is being deleted", pv.Name)
		}
		if pv.Spec.ClaimRef == nil || pv.Spec.ClaimRef.UID != was.Spec.ClaimRef.UID {
			t.Errorf("PV %s claimRef %+v, want claim %s (%s)", pv.Name, pv.Spec.ClaimRef, claim, was.Spec.ClaimRef.UID)
		}
		_, err = b.WaitClaimBound(wctx, claim, was.Name)
		must(t, err)
		assertNoSavedState(t, b, was.Name, 1)
	}
	assertNoVolumeDeleted(t, b)
}

// restoreRetained runs the README's command for a PV that an interrupted
// replace of the sidecar left at Retain: the reclaim policy back to the one
// its annotation recorded, the replace's annotations removed.
func restoreRetained(ctx context.Context, t *testing.T, b *testbed.Bed, name string) {
	t.Helper()
	pv := getPV(ctx, t, b, name)
	before := pv.Annotations[retainedFromAnnotation]
	if pv.Spec.PersistentVolumeReclaimPolicy != corev1.PersistentVolumeReclaimRetain || before != string(corev1.PersistentVolumeReclaimDelete) ||
		pv.Annotations[testbed.DriverName+"/skip-reclaim"] != "true" {
		t.Fatalf("PV %s: reclaim policy %s, annotations %v; want Retain with the replace's annotations, recording Delete",
			name, pv.Spec.PersistentVolumeReclaimPolicy, pv.Annotations)
	}
	patch := fmt.Sprintf(`{"spec":{"persistentVolumeReclaimPolicy":%q},"metadata":{"annotations":{%q:null,%q:null}}}`,
		before, testbed.DriverName+"/skip-reclaim", retainedFromAnnotation)
	_, err := b.Kube.CoreV1().PersistentVolumes().Patch(ctx, name, types.MergePatchType, []byte(patch), metav1.PatchOptions{})
	must(t, err)
}

// upstreamModel is the upstream LINSTOR Affinity Controller's side of the
// switch, written for this test from its documented behaviour (DOMAIN.md
// section 3). It talks to LINSTOR through its REST API, as upstream does.
type upstreamModel struct {
	b  *testbed.Bed
	lc *lapi.Client
}

// upstreamFieldManager is the field manager the model applies PVs with.
const upstreamFieldManager = "linstor-affinity-controller"

func newUpstreamModel(t *testing.T, b *testbed.Bed) *upstreamModel {
	t.Helper()
	u, err := url.Parse(b.Sim.URL())
	must(t, err)
	lc, err := lapi.NewClient(lapi.BaseURL(u), lapi.Log(nil))
	must(t, err)
	return &upstreamModel{b: b, lc: lc}
}

// interruptedReplace runs upstream's replace of pv with the new affinity
// up to and including the step after, then stops as a killed controller
// would. legacy saves the state on the resource definition, as old upstream
// versions did.
func (u *upstreamModel) interruptedReplace(ctx context.Context, t *testing.T, pv *corev1.PersistentVolume, affinity *corev1.VolumeNodeAffinity, legacy bool, after string) {
	t.Helper()
	// The replacement: the fields upstream carries over, the new affinity.
	spec := corev1.PersistentVolumeSpec{
		Capacity:                      pv.Spec.Capacity,
		PersistentVolumeSource:        corev1.PersistentVolumeSource{CSI: pv.Spec.CSI},
		AccessModes:                   pv.Spec.AccessModes,
		ClaimRef:                      &corev1.ObjectReference{APIVersion: "v1", Kind: "PersistentVolumeClaim", Namespace: pv.Spec.ClaimRef.Namespace, Name: pv.Spec.ClaimRef.Name, UID: pv.Spec.ClaimRef.UID},
		PersistentVolumeReclaimPolicy: pv.Spec.PersistentVolumeReclaimPolicy,
		StorageClassName:              pv.Spec.StorageClassName,
		VolumeMode:                    pv.Spec.VolumeMode,
		NodeAffinity:                  affinity,
	}
	specJSON, err := json.Marshal(spec)
	must(t, err)
	ac := corev1ac.PersistentVolume(pv.Name).WithLabels(pv.Labels).WithAnnotations(pv.Annotations)
	ac.Spec = &corev1ac.PersistentVolumeSpecApplyConfiguration{}
	must(t, json.Unmarshal(specJSON, ac.Spec))
	saved, err := json.Marshal(ac)
	must(t, err)
	set := lapi.GenericPropsModify{OverrideProps: lapi.OverrideProps{savedPVKey: string(saved)}}
	if legacy {
		must(t, u.lc.ResourceDefinitions.Modify(ctx, pv.Name, set))
	} else {
		must(t, u.lc.ResourceDefinitions.ModifyVolumeDefinition(ctx, pv.Name, 0, lapi.VolumeDefinitionModify{GenericPropsModify: set}))
	}

	pvs := u.b.Kube.CoreV1().PersistentVolumes()
	retain := fmt.Sprintf(`{"spec":{"persistentVolumeReclaimPolicy":"Retain"},"metadata":{"annotations":{%q:"true"}}}`, testbed.DriverName+"/skip-reclaim")
	_, err = pvs.Patch(ctx, pv.Name, types.MergePatchType, []byte(retain), metav1.PatchOptions{})
	must(t, err)
	if after == "retain" {
		return
	}
	must(t, pvs.Delete(ctx, pv.Name, metav1.DeleteOptions{Preconditions: &metav1.Preconditions{UID: &pv.UID}}))
	if after == "delete" {
		return
	}
	u.stripFinalizersAndWait(ctx, t, pv.Name)
}

// start is upstream's start-up: every saved state in LINSTOR is finished,
// on volume definitions and (older versions) resource definitions. It
// returns the PVs whose saved state it finished.
func (u *upstreamModel) start(ctx context.Context, t *testing.T) []string {
	t.Helper()
	rds, err := u.lc.ResourceDefinitions.GetAll(ctx, lapi.RDGetAllRequest{WithVolumeDefinitions: true})
	must(t, err)
	var finished []string
	for _, rd := range rds {
		if raw := rd.Props[savedPVKey]; raw != "" {
			finished = append(finished, u.finish(ctx, t, raw))
			must(t, u.lc.ResourceDefinitions.Modify(ctx, rd.Name, lapi.GenericPropsModify{DeleteProps: lapi.DeleteProps{savedPVKey}}))
		}
		for _, vd := range rd.VolumeDefinitions {
			if raw := vd.Props[savedPVKey]; raw != "" {
				finished = append(finished, u.finish(ctx, t, raw))
				must(t, u.lc.ResourceDefinitions.ModifyVolumeDefinition(ctx, rd.Name, int(*vd.VolumeNumber),
					lapi.VolumeDefinitionModify{GenericPropsModify: lapi.GenericPropsModify{DeleteProps: lapi.DeleteProps{savedPVKey}}}))
			}
		}
	}
	return finished
}

// finish makes sure the saved PV exists: created (server-side apply) when
// there is no live PV, left alone when a healthy one lives. It returns the
// PV's name.
func (u *upstreamModel) finish(ctx context.Context, t *testing.T, raw string) string {
	t.Helper()
	var ac corev1ac.PersistentVolumeApplyConfiguration
	must(t, json.Unmarshal([]byte(raw), &ac))
	name := *ac.Name
	live, err := u.b.Kube.CoreV1().PersistentVolumes().Get(ctx, name, metav1.GetOptions{})
	switch {
	case apierrors.IsNotFound(err):
	case err != nil:
		t.Fatal(err)
	case live.DeletionTimestamp != nil:
		u.stripFinalizersAndWait(ctx, t, name)
	default:
		return name // live and healthy: only the property goes
	}
	_, err = u.b.Kube.CoreV1().PersistentVolumes().Apply(ctx, &ac, metav1.ApplyOptions{FieldManager: upstreamFieldManager, Force: true})
	must(t, err)
	return name
}

func (u *upstreamModel) stripFinalizersAndWait(ctx context.Context, t *testing.T, name string) {
	t.Helper()
	pvs := u.b.Kube.CoreV1().PersistentVolumes()
	_, err := pvs.Patch(ctx, name, types.MergePatchType, []byte(`{"metadata":{"finalizers":null}}`), metav1.PatchOptions{})
	if err != nil && !apierrors.IsNotFound(err) {
		t.Fatal(err)
	}
	wctx, cancel := within(ctx)
	defer cancel()
	must(t, testbed.Poll(wctx, "PV "+name+" gone", func(ctx context.Context) (bool, string) {
		_, err := pvs.Get(ctx, name, metav1.GetOptions{})
		return apierrors.IsNotFound(err), fmt.Sprintf("get: %v", err)
	}))
}
