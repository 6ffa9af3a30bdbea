package csifake

import (
	"google.golang.org/grpc/codes"
)

// Volume is the fake's answer to ControllerGetVolume for one volume id.
// Volumes never set answer NotFound, as LINSTOR CSI does when the resource
// definition is gone.
type Volume struct {
	// Code, when not codes.OK, makes ControllerGetVolume fail with this
	// gRPC code (codes.NotFound, codes.Internal, ...) instead of answering.
	Code codes.Code
	// CapacityBytes is reported in the volume.
	CapacityBytes int64
	// PublishedNodeIDs is reported in the volume status.
	PublishedNodeIDs []string
	// Condition, when not nil, is sent as the volume condition, encoded as
	// the pre-v1.13 CSI spec (and LINSTOR CSI) puts it on the wire.
	Condition *Condition
}

// Condition is a volume condition as LINSTOR CSI reports it.
type Condition struct {
	// Abnormal is true when the volume is not usable or not operating
	// optimally.
	Abnormal bool
	// Message describes the condition.
	Message string
}
