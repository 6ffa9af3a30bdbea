package sidecar

import (
	"errors"
	"testing"

	corev1 "k8s.io/api/core/v1"
	storagev1 "k8s.io/api/storage/v1"
)

func TestResolvePolicy(t *testing.T) {
	const (
		allowKey   = "linstor.csi.linbit.com/allowRemoteVolumeAccess"
		zoneText   = "- fromSame: [topology.kubernetes.io/zone]"
		regionText = "[{fromSame: [topology.kubernetes.io/region]}]"
	)
	zonePolicy := Policy{{FromSame: []string{fxZoneKey}}}
	regionPolicy := Policy{{FromSame: []string{fxRegion}}}
	// The --default-remote-access-policy of these tests is deliberately neither
	// true nor false, so a result equal to it can only come from the flag.
	flagDefault := Policy{{FromSame: []string{"example.com/rack"}}}
	marked := func(extra map[string]string) map[string]string {
		m := map[string]string{VolumeContextMarker: "true"}
		for k, v := range extra {
			m[k] = v
		}
		return m
	}

	cases := []struct {
		name       string
		pv         *corev1.PersistentVolume
		sc         *storagev1.StorageClass
		want       Policy
		wantSource PolicySource
		wantErr    bool
		wantMissSC bool
		wantNoSC   bool
	}{
		// (a) annotation
		{name: "annotation overrides volume context and storage class",
			pv: mkPV("pv", "rd", withSC("sc"), withAnnotation("override.piraeus.io/n1", "true"),
				withVolumeAttributes(marked(map[string]string{VolumeContextPolicyKey: "false"}))),
			sc:   mkSC("sc", map[string]string{allowKey: "false"}),
			want: PolicyAnywhere, wantSource: SourceAnnotation},
		{name: "annotation key equal to the bare prefix counts",
			pv:   mkPV("pv", "rd", withAnnotation("override.piraeus.io", zoneText)),
			want: zonePolicy, wantSource: SourceAnnotation},
		{name: "annotation outside the prefix is ignored",
			pv:   mkPV("pv", "rd", withSC("sc"), withAnnotation("piraeus.io/override", "true")),
			sc:   mkSC("sc", map[string]string{allowKey: "false"}),
			want: PolicyLocalOnly, wantSource: SourceStorageClass},
		{name: "invalid annotation is an error, not a fall-through",
			pv:      mkPV("pv", "rd", withSC("sc"), withAnnotation("override.piraeus.io/x", "maybe")),
			sc:      mkSC("sc", map[string]string{allowKey: "false"}),
			wantErr: true, wantSource: SourceAnnotation},
		{name: "annotation gives the policy when the storage class is gone",
			pv:   mkPV("pv", "rd", withSC("gone"), withAnnotation("override.piraeus.io/x", "false")),
			want: PolicyLocalOnly, wantSource: SourceAnnotation},

		// (b) volume context
		{name: "volume context with marker overrides storage class",
			pv: mkPV("pv", "rd", withSC("sc"),
				withVolumeAttributes(marked(map[string]string{VolumeContextPolicyKey: zoneText}))),
			sc:   mkSC("sc", map[string]string{allowKey: "true"}),
			want: zonePolicy, wantSource: SourceVolumeContext},
		{name: "volume context without marker is ignored",
			pv: mkPV("pv", "rd", withSC("sc"),
				withVolumeAttributes(map[string]string{VolumeContextPolicyKey: "true"})),
			sc:   mkSC("sc", map[string]string{allowKey: regionText}),
			want: regionPolicy, wantSource: SourceStorageClass},
		{name: "marker without policy key falls through to storage class",
			pv:   mkPV("pv", "rd", withSC("sc"), withVolumeAttributes(marked(nil))),
			sc:   mkSC("sc", map[string]string{allowKey: "false"}),
			want: PolicyLocalOnly, wantSource: SourceStorageClass},
		{name: "invalid volume context policy is an error",
			pv: mkPV("pv", "rd", withSC("sc"),
				withVolumeAttributes(marked(map[string]string{VolumeContextPolicyKey: "{}"}))),
			sc:      mkSC("sc", map[string]string{allowKey: "false"}),
			wantErr: true, wantSource: SourceVolumeContext},
		{name: "volume context gives the policy when the storage class is gone",
			pv: mkPV("pv", "rd", withSC("gone"),
				withVolumeAttributes(marked(map[string]string{VolumeContextPolicyKey: "false"}))),
			want: PolicyLocalOnly, wantSource: SourceVolumeContext},

		// (c) StorageClass parameter
		{name: "prefixed parameter overrides the layer list default",
			pv:   mkPV("pv", "rd", withSC("sc")),
			sc:   mkSC("sc", map[string]string{allowKey: "true", "linstor.csi.linbit.com/layerList": "storage"}),
			want: PolicyAnywhere, wantSource: SourceStorageClass},
		{name: "parameter without prefix",
			pv:   mkPV("pv", "rd", withSC("sc")),
			sc:   mkSC("sc", map[string]string{"allowRemoteVolumeAccess": zoneText}),
			want: zonePolicy, wantSource: SourceStorageClass},
		{name: "parameter without prefix in upper case",
			pv:   mkPV("pv", "rd", withSC("sc")),
			sc:   mkSC("sc", map[string]string{"ALLOWREMOTEVOLUMEACCESS": "false"}),
			want: PolicyLocalOnly, wantSource: SourceStorageClass},
		{name: "prefixed parameter in lower case",
			pv:   mkPV("pv", "rd", withSC("sc")),
			sc:   mkSC("sc", map[string]string{"linstor.csi.linbit.com/allowremotevolumeaccess": "false"}),
			want: PolicyLocalOnly, wantSource: SourceStorageClass},
		{name: "prefixed parameter wins over unprefixed",
			pv:   mkPV("pv", "rd", withSC("sc")),
			sc:   mkSC("sc", map[string]string{allowKey: "false", "allowRemoteVolumeAccess": "true"}),
			want: PolicyLocalOnly, wantSource: SourceStorageClass},
		{name: "parameter of a foreign namespace is ignored",
			pv:   mkPV("pv", "rd", withSC("sc")),
			sc:   mkSC("sc", map[string]string{"example.com/allowRemoteVolumeAccess": "false"}),
			want: flagDefault, wantSource: SourceDefault},
		{name: "LINSTOR property parameter is not the policy",
			pv:   mkPV("pv", "rd", withSC("sc")),
			sc:   mkSC("sc", map[string]string{"property.linstor.csi.linbit.com/allowRemoteVolumeAccess": "false"}),
			want: flagDefault, wantSource: SourceDefault},
		{name: "invalid parameter is an error",
			pv:      mkPV("pv", "rd", withSC("sc")),
			sc:      mkSC("sc", map[string]string{allowKey: "- fromSame: x"}),
			wantErr: true, wantSource: SourceStorageClass},
		{name: "storage class parameter applies to a non-CSI PV too",
			pv:   mkPV("pv", "rd", withSC("sc"), withoutCSI()),
			sc:   mkSC("sc", map[string]string{allowKey: "false"}),
			want: PolicyLocalOnly, wantSource: SourceStorageClass},

		// (d) default from the layer list
		{name: "drbd storage layers take the flag default",
			pv:   mkPV("pv", "rd", withSC("sc")),
			sc:   mkSC("sc", map[string]string{"linstor.csi.linbit.com/layerList": "drbd storage"}),
			want: flagDefault, wantSource: SourceDefault},
		{name: "storage layer alone is local only",
			pv:   mkPV("pv", "rd", withSC("sc")),
			sc:   mkSC("sc", map[string]string{"linstor.csi.linbit.com/layerList": "storage"}),
			want: PolicyLocalOnly, wantSource: SourceDefault},
		{name: "nvme storage layers take the flag default",
			pv:   mkPV("pv", "rd", withSC("sc")),
			sc:   mkSC("sc", map[string]string{"layerList": "nvme storage"}),
			want: flagDefault, wantSource: SourceDefault},
		{name: "luks storage layers are local only",
			pv:   mkPV("pv", "rd", withSC("sc")),
			sc:   mkSC("sc", map[string]string{"layerlist": "luks storage"}),
			want: PolicyLocalOnly, wantSource: SourceDefault},
		{name: "storage class without parameters uses the default layer list",
			pv:   mkPV("pv", "rd", withSC("sc")),
			sc:   mkSC("sc", nil),
			want: flagDefault, wantSource: SourceDefault},
		// No StorageClass: static PVs, often pinned by hand; the driver's
		// default says nothing about them (this case once returned it).
		{name: "no storage class named and no policy on the PV is refused",
			pv:      mkPV("pv", "rd"),
			wantErr: true, wantNoSC: true, wantSource: SourceDefault},
		{name: "no storage class named but an override annotation",
			pv:   mkPV("pv", "rd", withAnnotation("override.piraeus.io/policy", "false")),
			want: PolicyLocalOnly, wantSource: SourceAnnotation},
		{name: "no storage class named but a policy in the volume context",
			pv:   mkPV("pv", "rd", withVolumeAttributes(map[string]string{VolumeContextMarker: "true", VolumeContextPolicyKey: "true"})),
			want: PolicyAnywhere, wantSource: SourceVolumeContext},

		// missing StorageClass
		{name: "storage class named but missing",
			pv:         mkPV("pv", "rd", withSC("gone")),
			wantErr:    true,
			wantMissSC: true,
			wantSource: SourceStorageClass},
		{name: "storage class missing and volume context unmarked",
			pv:         mkPV("pv", "rd", withSC("gone"), withVolumeAttributes(map[string]string{VolumeContextPolicyKey: "true"})),
			wantErr:    true,
			wantMissSC: true,
			wantSource: SourceStorageClass},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			got, source, err := ResolvePolicy(tc.pv, tc.sc, flagDefault)
			if source != tc.wantSource {
				t.Errorf("source = %q, want %q", source, tc.wantSource)
			}
			if tc.wantErr {
				if err == nil {
					t.Fatalf("ResolvePolicy = %v, want an error", got)
				}
				if errors.Is(err, ErrStorageClassMissing) != tc.wantMissSC {
					t.Errorf("errors.Is(%v, ErrStorageClassMissing) = %v, want %v", err, !tc.wantMissSC, tc.wantMissSC)
				}
				if errors.Is(err, ErrNoStorageClass) != tc.wantNoSC {
					t.Errorf("errors.Is(%v, ErrNoStorageClass) = %v, want %v", err, !tc.wantNoSC, tc.wantNoSC)
				}
				return
			}
			if err != nil {
				t.Fatalf("ResolvePolicy: unexpected error %v", err)
			}
			if !policyEqual(got, tc.want) {
				t.Errorf("ResolvePolicy = %v, want %v", got, tc.want)
			}
		})
	}
}

func TestResolvePolicyPicksTheSmallestOverrideKey(t *testing.T) {
	pv := mkPV("pv", "rd",
		withAnnotation("override.piraeus.io/n2", "false"),
		withAnnotation("override.piraeus.io/n1", "true"),
		withAnnotation("override.piraeus.io/n3", "false"))
	// Map order varies from run to run; the choice must not.
	for i := 0; i < 50; i++ {
		got, source, err := ResolvePolicy(pv, nil, PolicyLocalOnly)
		if err != nil || source != SourceAnnotation || !policyEqual(got, PolicyAnywhere) {
			t.Fatalf("run %d: ResolvePolicy = %v, %q, %v; want anywhere from override.piraeus.io/n1", i, got, source, err)
		}
	}
}

func TestResolvePolicyDefaultIsACopy(t *testing.T) {
	flagDefault := Policy{{FromSame: []string{fxZoneKey}}}
	got, _, err := ResolvePolicy(mkPV("pv", "rd", withSC("sc")), mkSC("sc", nil), flagDefault)
	if err != nil {
		t.Fatal(err)
	}
	got[0].FromSame[0] = "changed"
	if flagDefault[0].FromSame[0] != fxZoneKey {
		t.Errorf("changing the resolved policy changed the configured default to %v", flagDefault)
	}
}
