package decide_test

import (
	"strconv"
	"strings"
	"testing"

	"github.com/piraeusdatastore/linstor-affinity-sidecar/sidecar/decide"
)

func TestParseVolumeHandleAccepts(t *testing.T) {
	cases := []struct {
		name   string
		handle string
		want   decide.VolumeRef
	}{
		{"bare name is volume 0", "rd", decide.VolumeRef{RD: "rd"}},
		{"explicit volume 0", "rd/0", decide.VolumeRef{RD: "rd"}},
		{"volume 1", "rd/1", decide.VolumeRef{RD: "rd", Volume: 1}},
		{"largest volume number", "rd/65535", decide.VolumeRef{RD: "rd", Volume: 65535}},
		{"pvc style name", "pvc-6f1c9b2e-0d4a-4e57-9a51-0c3e8d7a1b2f/3", decide.VolumeRef{RD: "pvc-6f1c9b2e-0d4a-4e57-9a51-0c3e8d7a1b2f", Volume: 3}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			got, err := decide.ParseVolumeHandle(tc.handle)
			if err != nil {
				t.Fatalf("ParseVolumeHandle(%q): unexpected error %v", tc.handle, err)
			}
			if got != tc.want {
				t.Errorf("ParseVolumeHandle(%q) = %+v, want %+v", tc.handle, got, tc.want)
			}
		})
	}
}

func TestParseVolumeHandleRejectsMalformed(t *testing.T) {
	cases := []struct {
		name   string
		handle string
	}{
		{"empty handle", ""},
		{"empty resource definition name", "/1"},
		{"slash without number", "rd/"},
		{"negative number", "rd/-1"},
		{"number too large", "rd/65536"},
		{"number far too large", "rd/999999"},
		{"second slash", "rd/1/2"},
		{"plus sign", "rd/+1"},
		{"leading space in number", "rd/ 1"},
		{"trailing space in number", "rd/1 "},
		{"hexadecimal number", "rd/0x1"},
		{"trailing letter", "rd/1a"},
		{"white space in name", "r d/1"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			got, err := decide.ParseVolumeHandle(tc.handle)
			if err == nil {
				t.Fatalf("ParseVolumeHandle(%q) = %+v, want an error", tc.handle, got)
			}
			if got != (decide.VolumeRef{}) {
				t.Errorf("ParseVolumeHandle(%q) returned %+v with its error, want the zero ref", tc.handle, got)
			}
			if !strings.Contains(err.Error(), strconv.Quote(tc.handle)) {
				t.Errorf("error %q does not name the handle %q", err, tc.handle)
			}
		})
	}
}

func TestVolumeRefStringIsTheCanonicalHandle(t *testing.T) {
	cases := []struct {
		name string
		ref  decide.VolumeRef
		want string
	}{
		{"volume 0 prints as the bare name", decide.VolumeRef{RD: "rd"}, "rd"},
		{"volume 1 carries its number", decide.VolumeRef{RD: "rd", Volume: 1}, "rd/1"},
		{"largest volume number", decide.VolumeRef{RD: "rd", Volume: 65535}, "rd/65535"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			if got := tc.ref.String(); got != tc.want {
				t.Fatalf("String() = %q, want %q", got, tc.want)
			}
			back, err := decide.ParseVolumeHandle(tc.ref.String())
			if err != nil || back != tc.ref {
				t.Errorf("ParseVolumeHandle(String()) = %+v, %v; want %+v", back, err, tc.ref)
			}
		})
	}
}
