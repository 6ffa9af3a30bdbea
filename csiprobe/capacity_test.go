package csiprobe_test

import (
	"errors"
	"maps"
	"strings"
	"testing"

	"github.com/container-storage-interface/spec/lib/go/csi"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/piraeusdatastore/linstor-affinity-sidecar/csiprobe"
	"github.com/piraeusdatastore/linstor-affinity-sidecar/csiprobe/csifake"
)

func TestCapacity(t *testing.T) {
	zoneA := map[string]string{"topology.kubernetes.io/zone": "a"}
	nodeA := map[string]string{"linbit.com/hostname": "node-a", "topology.kubernetes.io/zone": "a"}
	params := map[string]string{"linstor.csi.linbit.com/storagePool": "thin", "csi.storage.k8s.io/fstype": "xfs"}

	srv, c := setup(t, csifake.Config{})
	srv.SetCapacity(nil, 300<<30)
	srv.SetCapacity(zoneA, 200<<30)
	srv.SetCapacity(nodeA, 100<<30)

	tests := []struct {
		name    string
		segment map[string]string
		want    int64
	}{
		{name: "whole cluster", segment: nil, want: 300 << 30},
		{name: "empty segment is the whole cluster", segment: map[string]string{}, want: 300 << 30},
		{name: "zone", segment: zoneA, want: 200 << 30},
		{name: "node", segment: nodeA, want: 100 << 30},
		{name: "unknown segment", segment: map[string]string{"topology.kubernetes.io/zone": "z"}, want: 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := c.Capacity(testContext(t), params, tt.segment)
			if err != nil {
				t.Fatal(err)
			}
			if got != tt.want {
				t.Errorf("capacity = %d, want %d", got, tt.want)
			}
			req, _ := srv.LastRequest(csifake.GetCapacity).(*csi.GetCapacityRequest)
			if !maps.Equal(req.GetParameters(), params) {
				t.Errorf("parameters sent = %v, want %v", req.GetParameters(), params)
			}
			if !maps.Equal(req.GetAccessibleTopology().GetSegments(), tt.segment) {
				t.Errorf("segment sent = %v, want %v", req.GetAccessibleTopology().GetSegments(), tt.segment)
			}
		})
	}
}

func TestCapacityErrors(t *testing.T) {
	t.Run("no GET_CAPACITY capability", func(t *testing.T) {
		srv, c := setup(t, csifake.Config{ControllerCapabilities: []csi.ControllerServiceCapability_RPC_Type{
			csi.ControllerServiceCapability_RPC_GET_VOLUME,
		}})
		_, err := c.Capacity(testContext(t), nil, map[string]string{"k": "v"})
		if !errors.Is(err, csiprobe.ErrNotSupported) {
			t.Fatalf("err = %v, want ErrNotSupported", err)
		}
		if n := srv.Calls(csifake.GetCapacity); n != 0 {
			t.Errorf("GetCapacity called %d times, want 0", n)
		}
	})
	t.Run("driver failure names the segment", func(t *testing.T) {
		srv, c := setup(t, csifake.Config{})
		srv.SetError(csifake.GetCapacity, codes.Internal)
		_, err := c.Capacity(testContext(t), nil, map[string]string{"topology.kubernetes.io/zone": "a"})
		if status.Code(err) != codes.Internal || !strings.Contains(err.Error(), "topology.kubernetes.io/zone:a") {
			t.Fatalf("err = %v, want Internal naming the segment", err)
		}
	})
}
