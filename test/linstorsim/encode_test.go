package linstorsim

import (
	"testing"
	"time"

	lapiconst "github.com/LINBIT/golinstor"
	"github.com/LINBIT/golinstor/client"
)

// TestFastEncoderWritesWhatJSONMarshalWrites holds the hand-written encoder
// to the bytes encoding/json produces for the golinstor types, across
// replica kinds, health, deletion, props needing escapes and several
// volumes.
func TestFastEncoderWritesWhatJSONMarshalWrites(t *testing.T) {
	s := New(Options{})
	for _, n := range []string{"a", "b", "c", "d"} {
		must(t, s.AddNode(n, nil, StoragePool{Name: "thin"}))
	}
	must(t, s.CreateVolume(VolumeSpec{
		Name: "pvc-1", SizesKiB: []uint64{1024, 1 << 30},
		Diskful: []string{"a"}, Diskless: []string{"b"}, TieBreaker: []string{"c"},
		Props: map[string]string{
			"Aux/affinity-updater-saved-pv": `{"spec":{"x":"<a&b>"},"é":"\n\t\u2028"}`,
			"Aux/z":                         "", "Aux/a": "1",
		},
		VDProps: map[int32]map[string]string{1: {"Aux/q": `"quoted"`}},
	}))
	must(t, s.CreateVolume(VolumeSpec{Name: "pvc-2", Diskful: []string{"a", "d"}}))
	must(t, s.SetReplicaHealthy("pvc-2", "a", false))
	must(t, s.SetReplicaInUse("pvc-2", "d", true))
	must(t, s.SetReplicaFlags("pvc-1", "a", lapiconst.FlagDelete, "weird\"flag"))
	must(t, s.st.modifyVolumeProps("pvc-1", "b", 1, propsModify(map[string]string{"Aux/v": "x"})))
	must(t, s.CreateVolume(VolumeSpec{Name: "empty", SizesKiB: []uint64{1}}))
	must(t, s.st.deleteVD("empty", 0, simActor))
	// A replica in its deletion window (realistic mode's).
	must(t, s.CreateVolume(VolumeSpec{Name: "pvc-3", Diskful: []string{"a", "b"}}))
	s.st.deleteWindow = time.Hour
	must(t, s.DeleteReplica("pvc-3", "b"))

	for _, rd := range s.st.sortedRDs() {
		if got, want := string(encodeRD(rd, false)), string(mustJSON(rdToAPI(rd))); got != want {
			t.Errorf("%s plain:\n got %s\nwant %s", rd.name, got, want)
		}
		if got, want := string(encodeRD(rd, true)), string(mustJSON(rdWithVDToAPI(rd))); got != want {
			t.Errorf("%s with VDs:\n got %s\nwant %s", rd.name, got, want)
		}
		for i := range rd.res {
			if got, want := string(encodeResource(rd, &rd.res[i])), string(mustJSON(resToAPI(rd, &rd.res[i]))); got != want {
				t.Errorf("%s on %s:\n got %s\nwant %s", rd.name, rd.res[i].node, got, want)
			}
		}
	}
}

func propsModify(set map[string]string) client.GenericPropsModify {
	return client.GenericPropsModify{OverrideProps: set}
}
