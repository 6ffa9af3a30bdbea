package csiprobe

import (
	"errors"
	"fmt"

	"google.golang.org/protobuf/encoding/protowire"
)

// Wire numbers of the volume condition that CSI spec v1.13 removed from its
// Go bindings: ControllerGetVolumeResponse.VolumeStatus field 2 holds a
// VolumeCondition {bool abnormal = 1; string message = 2;}. LINSTOR CSI,
// built against older specs, still sends it; the v1.13 bindings keep it as
// unknown bytes, which legacyCondition decodes.
const (
	statusConditionField   protowire.Number = 2
	conditionAbnormalField protowire.Number = 1
	conditionMessageField  protowire.Number = 2
)

type condition struct {
	abnormal bool
	message  string
}

var errMalformed = errors.New("malformed protobuf")

// legacyCondition finds the volume condition among the unknown fields of a
// VolumeStatus. Repeated occurrences merge, later fields winning, as
// protobuf parsing does for an embedded message.
func legacyCondition(raw []byte) (condition, bool, error) {
	var cond condition
	found := false
	err := eachField(raw, func(num protowire.Number, typ protowire.Type, val []byte) error {
		if num != statusConditionField {
			return nil
		}
		if typ != protowire.BytesType {
			return fmt.Errorf("field %d: wire type %d: %w", num, typ, errMalformed)
		}
		found = true
		return eachField(val, func(num protowire.Number, typ protowire.Type, val []byte) error {
			switch {
			case num == conditionAbnormalField && typ == protowire.VarintType:
				v, _ := protowire.ConsumeVarint(val)
				cond.abnormal = v != 0
			case num == conditionMessageField && typ == protowire.BytesType:
				cond.message = string(val)
			case num == conditionAbnormalField || num == conditionMessageField:
				return fmt.Errorf("condition field %d: wire type %d: %w", num, typ, errMalformed)
			}
			return nil
		})
	})
	if err != nil {
		return condition{}, false, err
	}
	return cond, found, nil
}

// eachField calls fn for every field of an encoded message, with val the
// varint bytes (VarintType) or the payload (BytesType) or the raw value.
func eachField(raw []byte, fn func(num protowire.Number, typ protowire.Type, val []byte) error) error {
	for len(raw) > 0 {
		num, typ, n := protowire.ConsumeTag(raw)
		if n < 0 {
			return fmt.Errorf("tag: %w: %w", errMalformed, protowire.ParseError(n))
		}
		raw = raw[n:]
		m := protowire.ConsumeFieldValue(num, typ, raw)
		if m < 0 {
			return fmt.Errorf("field %d: %w: %w", num, errMalformed, protowire.ParseError(m))
		}
		val := raw[:m]
		if typ == protowire.BytesType {
			val, _ = protowire.ConsumeBytes(val)
		}
		if err := fn(num, typ, val); err != nil {
			return err
		}
		raw = raw[m:]
	}
	return nil
}
