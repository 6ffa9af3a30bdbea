package repair

import (
	"testing"
)

func TestParseRepairMethod(t *testing.T) {
	for _, ok := range []string{"auto", "in-place", "recreate"} {
		if _, err := ParseRepairMethod(ok); err != nil {
			t.Errorf("%s: %v", ok, err)
		}
	}
	for _, bad := range []string{"", "inplace", "Auto"} {
		if _, err := ParseRepairMethod(bad); err == nil {
			t.Errorf("%q accepted", bad)
		}
	}
}
