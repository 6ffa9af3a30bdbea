package csifake

import (
	"github.com/container-storage-interface/spec/lib/go/csi"
)

// DefaultDriverName is the name the fake reports unless configured
// otherwise: the LINSTOR CSI driver name, so PVs built for tests look real.
const DefaultDriverName = "linstor.csi.linbit.com"

// DefaultVendorVersion is the vendor version the fake reports by default.
const DefaultVendorVersion = "v0.0.0-csifake"

// CapVolumeCondition is the controller capability VOLUME_CONDITION (wire
// value 11). CSI spec v1.13 removed it from the Go bindings, but LINSTOR CSI,
// built against older specs, still advertises it, so the fake must be able
// to send it.
const CapVolumeCondition csi.ControllerServiceCapability_RPC_Type = 11

// Readiness is what the fake answers to Probe.
type Readiness int

const (
	// ReadyUnset answers Probe without the ready field, which the CSI spec
	// says callers must treat as ready. LINSTOR CSI answers this way.
	ReadyUnset Readiness = iota
	// ReadyTrue answers ready = true.
	ReadyTrue
	// ReadyFalse answers ready = false.
	ReadyFalse
)

// Config sets the fake's answers at start. Zero fields mean "like LINSTOR
// CSI"; everything can be changed later with the Server setters.
type Config struct {
	// Dir is the directory for the socket. Empty: a fresh short temporary
	// directory (unix socket paths are limited to about 100 bytes, which
	// testing.T.TempDir often exceeds), removed by Close.
	Dir string
	// DriverName is returned by GetPluginInfo. Empty: DefaultDriverName.
	DriverName string
	// VendorVersion is returned by GetPluginInfo. Empty: DefaultVendorVersion.
	VendorVersion string
	// Ready is the Probe answer.
	Ready Readiness
	// PluginCapabilities are the service capabilities advertised by
	// GetPluginCapabilities. Nil: LinstorPluginCapabilities; use an empty,
	// non-nil slice for none.
	PluginCapabilities []csi.PluginCapability_Service_Type
	// ControllerCapabilities are the RPC capabilities advertised by
	// ControllerGetCapabilities. Nil: LinstorControllerCapabilities; use an
	// empty, non-nil slice for none.
	ControllerCapabilities []csi.ControllerServiceCapability_RPC_Type
}

// LinstorPluginCapabilities returns the plugin capabilities LINSTOR CSI
// advertises.
func LinstorPluginCapabilities() []csi.PluginCapability_Service_Type {
	return []csi.PluginCapability_Service_Type{
		csi.PluginCapability_Service_CONTROLLER_SERVICE,
		csi.PluginCapability_Service_VOLUME_ACCESSIBILITY_CONSTRAINTS,
	}
}

// LinstorControllerCapabilities returns the controller capabilities LINSTOR
// CSI (v1.6 to v1.12) advertises.
func LinstorControllerCapabilities() []csi.ControllerServiceCapability_RPC_Type {
	return []csi.ControllerServiceCapability_RPC_Type{
		csi.ControllerServiceCapability_RPC_CREATE_DELETE_VOLUME,
		csi.ControllerServiceCapability_RPC_PUBLISH_UNPUBLISH_VOLUME,
		csi.ControllerServiceCapability_RPC_LIST_VOLUMES,
		csi.ControllerServiceCapability_RPC_CREATE_DELETE_SNAPSHOT,
		csi.ControllerServiceCapability_RPC_CLONE_VOLUME,
		csi.ControllerServiceCapability_RPC_LIST_SNAPSHOTS,
		csi.ControllerServiceCapability_RPC_GET_CAPACITY,
		csi.ControllerServiceCapability_RPC_EXPAND_VOLUME,
		csi.ControllerServiceCapability_RPC_GET_VOLUME,
		csi.ControllerServiceCapability_RPC_LIST_VOLUMES_PUBLISHED_NODES,
		CapVolumeCondition,
	}
}
