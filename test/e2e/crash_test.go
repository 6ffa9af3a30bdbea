package e2e

import (
	"context"
	"fmt"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"

	admissionv1 "k8s.io/api/admissionregistration/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"

	"github.com/piraeusdatastore/linstor-affinity-sidecar/test/linstorsim"
	"github.com/piraeusdatastore/linstor-affinity-sidecar/test/testbed"
)

// The sidecar is killed with SIGKILL in the middle of repairing many PVs
// and started again (with leader election, as deployed, so the new process
// first waits for the dead one's lease to expire). Whatever step each
// repair was in, afterwards every PV exists with the right affinity, every
// claim is Bound to the same PV name, no saved state is left in LINSTOR and
// no volume was deleted.
//
// To be sure the hardest case is among them, the replacements of some PVs
// are held back by an admission policy, so those PVs are deleted and exist
// only as saved state in LINSTOR when the kill comes.
func TestSidecarKilledMidRepairLosesNothing(t *testing.T) {
	began := time.Now()
	b := startBed(t, testbed.Options{LeaderElection: true, SidecarArgs: []string{"--workers=2"}})
	ctx := testContext(t, 10*time.Minute)
	createStorageClasses(ctx, t, b)

	const volumes, held = 30, 4
	var claims []testbed.Claim
	for i := range volumes {
		claims = append(claims, testbed.Claim{Name: fmt.Sprintf("crash-%02d", i), StorageClass: "strict", Node: "n1"})
	}
	wctx, cancel := within(ctx)
	pvs, err := b.ProvisionVolumes(wctx, claims...)
	cancel()
	must(t, err)
	claimUIDs := map[string]string{}
	var names []string
	for _, c := range claims {
		pv := pvs[c.Name]
		if !testbed.AffinityEquals(pv.Spec.NodeAffinity, testbed.Hosts("n1")) {
			t.Fatalf("PV %s provisioned with affinity %s, want n1", pv.Name, testbed.DescribeAffinity(pv.Spec.NodeAffinity))
		}
		claimUIDs[c.Name] = string(pv.Spec.ClaimRef.UID)
		names = append(names, pv.Name)
	}
	// The sidecar works in name order: hold back the first ones.
	sort.Strings(names)
	heldBack := names[:held]
	step(t, began, "%d volumes provisioned on n1; holding back re-creation of %v", volumes, heldBack)
	holdBackPVCreation(ctx, t, b, heldBack)

	// LINSTOR answers property writes (saving and clearing state) slowly,
	// so the kill finds repairs between their steps.
	_, err = b.Sim.InjectFault(linstorsim.Fault{Kind: linstorsim.FaultDelay, Method: "PUT", PathPrefix: "/v1/resource-definitions/", Delay: 300 * time.Millisecond})
	must(t, err)
	log := testbed.NewLogFollower(b.SidecarLogPath())
	_, err = log.Next() // only what comes from now on
	must(t, err)

	moves, err := b.Sim.EvacuateNode("n1")
	must(t, err)
	if len(moves) != volumes {
		t.Fatalf("evacuating n1 moved %d replicas, want %d", len(moves), volumes)
	}
	step(t, began, "n1 evacuated: %d replicas moved", len(moves))

	acting := 0
	wctx, cancel = within(ctx)
	err = testbed.Poll(wctx, "held-back PVs deleted with saved state, repairs under way", func(ctx context.Context) (bool, string) {
		lines, err := log.Next()
		if err != nil {
			return false, err.Error()
		}
		for _, l := range lines {
			if l.Msg == "Acting on PV" {
				acting++
			}
		}
		for _, name := range heldBack {
			if _, err := b.Kube.CoreV1().PersistentVolumes().Get(ctx, name, metav1.GetOptions{}); err == nil {
				return false, name + " still exists"
			}
			if _, ok := vdProps(t, b, name)[savedPVKey]; !ok {
				return false, name + " gone, but no saved state yet"
			}
		}
		// Past the held-back ones, a few more repairs have started.
		return acting >= held+5, fmt.Sprintf("%d Acting on PV lines", acting)
	})
	cancel()
	must(t, err)
	must(t, b.Sidecar.Kill())
	step(t, began, "sidecar killed with SIGKILL after %d \"Acting on PV\" lines", acting)

	missing, saved, retained := 0, 0, 0
	for _, name := range names {
		pv, err := b.Kube.CoreV1().PersistentVolumes().Get(ctx, name, metav1.GetOptions{})
		switch {
		case err != nil:
			missing++
		case pv.Spec.PersistentVolumeReclaimPolicy == corev1.PersistentVolumeReclaimRetain:
			retained++
		}
		if _, ok := vdProps(t, b, name)[savedPVKey]; ok {
			saved++
		}
	}
	step(t, began, "at the kill: %d PVs missing, %d set to Retain, %d saved states in LINSTOR", missing, retained, saved)
	if missing < held {
		t.Fatalf("only %d PVs missing at the kill, want at least the %d held back", missing, held)
	}

	releasePVCreation(ctx, t, b)
	b.Sim.ClearFaults()
	wctx, cancel = within(ctx)
	must(t, b.RestartSidecar(wctx))
	cancel()
	step(t, began, "sidecar restarted and leading")

	wctx, cancel = within(ctx)
	defer cancel()
	for _, c := range claims {
		name := pvs[c.Name].Name
		want := expected(t, b, name, "strict")
		pv, err := b.WaitPVAffinity(wctx, name, want...)
		must(t, err)
		pvc, err := b.WaitClaimBound(wctx, c.Name, name)
		must(t, err)
		if string(pvc.UID) != claimUIDs[c.Name] {
			t.Errorf("claim %s was recreated (UID %s, was %s)", c.Name, pvc.UID, claimUIDs[c.Name])
		}
		if ref := pv.Spec.ClaimRef; ref == nil || ref.UID != pvc.UID {
			t.Errorf("PV %s claimRef %+v, want claim %s", name, ref, c.Name)
		}
		if pv.Spec.PersistentVolumeReclaimPolicy != corev1.PersistentVolumeReclaimDelete {
			t.Errorf("PV %s reclaim policy %s, want Delete as provisioned", name, pv.Spec.PersistentVolumeReclaimPolicy)
		}
		if v, ok := pv.Annotations[testbed.DriverName+"/skip-reclaim"]; ok {
			t.Errorf("PV %s keeps the replace's skip-reclaim annotation %q", name, v)
		}
	}
	step(t, began, "all %d PVs in sync and bound", volumes)

	// Settled: the sidecar has cleared every saved state before it calls
	// a cycle successful.
	must(t, b.WaitCycles(wctx, 2))
	pvList, err := b.Kube.CoreV1().PersistentVolumes().List(ctx, metav1.ListOptions{})
	must(t, err)
	if len(pvList.Items) != volumes {
		t.Errorf("%d PVs exist, want %d", len(pvList.Items), volumes)
	}
	for _, name := range names {
		assertNoSavedState(t, b, name, 1)
	}
	assertNoVolumeDeleted(t, b)

	// The held-back PVs came back from LINSTOR's saved state alone.
	recreated := map[string]bool{}
	lines, err := b.SidecarLog("Acting on PV")
	must(t, err)
	for _, l := range lines {
		if l.Fields["action"] == "recreate-from-saved-state" {
			recreated[l.Fields["pv"]] = true
		}
	}
	for _, name := range heldBack {
		if !recreated[name] {
			t.Errorf("PV %s was not recreated from saved state", name)
		}
	}
	restarts, err := b.SidecarLog("Starting")
	must(t, err)
	if len(restarts) != 2 {
		t.Errorf("sidecar log shows %d starts, want 2", len(restarts))
	}
}

// vdProps reads the properties of volume 0 of the resource definition that
// backs PV name (LINSTOR CSI names them alike).
func vdProps(t *testing.T, b *testbed.Bed, name string) map[string]string {
	t.Helper()
	props, err := b.Sim.VDProps(name, 0)
	must(t, err)
	return props
}

const holdPolicy = "e2e-hold-pv-creation"

// holdBackPVCreation makes the API server refuse the creation of the named
// PVs by the CSI controller's service account (a ValidatingAdmissionPolicy),
// and waits until the refusal is in force.
func holdBackPVCreation(ctx context.Context, t *testing.T, b *testbed.Bed, names []string) {
	t.Helper()
	quoted := make([]string, len(names))
	for i, n := range names {
		quoted[i] = strconv.Quote(n)
	}
	account := "system:serviceaccount:" + testbed.ControllerNamespace + ":" + testbed.ControllerServiceAccount
	fail := admissionv1.Fail
	_, err := b.Kube.AdmissionregistrationV1().ValidatingAdmissionPolicies().Create(ctx, &admissionv1.ValidatingAdmissionPolicy{
		ObjectMeta: metav1.ObjectMeta{Name: holdPolicy},
		Spec: admissionv1.ValidatingAdmissionPolicySpec{
			FailurePolicy: &fail,
			MatchConstraints: &admissionv1.MatchResources{ResourceRules: []admissionv1.NamedRuleWithOperations{{
				RuleWithOperations: admissionv1.RuleWithOperations{
					Operations: []admissionv1.OperationType{admissionv1.Create},
					Rule:       admissionv1.Rule{APIGroups: []string{""}, APIVersions: []string{"v1"}, Resources: []string{"persistentvolumes"}},
				},
			}}},
			Validations: []admissionv1.Validation{{
				Expression: fmt.Sprintf("request.userInfo.username != %q || !(object.metadata.name in [%s])", account, strings.Join(quoted, ", ")),
				Message:    "held back by the end-to-end test",
			}},
		},
	}, metav1.CreateOptions{})
	must(t, err)
	_, err = b.Kube.AdmissionregistrationV1().ValidatingAdmissionPolicyBindings().Create(ctx, &admissionv1.ValidatingAdmissionPolicyBinding{
		ObjectMeta: metav1.ObjectMeta{Name: holdPolicy},
		Spec: admissionv1.ValidatingAdmissionPolicyBindingSpec{
			PolicyName:        holdPolicy,
			ValidationActions: []admissionv1.ValidationAction{admissionv1.Deny},
		},
	}, metav1.CreateOptions{})
	must(t, err)

	// A dry-run create as the service account shows when it bites.
	cfg := b.Cluster.RESTConfig()
	cfg.Impersonate.UserName = account
	asController, err := kubernetes.NewForConfig(cfg)
	must(t, err)
	probe := getPV(ctx, t, b, names[0]).DeepCopy()
	probe.ResourceVersion, probe.UID = "", ""
	wctx, cancel := within(ctx)
	defer cancel()
	must(t, testbed.Poll(wctx, "admission policy in force", func(ctx context.Context) (bool, string) {
		_, err := asController.CoreV1().PersistentVolumes().Create(ctx, probe, metav1.CreateOptions{DryRun: []string{metav1.DryRunAll}})
		if err != nil && strings.Contains(err.Error(), "held back") {
			return true, ""
		}
		return false, fmt.Sprintf("dry-run create: %v", err)
	}))
}

// releasePVCreation lifts holdBackPVCreation.
func releasePVCreation(ctx context.Context, t *testing.T, b *testbed.Bed) {
	t.Helper()
	must(t, b.Kube.AdmissionregistrationV1().ValidatingAdmissionPolicyBindings().Delete(ctx, holdPolicy, metav1.DeleteOptions{}))
	must(t, b.Kube.AdmissionregistrationV1().ValidatingAdmissionPolicies().Delete(ctx, holdPolicy, metav1.DeleteOptions{}))
}
