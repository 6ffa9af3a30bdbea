package csiprobe_test

import (
	"errors"
	"strings"
	"testing"

	"github.com/container-storage-interface/spec/lib/go/csi"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/piraeusdatastore/linstor-affinity-sidecar/csiprobe"
	"github.com/piraeusdatastore/linstor-affinity-sidecar/csiprobe/csifake"
)

func TestDriverInfo(t *testing.T) {
	tests := []struct {
		name     string
		setup    func(*csifake.Server)
		want     csiprobe.Info
		wantErr  error
		wantCode codes.Code
	}{
		{
			name: "name and version as reported",
			setup: func(s *csifake.Server) {
				s.SetDriverInfo("linstor.csi.linbit.com", "v1.6.4")
			},
			want: csiprobe.Info{Name: "linstor.csi.linbit.com", Version: "v1.6.4"},
		},
		{
			name:  "empty version is fine",
			setup: func(s *csifake.Server) { s.SetDriverInfo("other.example.com", "") },
			want:  csiprobe.Info{Name: "other.example.com"},
		},
		{
			name:    "empty name is an error",
			setup:   func(s *csifake.Server) { s.SetDriverInfo("", "v1") },
			wantErr: csiprobe.ErrEmptyDriverName,
		},
		{
			name:     "gRPC failure keeps its code",
			setup:    func(s *csifake.Server) { s.SetError(csifake.GetPluginInfo, codes.Internal) },
			wantCode: codes.Internal,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			srv, c := setup(t, csifake.Config{})
			tt.setup(srv)
			got, err := c.DriverInfo(testContext(t))
			switch {
			case tt.wantErr != nil:
				if !errors.Is(err, tt.wantErr) {
					t.Fatalf("err = %v, want %v", err, tt.wantErr)
				}
			case tt.wantCode != codes.OK:
				if status.Code(err) != tt.wantCode || !strings.Contains(err.Error(), "GetPluginInfo") {
					t.Fatalf("err = %v, want code %s naming the call", err, tt.wantCode)
				}
			default:
				if err != nil {
					t.Fatal(err)
				}
				if got != tt.want {
					t.Errorf("got %+v, want %+v", got, tt.want)
				}
			}
			if n := srv.Calls(csifake.GetPluginInfo); n != 1 {
				t.Errorf("GetPluginInfo called %d times, want 1", n)
			}
		})
	}
}

func TestProbe(t *testing.T) {
	tests := []struct {
		name  string
		ready csifake.Readiness
		want  bool
	}{
		{name: "unset ready field counts as ready", ready: csifake.ReadyUnset, want: true},
		{name: "ready", ready: csifake.ReadyTrue, want: true},
		{name: "not ready", ready: csifake.ReadyFalse, want: false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, c := setup(t, csifake.Config{Ready: tt.ready})
			got, err := c.Probe(testContext(t))
			if err != nil {
				t.Fatal(err)
			}
			if got != tt.want {
				t.Errorf("ready = %v, want %v", got, tt.want)
			}
		})
	}
}

func TestPluginCapabilities(t *testing.T) {
	tests := []struct {
		name string
		caps []csi.PluginCapability_Service_Type
		want csiprobe.PluginCaps
	}{
		{name: "LINSTOR CSI", caps: nil, want: csiprobe.PluginCaps{ControllerService: true, AccessibilityConstraints: true}},
		{name: "none", caps: []csi.PluginCapability_Service_Type{}, want: csiprobe.PluginCaps{}},
		{name: "controller without topology",
			caps: []csi.PluginCapability_Service_Type{csi.PluginCapability_Service_CONTROLLER_SERVICE},
			want: csiprobe.PluginCaps{ControllerService: true}},
		{name: "topology without controller, unrelated ones ignored",
			caps: []csi.PluginCapability_Service_Type{
				csi.PluginCapability_Service_VOLUME_ACCESSIBILITY_CONSTRAINTS,
				csi.PluginCapability_Service_GROUP_CONTROLLER_SERVICE,
			},
			want: csiprobe.PluginCaps{AccessibilityConstraints: true}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, c := setup(t, csifake.Config{PluginCapabilities: tt.caps})
			got, err := c.PluginCapabilities(testContext(t))
			if err != nil {
				t.Fatal(err)
			}
			if got != tt.want {
				t.Errorf("got %+v, want %+v", got, tt.want)
			}
		})
	}
}

func TestControllerCapabilities(t *testing.T) {
	tests := []struct {
		name string
		caps []csi.ControllerServiceCapability_RPC_Type
		want csiprobe.ControllerCaps
	}{
		{name: "LINSTOR CSI, including the legacy VOLUME_CONDITION", caps: nil,
			want: csiprobe.ControllerCaps{GetVolume: true, GetCapacity: true, ListVolumes: true, VolumeCondition: true}},
		{name: "none", caps: []csi.ControllerServiceCapability_RPC_Type{}, want: csiprobe.ControllerCaps{}},
		{name: "get volume without condition",
			caps: []csi.ControllerServiceCapability_RPC_Type{
				csi.ControllerServiceCapability_RPC_GET_VOLUME,
				csi.ControllerServiceCapability_RPC_CREATE_DELETE_VOLUME,
			},
			want: csiprobe.ControllerCaps{GetVolume: true}},
		{name: "capacity only",
			caps: []csi.ControllerServiceCapability_RPC_Type{csi.ControllerServiceCapability_RPC_GET_CAPACITY},
			want: csiprobe.ControllerCaps{GetCapacity: true}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, c := setup(t, csifake.Config{ControllerCapabilities: tt.caps})
			got, err := c.ControllerCapabilities(testContext(t))
			if err != nil {
				t.Fatal(err)
			}
			if got != tt.want {
				t.Errorf("got %+v, want %+v", got, tt.want)
			}
		})
	}
}
