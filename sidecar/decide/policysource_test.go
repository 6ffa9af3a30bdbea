package decide_test

import (
	"errors"
	"testing"

	"github.com/piraeusdatastore/linstor-affinity-sidecar/sidecar/decide"
	"github.com/piraeusdatastore/linstor-affinity-sidecar/sidecar/internal/fixture"
	corev1 "k8s.io/api/core/v1"
	storagev1 "k8s.io/api/storage/v1"
)

func TestResolvePolicy(t *testing.T) {
	const (
		allowKey   = "linstor.csi.linbit.com/allowRemoteVolumeAccess"
		zoneText   = "- fromSame: [topology.kubernetes.io/zone]"
		regionText = "[{fromSame: [topology.kubernetes.io/region]}]"
	)
	zonePolicy := decide.Policy{{FromSame: []string{fixture.ZoneKey}}}
	regionPolicy := decide.Policy{{FromSame: []string{fixture.Region}}}
	// The --default-remote-access-policy of these tests is deliberately neither
	// true nor false, so a result equal to it can only come from the flag.
	flagDefault := decide.Policy{{FromSame: []string{"example.com/rack"}}}
	marked := func(extra map[string]string) map[string]string {
		m := map[string]string{decide.VolumeContextMarker: "true"}
		for k, v := range extra {
			m[k] = v
		}
		return m
	}

	cases := []struct {
		name       string
		pv         *corev1.PersistentVolume
		sc         *storagev1.StorageClass
		want       decide.Policy
		wantSource decide.PolicySource
		wantErr    bool
		wantMissSC bool
		wantNoSC   bool
	}{
		// (a) annotation
		{name: "annotation overrides volume context and storage class",
			pv: fixture.PV("pv", "rd", fixture.WithSC("sc"), fixture.WithAnnotation("override.piraeus.io/n1", "true"),
				fixture.WithVolumeAttributes(marked(map[string]string{decide.VolumeContextPolicyKey: "false"}))),
			sc:   fixture.SC("sc", map[string]string{allowKey: "false"}),
			want: decide.PolicyAnywhere, wantSource: decide.SourceAnnotation},
		{name: "annotation key equal to the bare prefix counts",
			pv:   fixture.PV("pv", "rd", fixture.WithAnnotation("override.piraeus.io", zoneText)),
			want: zonePolicy, wantSource: decide.SourceAnnotation},
		{name: "annotation outside the prefix is ignored",
			pv:   fixture.PV("pv", "rd", fixture.WithSC("sc"), fixture.WithAnnotation("piraeus.io/override", "true")),
			sc:   fixture.SC("sc", map[string]string{allowKey: "false"}),
			want: decide.PolicyLocalOnly, wantSource: decide.SourceStorageClass},
		{name: "invalid annotation is an error, not a fall-through",
			pv:      fixture.PV("pv", "rd", fixture.WithSC("sc"), fixture.WithAnnotation("override.piraeus.io/x", "maybe")),
			sc:      fixture.SC("sc", map[string]string{allowKey: "false"}),
			wantErr: true, wantSource: decide.SourceAnnotation},
		{name: "annotation gives the policy when the storage class is gone",
			pv:   fixture.PV("pv", "rd", fixture.WithSC("gone"), fixture.WithAnnotation("override.piraeus.io/x", "false")),
			want: decide.PolicyLocalOnly, wantSource: decide.SourceAnnotation},

		// (b) volume context
		{name: "volume context with marker overrides storage class",
			pv: fixture.PV("pv", "rd", fixture.WithSC("sc"),
				fixture.WithVolumeAttributes(marked(map[string]string{decide.VolumeContextPolicyKey: zoneText}))),
			sc:   fixture.SC("sc", map[string]string{allowKey: "true"}),
			want: zonePolicy, wantSource: decide.SourceVolumeContext},
		{name: "volume context without marker is ignored",
			pv: fixture.PV("pv", "rd", fixture.WithSC("sc"),
				fixture.WithVolumeAttributes(map[string]string{decide.VolumeContextPolicyKey: "true"})),
			sc:   fixture.SC("sc", map[string]string{allowKey: regionText}),
			want: regionPolicy, wantSource: decide.SourceStorageClass},
		{name: "marker without policy key falls through to storage class",
			pv:   fixture.PV("pv", "rd", fixture.WithSC("sc"), fixture.WithVolumeAttributes(marked(nil))),
			sc:   fixture.SC("sc", map[string]string{allowKey: "false"}),
			want: decide.PolicyLocalOnly, wantSource: decide.SourceStorageClass},
		{name: "invalid volume context policy is an error",
			pv: fixture.PV("pv", "rd", fixture.WithSC("sc"),
				fixture.WithVolumeAttributes(marked(map[string]string{decide.VolumeContextPolicyKey: "{}"}))),
			sc:      fixture.SC("sc", map[string]string{allowKey: "false"}),
			wantErr: true, wantSource: decide.SourceVolumeContext},
		{name: "volume context gives the policy when the storage class is gone",
			pv: fixture.PV("pv", "rd", fixture.WithSC("gone"),
				fixture.WithVolumeAttributes(marked(map[string]string{decide.VolumeContextPolicyKey: "false"}))),
			want: decide.PolicyLocalOnly, wantSource: decide.SourceVolumeContext},

		// (c) StorageClass parameter
		{name: "prefixed parameter overrides the layer list default",
			pv:   fixture.PV("pv", "rd", fixture.WithSC("sc")),
			sc:   fixture.SC("sc", map[string]string{allowKey: "true", "linstor.csi.linbit.com/layerList": "storage"}),
			want: decide.PolicyAnywhere, wantSource: decide.SourceStorageClass},
		{name: "parameter without prefix",
			pv:   fixture.PV("pv", "rd", fixture.WithSC("sc")),
			sc:   fixture.SC("sc", map[string]string{"allowRemoteVolumeAccess": zoneText}),
			want: zonePolicy, wantSource: decide.SourceStorageClass},
		{name: "parameter without prefix in upper case",
			pv:   fixture.PV("pv", "rd", fixture.WithSC("sc")),
			sc:   fixture.SC("sc", map[string]string{"ALLOWREMOTEVOLUMEACCESS": "false"}),
			want: decide.PolicyLocalOnly, wantSource: decide.SourceStorageClass},
		{name: "prefixed parameter in lower case",
			pv:   fixture.PV("pv", "rd", fixture.WithSC("sc")),
			sc:   fixture.SC("sc", map[string]string{"linstor.csi.linbit.com/allowremotevolumeaccess": "false"}),
			want: decide.PolicyLocalOnly, wantSource: decide.SourceStorageClass},
		{name: "prefixed parameter wins over unprefixed",
			pv:   fixture.PV("pv", "rd", fixture.WithSC("sc")),
			sc:   fixture.SC("sc", map[string]string{allowKey: "false", "allowRemoteVolumeAccess": "true"}),
			want: decide.PolicyLocalOnly, wantSource: decide.SourceStorageClass},
		{name: "parameter of a foreign namespace is ignored",
			pv:   fixture.PV("pv", "rd", fixture.WithSC("sc")),
			sc:   fixture.SC("sc", map[string]string{"example.com/allowRemoteVolumeAccess": "false"}),
			want: flagDefault, wantSource: decide.SourceDefault},
		{name: "LINSTOR property parameter is not the policy",
			pv:   fixture.PV("pv", "rd", fixture.WithSC("sc")),
			sc:   fixture.SC("sc", map[string]string{"property.linstor.csi.linbit.com/allowRemoteVolumeAccess": "false"}),
			want: flagDefault, wantSource: decide.SourceDefault},
		{name: "invalid parameter is an error",
			pv:      fixture.PV("pv", "rd", fixture.WithSC("sc")),
			sc:      fixture.SC("sc", map[string]string{allowKey: "- fromSame: x"}),
			wantErr: true, wantSource: decide.SourceStorageClass},
		{name: "storage class parameter applies to a non-CSI PV too",
			pv:   fixture.PV("pv", "rd", fixture.WithSC("sc"), fixture.WithoutCSI()),
			sc:   fixture.SC("sc", map[string]string{allowKey: "false"}),
			want: decide.PolicyLocalOnly, wantSource: decide.SourceStorageClass},

		// (d) default from the layer list
		{name: "drbd storage layers take the flag default",
			pv:   fixture.PV("pv", "rd", fixture.WithSC("sc")),
			sc:   fixture.SC("sc", map[string]string{"linstor.csi.linbit.com/layerList": "drbd storage"}),
			want: flagDefault, wantSource: decide.SourceDefault},
		{name: "storage layer alone is local only",
			pv:   fixture.PV("pv", "rd", fixture.WithSC("sc")),
			sc:   fixture.SC("sc", map[string]string{"linstor.csi.linbit.com/layerList": "storage"}),
			want: decide.PolicyLocalOnly, wantSource: decide.SourceDefault},
		{name: "nvme storage layers take the flag default",
			pv:   fixture.PV("pv", "rd", fixture.WithSC("sc")),
			sc:   fixture.SC("sc", map[string]string{"layerList": "nvme storage"}),
			want: flagDefault, wantSource: decide.SourceDefault},
		{name: "luks storage layers are local only",
			pv:   fixture.PV("pv", "rd", fixture.WithSC("sc")),
			sc:   fixture.SC("sc", map[string]string{"layerlist": "luks storage"}),
			want: decide.PolicyLocalOnly, wantSource: decide.SourceDefault},
		{name: "storage class without parameters uses the default layer list",
			pv:   fixture.PV("pv", "rd", fixture.WithSC("sc")),
			sc:   fixture.SC("sc", nil),
			want: flagDefault, wantSource: decide.SourceDefault},
		// No StorageClass: static PVs, often pinned by hand; the driver's
		// default says nothing about them (this case once returned it).
		{name: "no storage class named and no policy on the PV is refused",
			pv:      fixture.PV("pv", "rd"),
			wantErr: true, wantNoSC: true, wantSource: decide.SourceDefault},
		{name: "no storage class named but an override annotation",
			pv:   fixture.PV("pv", "rd", fixture.WithAnnotation("override.piraeus.io/policy", "false")),
			want: decide.PolicyLocalOnly, wantSource: decide.SourceAnnotation},
		{name: "no storage class named but a policy in the volume context",
			pv:   fixture.PV("pv", "rd", fixture.WithVolumeAttributes(map[string]string{decide.VolumeContextMarker: "true", decide.VolumeContextPolicyKey: "true"})),
			want: decide.PolicyAnywhere, wantSource: decide.SourceVolumeContext},

		// missing StorageClass
		{name: "storage class named but missing",
			pv:         fixture.PV("pv", "rd", fixture.WithSC("gone")),
			wantErr:    true,
			wantMissSC: true,
			wantSource: decide.SourceStorageClass},
		{name: "storage class missing and volume context unmarked",
			pv:         fixture.PV("pv", "rd", fixture.WithSC("gone"), fixture.WithVolumeAttributes(map[string]string{decide.VolumeContextPolicyKey: "true"})),
			wantErr:    true,
			wantMissSC: true,
			wantSource: decide.SourceStorageClass},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			got, source, err := decide.ResolvePolicy(tc.pv, tc.sc, flagDefault)
			if source != tc.wantSource {
				t.Errorf("source = %q, want %q", source, tc.wantSource)
			}
			if tc.wantErr {
				if err == nil {
					t.Fatalf("ResolvePolicy = %v, want an error", got)
				}
				if errors.Is(err, decide.ErrStorageClassMissing) != tc.wantMissSC {
					t.Errorf("errors.Is(%v, ErrStorageClassMissing) = %v, want %v", err, !tc.wantMissSC, tc.wantMissSC)
				}
				if errors.Is(err, decide.ErrNoStorageClass) != tc.wantNoSC {
					t.Errorf("errors.Is(%v, ErrNoStorageClass) = %v, want %v", err, !tc.wantNoSC, tc.wantNoSC)
				}
				return
			}
			if err != nil {
				t.Fatalf("ResolvePolicy: unexpected error %v", err)
			}
			if !decide.PolicyEqual(got, tc.want) {
				t.Errorf("ResolvePolicy = %v, want %v", got, tc.want)
			}
		})
	}
}

func TestResolvePolicyPicksTheSmallestOverrideKey(t *testing.T) {
	pv := fixture.PV("pv", "rd",
		fixture.WithAnnotation("override.piraeus.io/n2", "false"),
		fixture.WithAnnotation("override.piraeus.io/n1", "true"),
		fixture.WithAnnotation("override.piraeus.io/n3", "false"))
	// Map order varies from run to run; the choice must not.
	for i := 0; i < 50; i++ {
		got, source, err := decide.ResolvePolicy(pv, nil, decide.PolicyLocalOnly)
		if err != nil || source != decide.SourceAnnotation || !decide.PolicyEqual(got, decide.PolicyAnywhere) {
			t.Fatalf("run %d: ResolvePolicy = %v, %q, %v; want anywhere from override.piraeus.io/n1", i, got, source, err)
		}
	}
}

func TestResolvePolicyDefaultIsACopy(t *testing.T) {
	flagDefault := decide.Policy{{FromSame: []string{fixture.ZoneKey}}}
	got, _, err := decide.ResolvePolicy(fixture.PV("pv", "rd", fixture.WithSC("sc")), fixture.SC("sc", nil), flagDefault)
	if err != nil {
		t.Fatal(err)
	}
	got[0].FromSame[0] = "changed"
	if flagDefault[0].FromSame[0] != fixture.ZoneKey {
		t.Errorf("changing the resolved policy changed the configured default to %v", flagDefault)
	}
}
