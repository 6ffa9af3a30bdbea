package faults

import (
	"context"
	"encoding/json"
	"fmt"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	storagev1 "k8s.io/api/storage/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/utils/ptr"

	"github.com/piraeusdatastore/linstor-affinity-sidecar/test/linstorsim"
	"github.com/piraeusdatastore/linstor-affinity-sidecar/test/testbed"
)

// slowStateWrites makes LINSTOR answer property writes (the replace's save
// and clear of its state) slowly, so a case finds repairs between steps.
func slowStateWrites(t *testing.T, b *testbed.Bed, d time.Duration) {
	t.Helper()
	_, err := b.Sim.InjectFault(linstorsim.Fault{Kind: linstorsim.FaultDelay, Method: "PUT", PathPrefix: pathRDs + "/", Delay: d})
	must(t, err)
}

// waitActing waits until the sidecar logged "Acting on PV" for pv (for any
// PV when empty) after the follower's position.
func waitActing(ctx context.Context, t *testing.T, log *testbed.LogFollower, pv string) {
	t.Helper()
	wctx, cancel := within(ctx)
	defer cancel()
	must(t, testbed.Poll(wctx, "sidecar acting on PV "+pv, func(context.Context) (bool, string) {
		lines, err := log.Next()
		if err != nil {
			return false, err.Error()
		}
		for _, l := range lines {
			if l.Msg == "Acting on PV" && (pv == "" || l.Fields["pv"] == pv) {
				return true, ""
			}
		}
		return false, "no such line yet"
	}))
}

func follow(t *testing.T, b *testbed.Bed) *testbed.LogFollower {
	t.Helper()
	f := testbed.NewLogFollower(b.SidecarLogPath())
	_, err := f.Next() // only what comes from now on
	must(t, err)
	return f
}

func mergePatchPV(ctx context.Context, t *testing.T, b *testbed.Bed, name string, patch map[string]any) {
	t.Helper()
	body, err := json.Marshal(patch)
	must(t, err)
	_, err = b.Kube.CoreV1().PersistentVolumes().Patch(ctx, name, types.MergePatchType, body, metav1.PatchOptions{})
	must(t, err)
}

// TestKubernetesFaults: the API server restarts in the middle of repairs;
// a user edits a PV while it is being repaired (a resourceVersion conflict
// for the replace); a claim is deleted during the repair of its PV; a user
// sets a PV's reclaim policy to Retain during its repair. Each time nothing
// is lost, the user's edits stand, and the repairs finish. Fast subset: the
// restart and the reclaim policy change; full: every case, three times.
func TestKubernetesFaults(t *testing.T) {
	began := time.Now()
	b, _ := startBed(t, testbed.Options{})
	ctx := testContext(t, 60*time.Minute)
	w := &world{b: b}
	createClasses(ctx, t, b)
	retain := corev1.PersistentVolumeReclaimRetain
	mode := storagev1.VolumeBindingWaitForFirstConsumer
	_, err := b.Kube.StorageV1().StorageClasses().Create(ctx, &storagev1.StorageClass{
		ObjectMeta:  metav1.ObjectMeta{Name: "strict-retain"},
		Provisioner: testbed.DriverName,
		Parameters: map[string]string{
			"linstor.csi.linbit.com/storagePool":             testbed.DefaultPool,
			"linstor.csi.linbit.com/placementCount":          "1",
			"linstor.csi.linbit.com/allowRemoteVolumeAccess": testbed.PolicyStrict,
		},
		ReclaimPolicy: &retain, VolumeBindingMode: &mode, AllowVolumeExpansion: ptr.To(true),
	}, metav1.CreateOptions{})
	must(t, err)
	vols := provision(ctx, t, w, "kf", classStrict, "n1", 3)
	vols = append(vols, provision(ctx, t, w, "kf2", classStrict2, "n1", 1)...)
	step(t, began, "%d volumes provisioned", len(vols))

	cases, repaired, lost, injected := 0, 0, 0, 0
	defer func() { totals.add(cases, 0, repaired, lost, injected) }()
	run := func(name string, fast bool, f func(t *testing.T) int) {
		if !full() && !fast {
			return
		}
		for round := range rounds(1, 3) {
			if t.Failed() {
				return
			}
			t.Run(fmt.Sprintf("%s/%d", name, round+1), func(t *testing.T) {
				moved := f(t)
				b.Sim.ClearFaults()
				lost += w.assertSettled(ctx, t)
				cases++
				injected++
				if !t.Failed() {
					repaired += moved
				}
				step(t, began, "%s: settled, %d PVs repaired", name, moved)
			})
		}
	}

	run("apiserver-restart", true, func(t *testing.T) int {
		slowStateWrites(t, b, 500*time.Millisecond)
		log := follow(t, b)
		moved := w.move(t, vols)
		waitActing(ctx, t, log, "")
		api := b.Cluster.Process("kube-apiserver")
		if api == nil {
			t.Fatal("no kube-apiserver process")
		}
		must(t, api.Restart(ctx))
		wctx, cancel := within(ctx)
		defer cancel()
		must(t, testbed.Poll(wctx, "API server back", func(ctx context.Context) (bool, string) {
			_, err := b.Kube.CoreV1().Namespaces().Get(ctx, "default", metav1.GetOptions{})
			if err != nil {
				return false, err.Error()
			}
			return true, ""
		}))
		step(t, began, "kube-apiserver restarted during the repairs")
		return moved
	})

	run("conflicting-edit", true, func(t *testing.T) int {
		slowStateWrites(t, b, 2*time.Second)
		v := vols[0]
		log := follow(t, b)
		moved := w.move(t, []*vol{v})
		waitActing(ctx, t, log, v.pv)
		label := fmt.Sprintf("edit-%d", time.Now().UnixNano())
		mergePatchPV(ctx, t, b, v.pv, map[string]any{"metadata": map[string]any{"labels": map[string]any{"faults.test/user-edit": label}}})
		b.Sim.ClearFaults()
		wctx, cancel := within(ctx)
		defer cancel()
		pv, err := b.WaitPVAffinity(wctx, v.pv, w.want(t, v)...)
		must(t, err)
		if got := pv.Labels["faults.test/user-edit"]; got != label {
			t.Errorf("PV %s lost the user's edit made during its repair: label %q, want %q", v.pv, got, label)
		}
		return moved
	})

	run("claim-deleted", true, func(t *testing.T) int {
		vs := provision(ctx, t, w, fmt.Sprintf("kfr%d", time.Now().UnixNano()%100000), "strict-retain", "n1", 1)
		v := vs[0]
		v.reclaim = corev1.PersistentVolumeReclaimRetain
		slowStateWrites(t, b, 2*time.Second)
		log := follow(t, b)
		w.move(t, []*vol{v})
		waitActing(ctx, t, log, v.pv)
		must(t, b.Kube.CoreV1().PersistentVolumeClaims(testbed.Namespace).Delete(ctx, v.claim, metav1.DeleteOptions{}))
		v.released = true
		b.Sim.ClearFaults()
		wctx, cancel := within(ctx)
		defer cancel()
		must(t, testbed.Poll(wctx, "PV "+v.pv+" Released and settled", func(ctx context.Context) (bool, string) {
			pv, err := b.Kube.CoreV1().PersistentVolumes().Get(ctx, v.pv, metav1.GetOptions{})
			if err != nil {
				return false, err.Error()
			}
			return pv.Status.Phase == corev1.VolumeReleased, "phase " + string(pv.Status.Phase)
		}))
		return 0
	})

	run("reclaim-policy-changed", true, func(t *testing.T) int {
		slowStateWrites(t, b, 2*time.Second)
		v := vols[1]
		log := follow(t, b)
		moved := w.move(t, []*vol{v})
		waitActing(ctx, t, log, v.pv)
		mergePatchPV(ctx, t, b, v.pv, map[string]any{"spec": map[string]any{"persistentVolumeReclaimPolicy": corev1.PersistentVolumeReclaimRetain}})
		v.reclaim = corev1.PersistentVolumeReclaimRetain
		return moved
	})
}
