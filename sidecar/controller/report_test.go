package controller

import (
	"bytes"
	"context"
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/piraeusdatastore/linstor-affinity-sidecar/sidecar/decide"
	"github.com/piraeusdatastore/linstor-affinity-sidecar/sidecar/internal/fakebed"
	"github.com/piraeusdatastore/linstor-affinity-sidecar/sidecar/internal/fixture"
	corev1 "k8s.io/api/core/v1"
	storagev1 "k8s.io/api/storage/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

type stubInspector struct{ calls int }

func (s *stubInspector) VolumeCondition(_ context.Context, id string) (string, error) {
	s.calls++
	return "ok", nil
}

func (s *stubInspector) Capacity(_ context.Context, params, seg map[string]string) (int64, error) {
	s.calls++
	if params["linstor.csi.linbit.com/storagePool"] != "pool1" {
		return 0, nil
	}
	return 5 << 30, nil
}

func TestCheckReportShowsDriftAndChangesNothing(t *testing.T) {
	b := fakebed.New(t)
	drifted := b.AddVolume("vol-a", 1, []string{"n2"}, []string{"n1"})
	inSync := b.AddVolume("vol-b", 1, []string{"n3"}, []string{"n3"})
	list, err := b.Kube.CoreV1().PersistentVolumes().List(context.Background(), metav1.ListOptions{})
	b.Must(err)
	pvs := []*corev1.PersistentVolume{&list.Items[0], &list.Items[1]}
	v, err := b.Linstor.Fetch(context.Background())
	b.Must(err)
	scs := map[string]*storagev1.StorageClass{"strict": {Parameters: map[string]string{"linstor.csi.linbit.com/storagePool": "pool1"}}}
	cfg := decide.Config{DriverName: fixture.Driver, DefaultPolicy: decide.PolicyAnywhere}
	decisions, total := decide.DecideAll(pvs, func(pv *corev1.PersistentVolume) *storagev1.StorageClass { return scs[pv.Spec.StorageClassName] }, v, cfg, time.Now())
	if total != 2 || len(decisions) != 2 {
		t.Fatalf("decided %d of %d PVs", len(decisions), total)
	}
	insp := &stubInspector{}
	rep := BuildReport(context.Background(), fixture.Driver, decisions, scs, insp, time.Second, time.Now())
	if rep.Summary != (Summary{InSync: 1, Drifted: 1}) {
		t.Fatalf("summary %+v", rep.Summary)
	}
	var table bytes.Buffer
	b.Must(rep.WriteTable(&table))
	for _, want := range []string{drifted[0].Name, "drifted", "[{linbit.com/hostname=n1}]", "[{linbit.com/hostname=n2}]", "linbit.com/hostname=n2:5GiB", inSync[0].Name, "in-sync", "1 would change"} {
		if !strings.Contains(table.String(), want) {
			t.Errorf("table lacks %q:\n%s", want, table.String())
		}
	}
	var js bytes.Buffer
	b.Must(rep.WriteJSON(&js))
	var back Report
	b.Must(json.Unmarshal(js.Bytes(), &back))
	if len(back.PVs) != 2 || back.PVs[0].Driver != "ok" || back.PVs[0].Capacity[0].Available != 5<<30 {
		t.Fatalf("JSON round trip lost data: %s", js.String())
	}
	if insp.calls != 4 {
		t.Errorf("%d driver calls, want one condition and one capacity per PV", insp.calls)
	}
	// Read-only: the drifted PV is as it was, and nothing was saved in LINSTOR.
	if got := b.AffinityOf(drifted[0].Name); got != "[{linbit.com/hostname=n1}]" {
		t.Fatalf("check changed a PV: %s", got)
	}
	if len(b.SavedStates()) != 0 {
		t.Fatal("check wrote saved state")
	}
}
