package csiprobe_test

import (
	"errors"
	"reflect"
	"strings"
	"testing"

	"github.com/container-storage-interface/spec/lib/go/csi"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/piraeusdatastore/linstor-affinity-sidecar/csiprobe"
	"github.com/piraeusdatastore/linstor-affinity-sidecar/csiprobe/csifake"
)

func TestVolumeStatus(t *testing.T) {
	const id = "pvc-0d8f3c1e-7e4a-4b8e-9c39-3a1f2b5c6d7e"
	tests := []struct {
		name          string
		volume        *csifake.Volume // nil: never set
		want          csiprobe.VolumeStatus
		wantCode      codes.Code
		wantTransient bool
	}{
		{
			name:   "unknown volume does not exist, without error",
			volume: nil,
			want:   csiprobe.VolumeStatus{},
		},
		{
			name:   "NotFound answer does not exist, without error",
			volume: &csifake.Volume{Code: codes.NotFound},
			want:   csiprobe.VolumeStatus{},
		},
		{
			name:   "exists without condition",
			volume: &csifake.Volume{CapacityBytes: 1 << 30, PublishedNodeIDs: []string{"node-a"}},
			want:   csiprobe.VolumeStatus{Exists: true, CapacityBytes: 1 << 30, PublishedNodeIDs: []string{"node-a"}},
		},
		{
			name:   "healthy condition",
			volume: &csifake.Volume{Condition: &csifake.Condition{Message: "Volume healthy"}},
			want:   csiprobe.VolumeStatus{Exists: true, HasCondition: true, Message: "Volume healthy"},
		},
		{
			name: "abnormal condition with message",
			volume: &csifake.Volume{
				PublishedNodeIDs: []string{"node-a", "node-b"},
				Condition:        &csifake.Condition{Abnormal: true, Message: "Resource with issues on node(s): node-b"},
			},
			want: csiprobe.VolumeStatus{
				Exists: true, HasCondition: true, Abnormal: true,
				Message:          "Resource with issues on node(s): node-b",
				PublishedNodeIDs: []string{"node-a", "node-b"},
			},
		},
		{name: "Internal is an error", volume: &csifake.Volume{Code: codes.Internal}, wantCode: codes.Internal},
		{name: "Unavailable is a transient error", volume: &csifake.Volume{Code: codes.Unavailable}, wantCode: codes.Unavailable, wantTransient: true},
		{name: "InvalidArgument is an error", volume: &csifake.Volume{Code: codes.InvalidArgument}, wantCode: codes.InvalidArgument},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			srv, c := setup(t, csifake.Config{})
			if tt.volume != nil {
				srv.SetVolume(id, *tt.volume)
			}
			got, err := c.VolumeStatus(testContext(t), id)
			if tt.wantCode != codes.OK {
				if status.Code(err) != tt.wantCode {
					t.Fatalf("err = %v, want code %s", err, tt.wantCode)
				}
				if !strings.Contains(err.Error(), "volume "+id) {
					t.Errorf("err = %v, want it to name the volume", err)
				}
				if csiprobe.IsTransient(err) != tt.wantTransient {
					t.Errorf("IsTransient(%v) = %v, want %v", err, !tt.wantTransient, tt.wantTransient)
				}
				return
			}
			if err != nil {
				t.Fatalf("unexpected error: %v", err)
			}
			if !reflect.DeepEqual(got, tt.want) {
				t.Errorf("got %+v, want %+v", got, tt.want)
			}
			req, _ := srv.LastRequest(csifake.ControllerGetVolume).(*csi.ControllerGetVolumeRequest)
			if req.GetVolumeId() != id {
				t.Errorf("driver was asked about %q, want %q", req.GetVolumeId(), id)
			}
		})
	}
}

func TestVolumeStatusFollowsTheDriver(t *testing.T) {
	srv, c := setup(t, csifake.Config{})
	ctx := testContext(t)
	srv.SetVolume("vol", csifake.Volume{})
	if got, err := c.VolumeStatus(ctx, "vol"); err != nil || !got.Exists {
		t.Fatalf("before delete: %+v, %v; want existing", got, err)
	}
	srv.DeleteVolume("vol")
	if got, err := c.VolumeStatus(ctx, "vol"); err != nil || got.Exists {
		t.Fatalf("after delete: %+v, %v; want gone without error", got, err)
	}
}

func TestVolumeStatusWithoutGetVolumeCapability(t *testing.T) {
	srv, c := setup(t, csifake.Config{ControllerCapabilities: []csi.ControllerServiceCapability_RPC_Type{
		csi.ControllerServiceCapability_RPC_GET_CAPACITY,
	}})
	srv.SetVolume("vol", csifake.Volume{})
	_, err := c.VolumeStatus(testContext(t), "vol")
	if !errors.Is(err, csiprobe.ErrNotSupported) || !csiprobe.IsNotSupported(err) {
		t.Fatalf("err = %v, want ErrNotSupported", err)
	}
	if csiprobe.IsTransient(err) {
		t.Errorf("a missing capability must not look transient: %v", err)
	}
	if !strings.Contains(err.Error(), "volume vol") {
		t.Errorf("err = %v, want it to name the volume", err)
	}
	if n := srv.Calls(csifake.ControllerGetVolume); n != 0 {
		t.Errorf("ControllerGetVolume called %d times, want 0", n)
	}
}

func TestVolumeStatusCapabilityLookupFailure(t *testing.T) {
	srv, c := setup(t, csifake.Config{})
	srv.SetError(csifake.ControllerGetCapabilities, codes.Unavailable)
	_, err := c.VolumeStatus(testContext(t), "vol")
	if status.Code(err) != codes.Unavailable || !strings.Contains(err.Error(), "volume vol") {
		t.Fatalf("err = %v, want Unavailable naming the volume", err)
	}
	if n := srv.Calls(csifake.ControllerGetVolume); n != 0 {
		t.Errorf("ControllerGetVolume called %d times without known capabilities, want 0", n)
	}
}

func TestControllerCapabilitiesAreAskedOnce(t *testing.T) {
	srv, c := setup(t, csifake.Config{})
	ctx := testContext(t)
	for range 3 {
		if _, err := c.VolumeStatus(ctx, "vol"); err != nil {
			t.Fatal(err)
		}
		if _, err := c.Capacity(ctx, nil, nil); err != nil {
			t.Fatal(err)
		}
	}
	if n := srv.Calls(csifake.ControllerGetCapabilities); n != 1 {
		t.Errorf("ControllerGetCapabilities called %d times, want 1", n)
	}

	// An explicit ControllerCapabilities call refreshes what is remembered.
	srv.SetControllerCapability(csi.ControllerServiceCapability_RPC_GET_VOLUME, false)
	if _, err := c.VolumeStatus(ctx, "vol"); err != nil {
		t.Fatalf("cached capability should still allow the call: %v", err)
	}
	if _, err := c.ControllerCapabilities(ctx); err != nil {
		t.Fatal(err)
	}
	if _, err := c.VolumeStatus(ctx, "vol"); !errors.Is(err, csiprobe.ErrNotSupported) {
		t.Errorf("after refresh err = %v, want ErrNotSupported", err)
	}
}
