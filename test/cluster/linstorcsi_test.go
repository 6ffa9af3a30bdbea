package cluster

import (
	"context"
	"os"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/LINBIT/golinstor/fakelinstor"
	"github.com/container-storage-interface/spec/lib/go/csi"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"
)

func csiConn(t *testing.T, endpoint string) *grpc.ClientConn {
	t.Helper()
	conn, err := grpc.NewClient(endpoint, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = conn.Close() })
	return conn
}

func TestLinstorCSIServesCSIAgainstFakeLinstor(t *testing.T) {
	if testing.Short() {
		t.Skip("starts the LINSTOR CSI driver binary")
	}
	lin := fakelinstor.New()
	t.Cleanup(lin.Server.Close)

	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	drv, err := StartLinstorCSI(ctx, LinstorCSIOptions{
		LinstorEndpoint:   lin.Server.URL,
		PropertyNamespace: "Aux/topology",
	})
	if err != nil {
		SkipOrFatal(t, err)
	}
	t.Cleanup(func() { _ = drv.Stop() })
	if !strings.HasPrefix(drv.Endpoint(), "unix:///") {
		t.Fatalf("endpoint %q is not a unix socket URL", drv.Endpoint())
	}

	conn := csiConn(t, drv.Endpoint())
	identity := csi.NewIdentityClient(conn)
	info, err := identity.GetPluginInfo(ctx, &csi.GetPluginInfoRequest{})
	if err != nil {
		t.Fatalf("GetPluginInfo: %v", err)
	}
	if info.GetName() != "linstor.csi.linbit.com" {
		t.Fatalf("driver name %q, want linstor.csi.linbit.com", info.GetName())
	}
	caps, err := identity.GetPluginCapabilities(ctx, &csi.GetPluginCapabilitiesRequest{})
	if err != nil {
		t.Fatalf("GetPluginCapabilities: %v", err)
	}
	var services []csi.PluginCapability_Service_Type
	for _, c := range caps.GetCapabilities() {
		services = append(services, c.GetService().GetType())
	}
	for _, want := range []csi.PluginCapability_Service_Type{
		csi.PluginCapability_Service_CONTROLLER_SERVICE,
		csi.PluginCapability_Service_VOLUME_ACCESSIBILITY_CONSTRAINTS,
	} {
		if !slices.Contains(services, want) {
			t.Errorf("capabilities %v lack %v", services, want)
		}
	}
	// A volume lookup must reach the LINSTOR endpoint we passed: fakelinstor
	// names itself in its answer to the call it does not implement.
	_, err = csi.NewControllerClient(conn).ControllerGetVolume(ctx, &csi.ControllerGetVolumeRequest{VolumeId: "pvc-missing"})
	if err == nil || !strings.Contains(status.Convert(err).Message(), "fakelinstor") {
		t.Fatalf("ControllerGetVolume = %v, want an error relayed from fakelinstor", err)
	}

	// A crash and restart brings the same socket back.
	oldPid := drv.Pid()
	if err := drv.Kill(); err != nil {
		t.Fatal(err)
	}
	if _, err := identity.Probe(ctx, &csi.ProbeRequest{}); status.Code(err) != codes.Unavailable {
		t.Fatalf("Probe with the driver down = %v, want Unavailable", err)
	}
	if err := drv.Restart(ctx); err != nil {
		t.Fatal(err)
	}
	if drv.Pid() == oldPid {
		t.Fatal("Restart kept the old pid")
	}
	if _, err := csi.NewIdentityClient(csiConn(t, drv.Endpoint())).Probe(ctx, &csi.ProbeRequest{}); err != nil {
		t.Fatalf("Probe after restart: %v", err)
	}

	sock := drv.SocketPath()
	if err := drv.Stop(); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(sock); !os.IsNotExist(err) {
		t.Fatalf("socket %s still there after Stop (%v)", sock, err)
	}
}
