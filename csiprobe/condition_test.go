package csiprobe

import (
	"encoding/hex"
	"errors"
	"testing"

	"github.com/container-storage-interface/spec/lib/go/csi"
	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"
)

// Golden VolumeStatus encodings produced by the genuine CSI spec v1.10.0 Go
// bindings (the version LINSTOR CSI v1.6.4 builds with), marshalled
// deterministically.
const (
	// published_node_ids: [node-a], condition {abnormal: true, message: "Resource with issues on node(s): node-b"}
	goldenAbnormal = "0a066e6f64652d61122b080112275265736f75726365207769746820697373756573206f6e206e6f64652873293a206e6f64652d62"
	// condition {abnormal: false, message: "Volume healthy"}
	goldenHealthy = "1210120e566f6c756d65206865616c746879"
	// published_node_ids: [node-a], no condition
	goldenNoCondition = "0a066e6f64652d61"
)

func mustHex(t *testing.T, s string) []byte {
	t.Helper()
	b, err := hex.DecodeString(s)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// unknownOf parses a golden encoding with the v1.13 bindings the project
// uses, as gRPC does, and returns the bytes they keep as unknown.
func unknownOf(t *testing.T, golden string) []byte {
	t.Helper()
	var st csi.ControllerGetVolumeResponse_VolumeStatus
	if err := proto.Unmarshal(mustHex(t, golden), &st); err != nil {
		t.Fatal(err)
	}
	if golden != goldenHealthy && len(st.GetPublishedNodeIds()) != 1 {
		t.Fatalf("published node ids = %v, want the known field parsed", st.GetPublishedNodeIds())
	}
	return st.ProtoReflect().GetUnknown()
}

func conditionField(inner []byte) []byte {
	b := protowire.AppendTag(nil, statusConditionField, protowire.BytesType)
	return protowire.AppendBytes(b, inner)
}

func TestLegacyConditionDecodesWhatOldDriversSend(t *testing.T) {
	abnormalFalse := protowire.AppendVarint(protowire.AppendTag(nil, conditionAbnormalField, protowire.VarintType), 0)
	abnormalTrue := protowire.AppendVarint(protowire.AppendTag(nil, conditionAbnormalField, protowire.VarintType), 1)
	msg := func(s string) []byte {
		return protowire.AppendString(protowire.AppendTag(nil, conditionMessageField, protowire.BytesType), s)
	}
	otherField := protowire.AppendVarint(protowire.AppendTag(nil, 9, protowire.VarintType), 42)

	tests := []struct {
		name      string
		raw       []byte
		wantFound bool
		want      condition
		wantErr   bool
	}{
		{name: "v1.10 abnormal with published nodes", raw: unknownOf(t, goldenAbnormal), wantFound: true,
			want: condition{abnormal: true, message: "Resource with issues on node(s): node-b"}},
		{name: "v1.10 healthy, abnormal=false omitted on the wire", raw: unknownOf(t, goldenHealthy), wantFound: true,
			want: condition{message: "Volume healthy"}},
		{name: "v1.10 without condition", raw: unknownOf(t, goldenNoCondition)},
		{name: "nothing unknown", raw: nil},
		{name: "only other unknown fields", raw: otherField},
		{name: "explicit abnormal=false", raw: conditionField(append(abnormalFalse, msg("ok")...)), wantFound: true,
			want: condition{message: "ok"}},
		{name: "empty condition message still counts as present", raw: conditionField(nil), wantFound: true},
		{name: "two occurrences merge, later wins per field",
			raw:       append(conditionField(append(abnormalTrue, msg("first")...)), conditionField(msg("second"))...),
			wantFound: true, want: condition{abnormal: true, message: "second"}},
		{name: "unknown field inside the condition is skipped",
			raw:       conditionField(append(append([]byte{}, otherField...), abnormalTrue...)),
			wantFound: true, want: condition{abnormal: true}},
		{name: "truncated", raw: conditionField(msg("cut"))[:5], wantErr: true},
		{name: "condition with wrong wire type", raw: protowire.AppendVarint(protowire.AppendTag(nil, statusConditionField, protowire.VarintType), 1), wantErr: true},
		{name: "abnormal with wrong wire type", raw: conditionField(protowire.AppendBytes(protowire.AppendTag(nil, conditionAbnormalField, protowire.BytesType), []byte{1})), wantErr: true},
		{name: "message as varint", raw: conditionField(protowire.AppendVarint(protowire.AppendTag(nil, conditionMessageField, protowire.VarintType), 3)), wantErr: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, found, err := legacyCondition(tt.raw)
			if tt.wantErr {
				if !errors.Is(err, errMalformed) {
					t.Fatalf("err = %v, want errMalformed", err)
				}
				return
			}
			if err != nil {
				t.Fatalf("unexpected error: %v", err)
			}
			if found != tt.wantFound || got != tt.want {
				t.Errorf("got %+v found=%v, want %+v found=%v", got, found, tt.want, tt.wantFound)
			}
		})
	}
}
