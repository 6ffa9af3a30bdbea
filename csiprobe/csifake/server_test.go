package csifake_test

import (
	"context"
	"encoding/hex"
	"os"
	"slices"
	"testing"
	"time"

	"github.com/container-storage-interface/spec/lib/go/csi"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"

	"github.com/piraeusdatastore/linstor-affinity-sidecar/csiprobe/csifake"
)

// dial opens a plain gRPC client to the fake, independent of csiprobe, so
// the fake is checked against the wire and not against its main user.
func dial(t *testing.T, s *csifake.Server) *grpc.ClientConn {
	t.Helper()
	conn, err := grpc.NewClient(s.Address(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = conn.Close() })
	return conn
}

func testContext(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	t.Cleanup(cancel)
	return ctx
}

func TestDefaultsAnswerLikeLinstorCSI(t *testing.T) {
	s := csifake.Start(t, csifake.Config{})
	conn := dial(t, s)
	ctx := testContext(t)
	id, ctrl := csi.NewIdentityClient(conn), csi.NewControllerClient(conn)

	info, err := id.GetPluginInfo(ctx, &csi.GetPluginInfoRequest{})
	if err != nil || info.GetName() != csifake.DefaultDriverName || info.GetVendorVersion() != csifake.DefaultVendorVersion {
		t.Errorf("GetPluginInfo = %v, %v", info, err)
	}
	probe, err := id.Probe(ctx, &csi.ProbeRequest{})
	if err != nil || probe.GetReady() != nil {
		t.Errorf("Probe = %v, %v; want no ready field", probe, err)
	}
	pc, err := id.GetPluginCapabilities(ctx, &csi.GetPluginCapabilitiesRequest{})
	if err != nil {
		t.Fatal(err)
	}
	var pcaps []csi.PluginCapability_Service_Type
	for _, c := range pc.GetCapabilities() {
		pcaps = append(pcaps, c.GetService().GetType())
	}
	if !slices.Equal(pcaps, csifake.LinstorPluginCapabilities()) {
		t.Errorf("plugin capabilities = %v", pcaps)
	}
	cc, err := ctrl.ControllerGetCapabilities(ctx, &csi.ControllerGetCapabilitiesRequest{})
	if err != nil {
		t.Fatal(err)
	}
	var ccaps []csi.ControllerServiceCapability_RPC_Type
	for _, c := range cc.GetCapabilities() {
		ccaps = append(ccaps, c.GetRpc().GetType())
	}
	want := slices.Sorted(slices.Values(csifake.LinstorControllerCapabilities()))
	if !slices.Equal(ccaps, want) {
		t.Errorf("controller capabilities = %v, want %v", ccaps, want)
	}
	if !slices.Contains(ccaps, csifake.CapVolumeCondition) {
		t.Errorf("legacy VOLUME_CONDITION (11) missing from %v", ccaps)
	}
	if _, err := ctrl.ControllerGetVolume(ctx, &csi.ControllerGetVolumeRequest{VolumeId: "unknown"}); status.Code(err) != codes.NotFound {
		t.Errorf("unknown volume: err = %v, want NotFound", err)
	}
	capRsp, err := ctrl.GetCapacity(ctx, &csi.GetCapacityRequest{})
	if err != nil || capRsp.GetAvailableCapacity() != 0 {
		t.Errorf("GetCapacity = %v, %v; want 0", capRsp, err)
	}
}

func TestOtherMethodsAreUnimplemented(t *testing.T) {
	s := csifake.Start(t, csifake.Config{})
	conn := dial(t, s)
	ctx := testContext(t)
	_, err := csi.NewControllerClient(conn).CreateVolume(ctx, &csi.CreateVolumeRequest{Name: "x"})
	if status.Code(err) != codes.Unimplemented {
		t.Errorf("CreateVolume: err = %v, want Unimplemented", err)
	}
	_, err = csi.NewNodeClient(conn).NodeGetInfo(ctx, &csi.NodeGetInfoRequest{})
	if status.Code(err) != codes.Unimplemented {
		t.Errorf("NodeGetInfo: err = %v, want Unimplemented", err)
	}
}

// The condition must be byte for byte what CSI spec v1.10.0 bindings (used
// by LINSTOR CSI v1.6.4) produce for the same VolumeStatus; these hex
// strings were produced by them with deterministic marshalling.
func TestVolumeConditionMatchesOldSpecEncoding(t *testing.T) {
	tests := []struct {
		name   string
		volume csifake.Volume
		golden string
	}{
		{
			name: "abnormal",
			volume: csifake.Volume{
				PublishedNodeIDs: []string{"node-a"},
				Condition:        &csifake.Condition{Abnormal: true, Message: "Resource with issues on node(s): node-b"},
			},
			golden: "0a066e6f64652d61122b080112275265736f75726365207769746820697373756573206f6e206e6f64652873293a206e6f64652d62",
		},
		{
			name:   "healthy",
			volume: csifake.Volume{Condition: &csifake.Condition{Message: "Volume healthy"}},
			golden: "1210120e566f6c756d65206865616c746879",
		},
		{
			name:   "no condition",
			volume: csifake.Volume{PublishedNodeIDs: []string{"node-a"}},
			golden: "0a066e6f64652d61",
		},
	}
	s := csifake.Start(t, csifake.Config{})
	ctrl := csi.NewControllerClient(dial(t, s))
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s.SetVolume(tt.name, tt.volume)
			rsp, err := ctrl.ControllerGetVolume(testContext(t), &csi.ControllerGetVolumeRequest{VolumeId: tt.name})
			if err != nil {
				t.Fatal(err)
			}
			if rsp.GetVolume().GetVolumeId() != tt.name {
				t.Errorf("volume id = %q", rsp.GetVolume().GetVolumeId())
			}
			b, err := proto.MarshalOptions{Deterministic: true}.Marshal(rsp.GetStatus())
			if err != nil {
				t.Fatal(err)
			}
			if got := hex.EncodeToString(b); got != tt.golden {
				t.Errorf("status encodes as\n%s\nwant\n%s", got, tt.golden)
			}
		})
	}
}

func TestSettersChangeAnswersAndCallsAreCounted(t *testing.T) {
	s := csifake.Start(t, csifake.Config{})
	conn := dial(t, s)
	ctx := testContext(t)
	id, ctrl := csi.NewIdentityClient(conn), csi.NewControllerClient(conn)

	s.SetDriverInfo("other.example.com", "v9")
	s.SetReady(csifake.ReadyFalse)
	s.SetPluginCapability(csi.PluginCapability_Service_VOLUME_ACCESSIBILITY_CONSTRAINTS, false)
	s.SetControllerCapability(csi.ControllerServiceCapability_RPC_GET_VOLUME, false)
	s.SetVolume("v", csifake.Volume{Code: codes.Unavailable})
	s.SetCapacity(map[string]string{"zone": "a", "host": "n1"}, 42)

	if info, _ := id.GetPluginInfo(ctx, &csi.GetPluginInfoRequest{}); info.GetName() != "other.example.com" || info.GetVendorVersion() != "v9" {
		t.Errorf("GetPluginInfo = %v", info)
	}
	if p, _ := id.Probe(ctx, &csi.ProbeRequest{}); p.GetReady() == nil || p.GetReady().GetValue() {
		t.Errorf("Probe = %v, want ready=false", p)
	}
	s.SetReady(csifake.ReadyTrue)
	if p, _ := id.Probe(ctx, &csi.ProbeRequest{}); !p.GetReady().GetValue() {
		t.Errorf("Probe = %v, want ready=true", p)
	}
	pc, _ := id.GetPluginCapabilities(ctx, &csi.GetPluginCapabilitiesRequest{})
	if len(pc.GetCapabilities()) != 1 || pc.GetCapabilities()[0].GetService().GetType() != csi.PluginCapability_Service_CONTROLLER_SERVICE {
		t.Errorf("plugin capabilities = %v", pc)
	}
	cc, _ := ctrl.ControllerGetCapabilities(ctx, &csi.ControllerGetCapabilitiesRequest{})
	for _, c := range cc.GetCapabilities() {
		if c.GetRpc().GetType() == csi.ControllerServiceCapability_RPC_GET_VOLUME {
			t.Errorf("GET_VOLUME still advertised")
		}
	}
	if _, err := ctrl.ControllerGetVolume(ctx, &csi.ControllerGetVolumeRequest{VolumeId: "v"}); status.Code(err) != codes.Unavailable {
		t.Errorf("volume v: err = %v, want Unavailable", err)
	}
	// Segment keys match regardless of map order.
	rsp, err := ctrl.GetCapacity(ctx, &csi.GetCapacityRequest{
		AccessibleTopology: &csi.Topology{Segments: map[string]string{"host": "n1", "zone": "a"}},
	})
	if err != nil || rsp.GetAvailableCapacity() != 42 {
		t.Errorf("GetCapacity = %v, %v; want 42", rsp, err)
	}
	rsp, _ = ctrl.GetCapacity(ctx, &csi.GetCapacityRequest{
		AccessibleTopology: &csi.Topology{Segments: map[string]string{"zone": "a"}},
	})
	if rsp.GetAvailableCapacity() != 0 {
		t.Errorf("a sub-segment must not match: got %d", rsp.GetAvailableCapacity())
	}

	wantCalls := map[csifake.Method]int{
		csifake.GetPluginInfo: 1, csifake.Probe: 2, csifake.GetPluginCapabilities: 1,
		csifake.ControllerGetCapabilities: 1, csifake.ControllerGetVolume: 1, csifake.GetCapacity: 2,
	}
	for _, m := range csifake.Methods {
		if got := s.Calls(m); got != wantCalls[m] {
			t.Errorf("Calls(%s) = %d, want %d", m, got, wantCalls[m])
		}
	}
	last, _ := s.LastRequest(csifake.GetCapacity).(*csi.GetCapacityRequest)
	if last.GetAccessibleTopology().GetSegments()["zone"] != "a" || len(last.GetAccessibleTopology().GetSegments()) != 1 {
		t.Errorf("LastRequest(GetCapacity) = %v", last)
	}
	s.ResetCalls()
	for _, m := range csifake.Methods {
		if got := s.Calls(m); got != 0 {
			t.Errorf("after reset Calls(%s) = %d", m, got)
		}
	}
	if s.LastRequest(csifake.GetPluginInfo) == nil {
		t.Errorf("ResetCalls must keep the last requests")
	}
}

func TestInjectedErrorsAndDelays(t *testing.T) {
	s := csifake.Start(t, csifake.Config{})
	id := csi.NewIdentityClient(dial(t, s))

	s.SetError(csifake.GetPluginInfo, codes.PermissionDenied)
	if _, err := id.GetPluginInfo(testContext(t), &csi.GetPluginInfoRequest{}); status.Code(err) != codes.PermissionDenied {
		t.Errorf("err = %v, want PermissionDenied", err)
	}
	s.SetError(csifake.GetPluginInfo, codes.OK)
	if _, err := id.GetPluginInfo(testContext(t), &csi.GetPluginInfoRequest{}); err != nil {
		t.Errorf("after clearing: %v", err)
	}

	// A delayed call gives up when the caller does, and Stop does not wait
	// for the delay.
	s.SetDelay(csifake.Probe, time.Hour)
	ctx, cancel := context.WithTimeout(testContext(t), 100*time.Millisecond)
	defer cancel()
	if _, err := id.Probe(ctx, &csi.ProbeRequest{}); status.Code(err) != codes.DeadlineExceeded {
		t.Errorf("delayed probe: err = %v, want DeadlineExceeded", err)
	}
	go func() { _, _ = id.Probe(testContext(t), &csi.ProbeRequest{}) }()
	for s.Calls(csifake.Probe) < 2 {
		time.Sleep(5 * time.Millisecond)
	}
	start := time.Now()
	s.Stop()
	if d := time.Since(start); d > 20*time.Second {
		t.Errorf("Stop waited %s for a delayed call", d)
	}
}

func TestStopRestartClose(t *testing.T) {
	s, err := csifake.Listen(csifake.Config{})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(s.SocketPath()); err != nil {
		t.Fatalf("socket: %v", err)
	}
	if s.Address() != "unix://"+s.SocketPath() {
		t.Errorf("address %q does not match socket %q", s.Address(), s.SocketPath())
	}
	s.SetVolume("kept", csifake.Volume{CapacityBytes: 7})
	s.Stop()
	s.Stop() // idempotent
	if _, err := os.Stat(s.SocketPath()); !os.IsNotExist(err) {
		t.Errorf("socket still there after Stop: %v", err)
	}
	if err := s.Restart(); err != nil {
		t.Fatal(err)
	}
	rsp, err := csi.NewControllerClient(dial(t, s)).ControllerGetVolume(testContext(t), &csi.ControllerGetVolumeRequest{VolumeId: "kept"})
	if err != nil || rsp.GetVolume().GetCapacityBytes() != 7 {
		t.Errorf("after restart: %v, %v; want the answer set before", rsp, err)
	}
	dir := s.SocketPath()[:len(s.SocketPath())-len("/csi.sock")]
	s.Close()
	if _, err := os.Stat(dir); !os.IsNotExist(err) {
		t.Errorf("socket directory still there after Close: %v", err)
	}
}

func TestGivenDirIsKept(t *testing.T) {
	dir, err := os.MkdirTemp("", "csifake-test")
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = os.RemoveAll(dir) }()
	s, err := csifake.Listen(csifake.Config{Dir: dir})
	if err != nil {
		t.Fatal(err)
	}
	if s.SocketPath() != dir+"/csi.sock" {
		t.Errorf("socket = %q, want it in %q", s.SocketPath(), dir)
	}
	s.Close()
	if _, err := os.Stat(dir); err != nil {
		t.Errorf("Close removed a directory it did not create: %v", err)
	}
}

func TestConcurrentUse(t *testing.T) {
	s := csifake.Start(t, csifake.Config{})
	conn := dial(t, s)
	ctx := testContext(t)
	done := make(chan struct{})
	go func() {
		defer close(done)
		for i := range 200 {
			s.SetReady(csifake.Readiness(i % 3))
			s.SetVolume("v", csifake.Volume{Condition: &csifake.Condition{Abnormal: i%2 == 0}})
			s.SetCapacity(nil, int64(i))
		}
	}()
	id, ctrl := csi.NewIdentityClient(conn), csi.NewControllerClient(conn)
	for range 50 {
		if _, err := id.Probe(ctx, &csi.ProbeRequest{}); err != nil {
			t.Fatal(err)
		}
		if _, err := ctrl.ControllerGetVolume(ctx, &csi.ControllerGetVolumeRequest{VolumeId: "v"}); err != nil {
			t.Fatal(err)
		}
		if _, err := ctrl.GetCapacity(ctx, &csi.GetCapacityRequest{}); err != nil {
			t.Fatal(err)
		}
	}
	<-done
	if n := s.Calls(csifake.Probe); n != 50 {
		t.Errorf("Calls(Probe) = %d, want 50", n)
	}
}
