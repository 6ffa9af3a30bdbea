package decide

import (
	"fmt"
	"strconv"
	"strings"
)

// VolumeRef names one LINSTOR volume: a resource definition and a volume number.
// LINSTOR CSI before 1.11 always used volume 0; later versions put several PVs on
// one resource definition and say which with a "/<n>" suffix on the volume handle.
type VolumeRef struct {
	RD     string
	Volume int
}

// String gives the handle form, so log lines read like the PV's volumeHandle.
func (r VolumeRef) String() string {
	if r.Volume == 0 {
		return r.RD
	}
	return r.RD + "/" + strconv.Itoa(r.Volume)
}

// maxVolumeNumber is one past the largest volume number LINSTOR accepts.
const maxVolumeNumber = 65536

// ParseVolumeHandle reads a LINSTOR CSI volume handle: "<rd>" or "<rd>/<n>" with
// 0 <= n < 65536. Anything else is malformed and yields an error naming the handle.
func ParseVolumeHandle(handle string) (VolumeRef, error) {
	rd, num, hasNum := strings.Cut(handle, "/")
	if rd == "" {
		return VolumeRef{}, fmt.Errorf("volume handle %q: empty resource definition name", handle)
	}
	if strings.ContainsAny(rd, " \t\r\n") {
		return VolumeRef{}, fmt.Errorf("volume handle %q: resource definition name contains white space", handle)
	}
	if !hasNum {
		return VolumeRef{RD: rd}, nil
	}
	// Only plain decimal digits: no sign, no spaces, no second slash.
	if num == "" || len(num) > 5 || strings.Trim(num, "0123456789") != "" {
		return VolumeRef{}, fmt.Errorf("volume handle %q: volume number %q is not a decimal number", handle, num)
	}
	n, err := strconv.Atoi(num)
	if err != nil || n >= maxVolumeNumber {
		return VolumeRef{}, fmt.Errorf("volume handle %q: volume number %q out of range [0, %d)", handle, num, maxVolumeNumber)
	}
	return VolumeRef{RD: rd, Volume: n}, nil
}
