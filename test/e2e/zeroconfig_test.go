package e2e

import (
	"encoding/base64"
	"io"
	"net/http"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/piraeusdatastore/linstor-affinity-sidecar/test/testbed"
)

// Zero configuration (#4.2): inside the CSI controller pod the sidecar is
// given nothing but the socket, its pod's name and namespace: it runs as the
// container of patches/linstorcluster-sidecar.yaml, as shipped. It reads its
// Pod, finds the linstor-csi container, resolves LS_CONTROLLERS and the TLS
// client certificate (secretKeyRefs on linstor-csi-controller-tls) and
// --property-namespace, and reaches a LINSTOR that accepts only clients with
// a certificate of its CA. It says where each setting came from, never
// what a secret holds, and then repairs a drifted PV over that connection.
func TestZeroConfigReusesTheCSIContainersLinstorConnection(t *testing.T) {
	began := time.Now()
	b := startBed(t, testbed.Options{LinstorTLS: true, NoSidecar: true})
	ctx := testContext(t, 5*time.Minute)
	createStorageClasses(ctx, t, b)
	if !strings.HasPrefix(b.Sim.URL(), "https://") {
		t.Fatalf("simulator at %s, want HTTPS", b.Sim.URL())
	}

	// The simulator must refuse a client without a certificate, or this
	// test would prove nothing about the sidecar's.
	requestsBefore := b.Sim.TotalRequests()
	noCert, err := b.Sim.ClientTLSConfig(false)
	must(t, err)
	bare := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{TLSClientConfig: noCert}}
	if resp, err := bare.Get(b.Sim.URL() + "/v1/nodes"); err == nil {
		_ = resp.Body.Close()
		t.Fatalf("simulator answered %s to a client without a certificate; it must refuse the handshake", resp.Status)
	} else {
		t.Logf("without a client certificate: %v", err)
	}
	if n := b.Sim.TotalRequests(); n != requestsBefore {
		t.Fatalf("a request without a client certificate reached the LINSTOR API (%d requests, was %d)", n, requestsBefore)
	}
	withCert, err := b.Sim.HTTPClient()
	must(t, err)
	resp, err := withCert.Get(b.Sim.URL() + "/v1/nodes")
	must(t, err)
	_, _ = io.Copy(io.Discard, resp.Body)
	_ = resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("with a client certificate: %s", resp.Status)
	}

	material, err := b.CreateControllerPod(ctx)
	must(t, err)
	step(t, began, "Pod %s/%s and Secret %s created", testbed.ControllerNamespace, testbed.ControllerPodName, testbed.ControllerTLSSecret)

	// LINSTOR CSI itself reaches the simulator over HTTPS with its own
	// certificate: provision through it.
	wctx, cancel := within(ctx)
	pvs, err := b.ProvisionVolumes(wctx, testbed.Claim{Name: "zc", StorageClass: "strict", Node: "n1"})
	cancel()
	must(t, err)
	pv := pvs["zc"]
	rd := pv.Spec.CSI.VolumeHandle

	// The container patches/linstorcluster-sidecar.yaml adds, run with its
	// own args and environment (nothing else but the bed's HTTP address).
	wctx, cancel = within(ctx)
	must(t, b.StartControllerPodSidecar(wctx))
	cancel()
	step(t, began, "sidecar ready with the patch's container: no LS_* environment")

	taken, err := b.SidecarLog("LINSTOR setting taken from the CSI container")
	must(t, err)
	got := map[string]string{}
	for _, l := range taken {
		got[l.Fields["setting"]] = l.Fields["value"]
	}
	where := "container linstor-csi of pod " + testbed.ControllerNamespace + "/" + testbed.ControllerPodName
	if v := got["LS_CONTROLLERS"]; !strings.Contains(v, b.Sim.URL()) || !strings.Contains(v, "env LS_CONTROLLERS of "+where) {
		t.Errorf("LS_CONTROLLERS logged as %q, want the simulator's URL and its source (%s)", v, where)
	}
	for name, key := range map[string]string{"LS_ROOT_CA": "ca.crt", "LS_USER_CERTIFICATE": "tls.crt", "LS_USER_KEY": "tls.key"} {
		v, ok := got[name]
		src := "secret " + testbed.ControllerNamespace + "/" + testbed.ControllerTLSSecret + " key " + key
		if !ok || !strings.Contains(v, src) || !strings.Contains(v, "bytes") {
			t.Errorf("%s logged as %q, want its size and source %q", name, v, src)
		}
	}
	ns, err := b.SidecarLog("Property namespace taken from the CSI container")
	must(t, err)
	if len(ns) != 1 || ns[0].Fields["namespace"] != testbed.PropertyNamespace || !strings.Contains(ns[0].Fields["source"], "--property-namespace") {
		t.Errorf("property namespace lines %+v, want one saying %s from --property-namespace", ns, testbed.PropertyNamespace)
	}

	must(t, b.Sim.MoveReplica(rd, "n1", "n3"))
	step(t, began, "replica of %s moved n1 -> n3", rd)
	wctx, cancel = within(ctx)
	defer cancel()
	if _, err := b.WaitPVAffinity(wctx, pv.Name, testbed.Hosts("n3")...); err != nil {
		t.Fatal(err)
	}
	if _, err := b.WaitClaimBound(wctx, "zc", pv.Name); err != nil {
		t.Fatal(err)
	}
	step(t, began, "PV %s repaired over HTTPS", pv.Name)
	if n := repairs(ctx, t, b, map[string]string{"action": "replace", "result": "success"}); n != 1 {
		t.Errorf("repairs_total{action=replace,result=success} = %v, want 1", n)
	}

	// check, as run inside the pod (kubectl exec ... -- /linstor-affinity-sidecar
	// check): the same zero-config discovery, with the container's own
	// environment only.
	res, err := b.RunSidecarCommand(ctx, []string{"POD_NAME=" + testbed.ControllerPodName, "POD_NAMESPACE=" + testbed.ControllerNamespace},
		"check", "-o", "json", "--csi-address="+b.Driver.SocketPath(), "--new-pv-grace-period=0", "--timeout=20s")
	must(t, err)
	if res.ExitCode != 0 || !strings.Contains(res.Stdout, `"inSync": 1`) {
		t.Errorf("check inside the pod exited %d, want 0 with the repaired PV in sync\nstdout:\n%s\nstderr:\n%s", res.ExitCode, res.Stdout, res.Stderr)
	}
	if !strings.Contains(res.Stderr, "LINSTOR setting taken from the CSI container") || strings.Contains(res.Stderr+res.Stdout, "-----BEGIN") {
		t.Errorf("check inside the pod did not say where its LINSTOR settings came from, or showed PEM:\n%s", res.Stderr)
	}

	// No secret in the log: no PEM armour, and no piece of any of the
	// three PEM bodies (the key above all).
	raw, err := os.ReadFile(b.SidecarLogPath())
	must(t, err)
	log := string(raw)
	if strings.Contains(log, "-----BEGIN") || strings.Contains(log, "PRIVATE KEY") {
		t.Errorf("sidecar log contains PEM material")
	}
	for name, pem := range map[string][]byte{"key": material.Key, "certificate": material.Cert, "CA": material.CA} {
		for _, frag := range pemFragments(t, pem) {
			if strings.Contains(log, frag) {
				t.Errorf("sidecar log contains part of the %s (%q)", name, frag)
			}
		}
	}
	assertNoVolumeDeleted(t, b)
}

// pemFragments returns 24-character pieces of a PEM block's base64 body,
// which any logging of the value, escaped or not, would contain.
func pemFragments(t *testing.T, pem []byte) []string {
	t.Helper()
	var body strings.Builder
	for _, line := range strings.Split(string(pem), "\n") {
		if line == "" || strings.HasPrefix(line, "-----") {
			continue
		}
		body.WriteString(line)
	}
	b := body.String()
	if _, err := base64.StdEncoding.DecodeString(b); err != nil || len(b) < 48 {
		t.Fatalf("not a PEM body: %q", b)
	}
	var out []string
	for i := 0; i+24 <= len(b); i += 24 {
		out = append(out, b[i:i+24])
	}
	return out
}
