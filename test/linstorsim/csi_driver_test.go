package linstorsim

import (
	"bytes"
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/container-storage-interface/spec/lib/go/csi"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"
)

// The real LINSTOR CSI driver v1.6.4, run as a separate process against the
// simulator over HTTPS with a client certificate, must provision, report,
// attach and delete volumes with sane results.

// linstorCSIBinary finds bin/linstor-csi at the module root.
func linstorCSIBinary(t *testing.T) string {
	t.Helper()
	dir, err := os.Getwd()
	must(t, err)
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			break
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			t.Fatal("module root (go.mod) not found")
		}
		dir = parent
	}
	bin := filepath.Join(dir, "bin", "linstor-csi")
	if _, err := os.Stat(bin); err != nil {
		t.Skipf("%s is missing: build it with hack/build-tools.sh (LINSTOR CSI v1.6.4 into bin/) to run this test", bin)
	}
	return bin
}

// syncBuffer collects the driver's log for failure reports.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// startDriver runs the CSI controller against s and returns a connection to
// its socket.
func startDriver(t *testing.T, s *Sim, bin string) *grpc.ClientConn {
	t.Helper()
	dir, err := os.MkdirTemp("", "lcsi")
	must(t, err)
	t.Cleanup(func() { _ = os.RemoveAll(dir) })
	sock := filepath.Join(dir, "csi.sock")
	certPEM, keyPEM, err := s.IssueClientCert("linstor-csi")
	must(t, err)

	cmd := exec.Command(bin,
		"--csi-endpoint=unix://"+sock,
		"--linstor-endpoint="+s.URL(),
		"--property-namespace="+s.PropertyNamespace(),
		"--log-level=debug",
		// Refresh LINSTOR views on every call so changes made through the
		// simulator's controls show at once.
		"--node-cache-timeout=1ms",
		"--resource-cache-timeout=1ms",
	)
	// The driver's golinstor reads the TLS material as PEM from the
	// environment, as Piraeus passes it from a Secret.
	cmd.Env = []string{
		"PATH=" + os.Getenv("PATH"),
		"LS_ROOT_CA=" + string(s.CACertPEM()),
		"LS_USER_CERTIFICATE=" + string(certPEM),
		"LS_USER_KEY=" + string(keyPEM),
	}
	logs := &syncBuffer{}
	cmd.Stdout, cmd.Stderr = logs, logs
	must(t, cmd.Start())
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
		if t.Failed() || os.Getenv("LINSTORSIM_DRIVER_LOG") != "" {
			t.Logf("linstor-csi log:\n%s", logs.String())
		}
	})

	deadline := time.Now().Add(20 * time.Second)
	for {
		if _, err := os.Stat(sock); err == nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("driver socket %s did not appear; log:\n%s", sock, logs.String())
		}
		time.Sleep(50 * time.Millisecond)
	}
	conn, err := grpc.NewClient("unix://"+sock, grpc.WithTransportCredentials(insecure.NewCredentials()))
	must(t, err)
	t.Cleanup(func() { _ = conn.Close() })
	return conn
}

func hostTopology(nodes ...string) []*csi.Topology {
	var out []*csi.Topology
	for _, n := range nodes {
		out = append(out, &csi.Topology{Segments: map[string]string{"linbit.com/hostname": n}})
	}
	return out
}

func topologyHosts(topos []*csi.Topology) []string {
	var out []string
	for _, tp := range topos {
		out = append(out, tp.GetSegments()["linbit.com/hostname"])
	}
	slices.Sort(out)
	return out
}

// volumeCondition reads the volume condition LINSTOR CSI v1.6.4 (CSI spec
// 1.10) sends as field 2 of the volume status. CSI spec 1.13 removed that
// alpha field, so with its Go types it only survives as unknown bytes.
func volumeCondition(status proto.Message) (abnormal bool, message string, found bool) {
	b := status.ProtoReflect().GetUnknown()
	for len(b) > 0 {
		num, typ, n := protowire.ConsumeTag(b)
		if n < 0 {
			return
		}
		b = b[n:]
		if num == 2 && typ == protowire.BytesType {
			inner, m := protowire.ConsumeBytes(b)
			if m < 0 {
				return
			}
			found = true
			for len(inner) > 0 {
				f, ft, k := protowire.ConsumeTag(inner)
				if k < 0 {
					return
				}
				inner = inner[k:]
				switch {
				case f == 1 && ft == protowire.VarintType:
					v, k := protowire.ConsumeVarint(inner)
					abnormal, inner = v != 0, inner[max(k, 0):]
				case f == 2 && ft == protowire.BytesType:
					v, k := protowire.ConsumeBytes(inner)
					message, inner = string(v), inner[max(k, 0):]
				default:
					inner = inner[max(protowire.ConsumeFieldValue(f, ft, inner), 0):]
				}
			}
		}
		n = protowire.ConsumeFieldValue(num, typ, b)
		if n < 0 {
			return
		}
		b = b[n:]
	}
	return
}

func TestLinstorCSIDriverAgainstSimulator(t *testing.T) {
	if testing.Short() {
		t.Skip("runs the LINSTOR CSI driver: skipped with -short")
	}
	bin := linstorCSIBinary(t)
	s, _ := startSim(t, Options{RequireClientCert: true})
	threeNodes(t, s)
	must(t, s.AddNode("d", nil)) // diskless-only satellite
	conn := startDriver(t, s, bin)
	ids := csi.NewIdentityClient(conn)
	ctrl := csi.NewControllerClient(conn)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()

	info, err := ids.GetPluginInfo(ctx, &csi.GetPluginInfoRequest{})
	must(t, err)
	if info.GetName() != "linstor.csi.linbit.com" {
		t.Errorf("driver name = %q", info.GetName())
	}
	_, err = ids.Probe(ctx, &csi.ProbeRequest{})
	must(t, err)

	const gib = int64(1) << 30
	params := map[string]string{
		"linstor.csi.linbit.com/storagePool":             "thin",
		"linstor.csi.linbit.com/placementCount":          "2",
		"linstor.csi.linbit.com/allowRemoteVolumeAccess": "false",
	}
	capacity := func(node string) int64 {
		t.Helper()
		resp, err := ctrl.GetCapacity(ctx, &csi.GetCapacityRequest{Parameters: params, AccessibleTopology: hostTopology(node)[0]})
		must(t, err)
		return resp.GetAvailableCapacity()
	}
	if got := capacity("a"); got != 100*gib {
		t.Errorf("capacity on a = %d, want %d", got, 100*gib)
	}
	if got := capacity("d"); got != 0 {
		t.Errorf("capacity on diskless d = %d, want 0", got)
	}

	caps := []*csi.VolumeCapability{{
		AccessType: &csi.VolumeCapability_Mount{Mount: &csi.VolumeCapability_MountVolume{FsType: "ext4"}},
		AccessMode: &csi.VolumeCapability_AccessMode{Mode: csi.VolumeCapability_AccessMode_SINGLE_NODE_WRITER},
	}}
	createReq := &csi.CreateVolumeRequest{
		Name:               "pvc-3a5d1c2e-0000-4000-8000-000000000001",
		CapacityRange:      &csi.CapacityRange{RequiredBytes: gib},
		VolumeCapabilities: caps,
		Parameters:         params,
		AccessibilityRequirements: &csi.TopologyRequirement{
			Requisite: hostTopology("a", "b", "c"),
			Preferred: hostTopology("b"),
		},
	}
	created, err := ctrl.CreateVolume(ctx, createReq)
	must(t, err)
	vol := created.GetVolume()
	id := vol.GetVolumeId()
	if id != createReq.Name || vol.GetCapacityBytes() != gib {
		t.Fatalf("created %q with %d bytes", id, vol.GetCapacityBytes())
	}
	// The preferred node b first, then the roomiest requisite node, a.
	placed, err := s.DiskfulNodes(id)
	must(t, err)
	if !equalStrings(placed, []string{"a", "b"}) {
		t.Fatalf("replicas on %v, want [a b]", placed)
	}
	if got := topologyHosts(vol.GetAccessibleTopology()); !equalStrings(got, placed) {
		t.Errorf("accessible topology %v, want the diskful nodes %v", got, placed)
	}
	for _, tp := range vol.GetAccessibleTopology() {
		if len(tp.GetSegments()) != 1 {
			t.Errorf("local-only topology segment %v has more than the hostname", tp.GetSegments())
		}
	}
	rdProps, err := s.RDProps(id)
	must(t, err)
	if !strings.HasPrefix(rdProps["Aux/csi-provisioning-completed-by"], "linstor-csi/") || rdProps["FileSystem/Type"] != "ext4" {
		t.Errorf("RD props set by the driver = %v", rdProps)
	}
	if got := capacity("a"); got != 99*gib {
		t.Errorf("capacity on a after create = %d, want %d", got, 99*gib)
	}

	// Creating again is idempotent.
	again, err := ctrl.CreateVolume(ctx, createReq)
	must(t, err)
	if again.GetVolume().GetVolumeId() != id || !equalStrings(topologyHosts(again.GetVolume().GetAccessibleTopology()), placed) {
		t.Errorf("second create = %v", again.GetVolume())
	}

	got, err := ctrl.ControllerGetVolume(ctx, &csi.ControllerGetVolumeRequest{VolumeId: id})
	must(t, err)
	abnormal, msg, found := volumeCondition(got.GetStatus())
	if !equalStrings(got.GetStatus().GetPublishedNodeIds(), []string{"a", "b"}) || !found || abnormal {
		t.Errorf("ControllerGetVolume = %v, condition found=%v abnormal=%v %q", got, found, abnormal, msg)
	}
	must(t, s.SetReplicaHealthy(id, "b", false))
	got, err = ctrl.ControllerGetVolume(ctx, &csi.ControllerGetVolumeRequest{VolumeId: id})
	must(t, err)
	if abnormal, msg, _ := volumeCondition(got.GetStatus()); !abnormal || !strings.Contains(msg, "b") {
		t.Errorf("broken replica on b: abnormal=%v %q", abnormal, msg)
	}
	must(t, s.SetReplicaHealthy(id, "b", true))

	// Data moves: the driver sees the new placement.
	must(t, s.MoveReplica(id, "a", "c"))
	got, err = ctrl.ControllerGetVolume(ctx, &csi.ControllerGetVolumeRequest{VolumeId: id})
	must(t, err)
	if !equalStrings(got.GetStatus().GetPublishedNodeIds(), []string{"b", "c"}) {
		t.Errorf("after move: published %v", got.GetStatus().GetPublishedNodeIds())
	}

	// A remote-access volume: no topology constraint at all.
	open, err := ctrl.CreateVolume(ctx, &csi.CreateVolumeRequest{
		Name: "pvc-3a5d1c2e-0000-4000-8000-000000000002", CapacityRange: &csi.CapacityRange{RequiredBytes: gib},
		VolumeCapabilities: caps, Parameters: map[string]string{"linstor.csi.linbit.com/storagePool": "thin", "linstor.csi.linbit.com/placementCount": "1"},
		AccessibilityRequirements: &csi.TopologyRequirement{Requisite: hostTopology("d"), Preferred: hostTopology("d")},
	})
	must(t, err)
	if len(open.GetVolume().GetAccessibleTopology()) != 0 {
		t.Errorf("remote-access volume topology = %v, want none", open.GetVolume().GetAccessibleTopology())
	}

	list, err := ctrl.ListVolumes(ctx, &csi.ListVolumesRequest{})
	must(t, err)
	if len(list.GetEntries()) != 2 || list.GetEntries()[0].GetVolume().GetVolumeId() != id {
		t.Errorf("ListVolumes = %v", list.GetEntries())
	}

	// Attach to the diskless node and detach again.
	pub, err := ctrl.ControllerPublishVolume(ctx, &csi.ControllerPublishVolumeRequest{VolumeId: id, NodeId: "d", VolumeCapability: caps[0]})
	must(t, err)
	if !strings.HasPrefix(pub.GetPublishContext()["linstor.csi.linbit.com/device-path"], "/dev/drbd") {
		t.Errorf("publish context = %v", pub.GetPublishContext())
	}
	reps, err := s.Replicas(id)
	must(t, err)
	if len(reps) != 3 || reps[2].Node != "d" || reps[2].Diskful {
		t.Errorf("after publish replicas = %+v", reps)
	}
	_, err = ctrl.ControllerUnpublishVolume(ctx, &csi.ControllerUnpublishVolumeRequest{VolumeId: id, NodeId: "d"})
	must(t, err)
	reps, err = s.Replicas(id)
	must(t, err)
	if len(reps) != 2 {
		t.Errorf("after unpublish replicas = %+v", reps)
	}

	s.ResetDeletions()
	_, err = ctrl.DeleteVolume(ctx, &csi.DeleteVolumeRequest{VolumeId: id})
	must(t, err)
	if s.VolumeExists(id) {
		t.Error("volume still exists after DeleteVolume")
	}
	kinds := map[string]int{}
	for _, d := range s.VolumeDeletions() {
		kinds[d.Kind]++
		if d.Via != ViaAPI || !strings.HasPrefix(d.UserAgent, "linstor-csi/") {
			t.Errorf("deletion %+v not attributed to the driver", d)
		}
	}
	if kinds[DeletedResourceDefinition] != 1 || kinds[DeletedVolumeDefinition] != 1 {
		t.Errorf("volume deletions = %v", kinds)
	}
	_, err = ctrl.ControllerGetVolume(ctx, &csi.ControllerGetVolumeRequest{VolumeId: id})
	if status.Code(err) != codes.NotFound {
		t.Errorf("ControllerGetVolume of a deleted volume: %v, want NotFound", err)
	}
	_, err = ctrl.DeleteVolume(ctx, &csi.DeleteVolumeRequest{VolumeId: id})
	must(t, err)
	t.Logf("LINSTOR requests by the driver: %v", s.RequestCounts())
	if n := s.RequestCounts()["GET /v1/resource-definitions/{rd}"]; n == 0 {
		t.Error("driver traffic was not counted")
	}
}
