package e2e

import (
	"encoding/json"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/piraeusdatastore/linstor-affinity-sidecar/test/testbed"
)

// checkReport is the JSON of `check -o json`, as a user's script reads it:
// declared here, not taken from the sidecar's packages, so a renamed field fails.
type checkReport struct {
	Driver  string `json:"driver"`
	Summary struct {
		InSync  int `json:"inSync"`
		Drifted int `json:"drifted"`
		Skipped int `json:"skipped"`
	} `json:"summary"`
	PVs []struct {
		PV       string   `json:"pv"`
		Handle   string   `json:"volumeHandle"`
		Status   string   `json:"status"`
		Decision string   `json:"decision"`
		Reason   string   `json:"reason"`
		Current  string   `json:"currentAffinity"`
		Desired  string   `json:"desiredAffinity"`
		Replicas []string `json:"diskfulReplicas"`
		Driver   string   `json:"driverVolume"`
		Capacity []struct {
			Segment   map[string]string `json:"segment"`
			Available int64             `json:"availableBytes"`
			Error     string            `json:"error"`
		} `json:"capacity"`
	} `json:"pvs"`
}

// `linstor-affinity-sidecar check` (#5.2) run as an operator runs it from a
// laptop, against the bed with no sidecar running: with drift present it
// exits 2 and names the drifted PV with its current and desired affinity
// and the reason, in JSON and as a table, and changes nothing, neither in
// Kubernetes (same UID and resourceVersion) nor in LINSTOR (no request but
// reads); once all is in sync it exits 0; with LINSTOR unreachable, 1.
func TestCheckReportsDriftAndChangesNothing(t *testing.T) {
	began := time.Now()
	b := startBed(t, testbed.Options{NoSidecar: true})
	ctx := testContext(t, 5*time.Minute)
	createStorageClasses(ctx, t, b)

	wctx, cancel := within(ctx)
	pvs, err := b.ProvisionVolumes(wctx,
		testbed.Claim{Name: "chk-strict", StorageClass: "strict", Node: "n1"},
		testbed.Claim{Name: "chk-zone", StorageClass: "zone", Node: "n3"})
	cancel()
	must(t, err)
	strict, zone := pvs["chk-strict"], pvs["chk-zone"]
	rd := strict.Spec.CSI.VolumeHandle
	must(t, b.Sim.MoveReplica(rd, "n1", "n2"))
	step(t, began, "provisioned %s and %s; replica of %s moved n1 -> n2", strict.Name, zone.Name, rd)

	before := snapshotPVs(ctx, t, b, strict.Name, zone.Name)
	writesBefore := linstorWrites(b)
	flags := []string{"--csi-address=" + b.Driver.Endpoint(), "--new-pv-grace-period=0", "--timeout=20s"}
	check := func(env []string, args ...string) testbed.CommandResult {
		t.Helper()
		res, err := b.RunSidecarCommand(ctx, env, "check", append(append([]string(nil), flags...), args...)...)
		must(t, err)
		return res
	}

	res := check(nil, "-o", "json")
	if res.ExitCode != 2 {
		t.Fatalf("check -o json with one drifted PV exited %d, want 2\nstdout:\n%s\nstderr:\n%s", res.ExitCode, res.Stdout, res.Stderr)
	}
	var rep checkReport
	if err := json.Unmarshal([]byte(res.Stdout), &rep); err != nil {
		t.Fatalf("check -o json printed no JSON report: %v\n%s", err, res.Stdout)
	}
	if rep.Driver != testbed.DriverName || rep.Summary.Drifted != 1 || rep.Summary.InSync != 1 || len(rep.PVs) != 2 {
		t.Errorf("report of driver %q, summary %+v, %d PVs; want %s, 1 drifted, 1 in sync, 2 PVs", rep.Driver, rep.Summary, len(rep.PVs), testbed.DriverName)
	}
	for _, row := range rep.PVs {
		switch row.PV {
		case strict.Name:
			if row.Status != "drifted" || row.Decision != "replace" || row.Reason != "drifted" || row.Handle != rd {
				t.Errorf("drifted PV reported as %+v", row)
			}
			if row.Current != "[{linbit.com/hostname=n1}]" || row.Desired != "[{linbit.com/hostname=n2}]" {
				t.Errorf("PV %s: current %q desired %q, want n1 and n2", row.PV, row.Current, row.Desired)
			}
			if len(row.Replicas) != 1 || row.Replicas[0] != "n2" {
				t.Errorf("PV %s: diskful replicas %v, want [n2]", row.PV, row.Replicas)
			}
			// The driver's own view over the socket.
			if row.Driver != "ok" {
				t.Errorf("PV %s: driver's view %q, want ok (ControllerGetVolume)", row.PV, row.Driver)
			}
			if len(row.Capacity) != 1 || row.Capacity[0].Segment[testbed.HostnameKey] != "n2" || row.Capacity[0].Error != "" || row.Capacity[0].Available <= 0 {
				t.Errorf("PV %s: capacity %+v, want GetCapacity of n2 > 0", row.PV, row.Capacity)
			}
		case zone.Name:
			if row.Status != "in-sync" || row.Decision != "none" {
				t.Errorf("in-sync PV reported as %+v", row)
			}
		default:
			t.Errorf("report names unknown PV %s", row.PV)
		}
	}

	// From a laptop without the socket, as the README says: --csi-address=
	// with --driver-name. Same verdict, no driver's view.
	res, err = b.RunSidecarCommand(ctx, nil, "check", "-o", "json", "--csi-address=", "--driver-name="+testbed.DriverName, "--new-pv-grace-period=0")
	must(t, err)
	rep = checkReport{}
	if res.ExitCode != 2 || json.Unmarshal([]byte(res.Stdout), &rep) != nil || rep.Summary.Drifted != 1 {
		t.Errorf("check --csi-address= --driver-name=%s exited %d, want 2 with one drifted PV\n%s%s", testbed.DriverName, res.ExitCode, res.Stdout, res.Stderr)
	}
	for _, row := range rep.PVs {
		if row.Driver != "" || len(row.Capacity) != 0 {
			t.Errorf("check without a CSI socket reports a driver's view of %s: %q %+v", row.PV, row.Driver, row.Capacity)
		}
	}

	res = check(nil)
	if res.ExitCode != 2 {
		t.Fatalf("check (table) exited %d, want 2\n%s%s", res.ExitCode, res.Stdout, res.Stderr)
	}
	var line string
	for _, l := range strings.Split(res.Stdout, "\n") {
		if strings.HasPrefix(l, strict.Name+" ") {
			line = l
		}
	}
	if !strings.Contains(line, "drifted") || !strings.Contains(line, "hostname=n1") || !strings.Contains(line, "hostname=n2") {
		t.Errorf("table line of %s is %q, want status drifted, n1 and n2\n%s", strict.Name, line, res.Stdout)
	}
	if !strings.Contains(res.Stdout, "1 would change") {
		t.Errorf("table has no summary saying 1 would change:\n%s", res.Stdout)
	}
	step(t, began, "check reported the drift (exit 2):\n%s", res.Stdout)

	assertUntouched(ctx, t, b, before)
	if w := linstorWrites(b); w != writesBefore {
		t.Errorf("LINSTOR got writes during check: %d, was %d (%v)", w, writesBefore, b.Sim.RequestCounts())
	}
	if evs := events(ctx, t, b, "", "PersistentVolume", strict.Name); len(evs) != 0 {
		t.Errorf("check recorded events on %s: %q", strict.Name, evs)
	}
	assertNoSavedState(t, b, rd, 1)

	must(t, b.Sim.MoveReplica(rd, "n2", "n1"))
	res = check(nil, "-o", "json")
	if res.ExitCode != 0 {
		t.Fatalf("check with all in sync exited %d, want 0\n%s%s", res.ExitCode, res.Stdout, res.Stderr)
	}
	rep = checkReport{}
	must(t, json.Unmarshal([]byte(res.Stdout), &rep))
	if rep.Summary.Drifted != 0 || rep.Summary.InSync != 2 {
		t.Errorf("summary with all in sync: %+v", rep.Summary)
	}
	step(t, began, "check with all in sync: exit 0")

	l, err := net.Listen("tcp", "127.0.0.1:0")
	must(t, err)
	closed := l.Addr().String()
	must(t, l.Close())
	res = check([]string{"LS_CONTROLLERS=http://" + closed}, "-o", "json")
	if res.ExitCode != 1 {
		t.Fatalf("check with LINSTOR unreachable exited %d, want 1\n%s%s", res.ExitCode, res.Stdout, res.Stderr)
	}
	if strings.TrimSpace(res.Stdout) != "" {
		t.Errorf("check with LINSTOR unreachable printed a report:\n%s", res.Stdout)
	}
	if !strings.Contains(res.Stderr, closed) {
		t.Errorf("check's error does not say which LINSTOR it could not reach (%s):\n%s", closed, res.Stderr)
	}
	step(t, began, "check with LINSTOR unreachable: exit 1: %s", strings.TrimSpace(res.Stderr))
	assertUntouched(ctx, t, b, before)
	assertNoVolumeDeleted(t, b)
}

// linstorWrites counts the LINSTOR REST requests that are not reads.
func linstorWrites(b *testbed.Bed) int64 {
	var n int64
	for route, c := range b.Sim.RequestCounts() {
		if !strings.HasPrefix(route, "GET ") {
			n += c
		}
	}
	return n
}
