package csifake

import (
	"github.com/container-storage-interface/spec/lib/go/csi"
	"google.golang.org/protobuf/encoding/protowire"
)

// Wire numbers of the volume condition removed in CSI spec v1.13:
// ControllerGetVolumeResponse.VolumeStatus field 2 is a VolumeCondition
// message {bool abnormal = 1; string message = 2;}.
const (
	statusConditionField   protowire.Number = 2
	conditionAbnormalField protowire.Number = 1
	conditionMessageField  protowire.Number = 2
)

// appendLegacyCondition adds the condition to st as raw field 2, byte for
// byte what a driver built against CSI spec <= v1.12 sends. The v1.13 Go
// bindings keep unknown fields and marshal them back out.
func appendLegacyCondition(st *csi.ControllerGetVolumeResponse_VolumeStatus, c Condition) {
	var cond []byte
	if c.Abnormal {
		cond = protowire.AppendTag(cond, conditionAbnormalField, protowire.VarintType)
		cond = protowire.AppendVarint(cond, 1)
	}
	if c.Message != "" {
		cond = protowire.AppendTag(cond, conditionMessageField, protowire.BytesType)
		cond = protowire.AppendString(cond, c.Message)
	}
	raw := st.ProtoReflect().GetUnknown()
	raw = protowire.AppendTag(raw, statusConditionField, protowire.BytesType)
	raw = protowire.AppendBytes(raw, cond)
	st.ProtoReflect().SetUnknown(raw)
}
