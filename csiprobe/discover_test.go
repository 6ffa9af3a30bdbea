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

func TestDiscover(t *testing.T) {
	linstorCtrl := csiprobe.ControllerCaps{GetVolume: true, GetCapacity: true, ListVolumes: true, VolumeCondition: true}
	tests := []struct {
		name        string
		cfg         csifake.Config
		setup       func(*csifake.Server)
		want        csiprobe.Driver
		wantIs      []error
		wantNotIs   []error
		wantCode    codes.Code
		wantCtrlRPC int // expected ControllerGetCapabilities calls
	}{
		{
			name: "LINSTOR CSI is fit",
			cfg:  csifake.Config{DriverName: "linstor.csi.linbit.com", VendorVersion: "v1.6.4"},
			want: csiprobe.Driver{
				Info:       csiprobe.Info{Name: "linstor.csi.linbit.com", Version: "v1.6.4"},
				Ready:      true,
				Plugin:     csiprobe.PluginCaps{ControllerService: true, AccessibilityConstraints: true},
				Controller: linstorCtrl,
			},
			wantCtrlRPC: 1,
		},
		{
			name: "not ready is reported with the full driver",
			cfg:  csifake.Config{Ready: csifake.ReadyFalse},
			want: csiprobe.Driver{
				Info:       csiprobe.Info{Name: csifake.DefaultDriverName, Version: csifake.DefaultVendorVersion},
				Plugin:     csiprobe.PluginCaps{ControllerService: true, AccessibilityConstraints: true},
				Controller: linstorCtrl,
			},
			wantIs:      []error{csiprobe.ErrNotReady},
			wantNotIs:   []error{csiprobe.ErrNoTopology, csiprobe.ErrNoControllerService},
			wantCtrlRPC: 1,
		},
		{
			name: "no topology",
			cfg: csifake.Config{PluginCapabilities: []csi.PluginCapability_Service_Type{
				csi.PluginCapability_Service_CONTROLLER_SERVICE,
			}},
			want: csiprobe.Driver{
				Info:       csiprobe.Info{Name: csifake.DefaultDriverName, Version: csifake.DefaultVendorVersion},
				Ready:      true,
				Plugin:     csiprobe.PluginCaps{ControllerService: true},
				Controller: linstorCtrl,
			},
			wantIs:      []error{csiprobe.ErrNoTopology},
			wantNotIs:   []error{csiprobe.ErrNotReady, csiprobe.ErrNoControllerService},
			wantCtrlRPC: 1,
		},
		{
			name: "node plugin socket: no controller service, controller not asked",
			cfg: csifake.Config{
				Ready:              csifake.ReadyFalse,
				PluginCapabilities: []csi.PluginCapability_Service_Type{},
			},
			want: csiprobe.Driver{
				Info: csiprobe.Info{Name: csifake.DefaultDriverName, Version: csifake.DefaultVendorVersion},
			},
			wantIs:      []error{csiprobe.ErrNotReady, csiprobe.ErrNoControllerService, csiprobe.ErrNoTopology},
			wantCtrlRPC: 0,
		},
		{
			name:  "failed call is returned as is",
			setup: func(s *csifake.Server) { s.SetError(csifake.GetPluginCapabilities, codes.Unavailable) },
			want: csiprobe.Driver{
				Info:  csiprobe.Info{Name: csifake.DefaultDriverName, Version: csifake.DefaultVendorVersion},
				Ready: true,
			},
			wantCode:  codes.Unavailable,
			wantNotIs: []error{csiprobe.ErrNotReady, csiprobe.ErrNoTopology},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			srv, c := setup(t, tt.cfg)
			if tt.setup != nil {
				tt.setup(srv)
			}
			got, err := c.Discover(testContext(t))
			if got != tt.want {
				t.Errorf("driver = %+v, want %+v", got, tt.want)
			}
			if len(tt.wantIs) == 0 && tt.wantCode == codes.OK && err != nil {
				t.Fatalf("unexpected error: %v", err)
			}
			for _, want := range tt.wantIs {
				if !errors.Is(err, want) {
					t.Errorf("err = %v, want it to match %v", err, want)
				}
			}
			for _, notWant := range tt.wantNotIs {
				if errors.Is(err, notWant) {
					t.Errorf("err = %v, must not match %v", err, notWant)
				}
			}
			if tt.wantCode != codes.OK && status.Code(err) != tt.wantCode {
				t.Errorf("err = %v, want code %s", err, tt.wantCode)
			}
			if err != nil && !strings.Contains(err.Error(), got.Name) {
				t.Errorf("err = %v, want it to name the driver %q", err, got.Name)
			}
			if err != nil && strings.Contains(err.Error(), "\n") {
				t.Errorf("err = %q spans several lines", err)
			}
			if n := srv.Calls(csifake.ControllerGetCapabilities); n != tt.wantCtrlRPC {
				t.Errorf("ControllerGetCapabilities called %d times, want %d", n, tt.wantCtrlRPC)
			}
			if csiprobe.IsNotReady(err) != errors.Is(err, csiprobe.ErrNotReady) {
				t.Errorf("IsNotReady disagrees with errors.Is for %v", err)
			}
		})
	}
}
