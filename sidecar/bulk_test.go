package sidecar

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"fmt"
	"io"
	"math/big"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	lapi "github.com/LINBIT/golinstor/client"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/labels"
	corelisters "k8s.io/client-go/listers/core/v1"

	"github.com/piraeusdatastore/linstor-affinity-sidecar/sidecar/podconfig"
	"github.com/piraeusdatastore/linstor-affinity-sidecar/test/linstorsim"
)

// countingTransport counts the requests that reach LINSTOR.
type countingTransport struct {
	base http.RoundTripper
	n    atomic.Int64
}

func (c *countingTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	c.n.Add(1)
	return c.base.RoundTrip(req)
}

// bulkLinstor is a Linstor on a BulkTransport against the bed's LINSTOR,
// with the requests it sends counted.
func (b *exBed) bulkLinstor(maxReuse time.Duration) (*Linstor, *countingTransport) {
	b.t.Helper()
	u, err := url.Parse(b.url)
	b.must(err)
	ct := &countingTransport{base: http.DefaultTransport.(*http.Transport).Clone()}
	bt := NewBulkTransport(ct)
	lc, err := lapi.NewClient(lapi.BaseURL(u), lapi.Log(quietLog{}), lapi.HTTPClient(&http.Client{Transport: bt}))
	b.must(err)
	return NewBulkLinstor(lc, bt, NamespaceTopology, maxReuse), ct
}

// newSimBed is newExBed on the LINSTOR simulator (opts say whether in
// realistic mode) instead of fakelinstor, with the same nodes.
func newSimBed(t *testing.T, opts linstorsim.Options) (*exBed, *linstorsim.Sim) {
	t.Helper()
	sim := linstorsim.New(opts)
	if err := sim.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = sim.Close() })
	lc, err := sim.NewClient()
	if err != nil {
		t.Fatal(err)
	}
	b := newBedOn(t, sim.URL(), lc)
	for _, n := range []string{"n1", "n2", "n3", "n4"} {
		b.must(sim.AddNode(n, map[string]string{NamespaceTopology + "/topology.kubernetes.io/zone": "z-" + n},
			linstorsim.StoragePool{Name: "thin", Provider: lapi.LVM_THIN, TotalKiB: 1 << 30}))
	}
	return b, sim
}

func sameView(t *testing.T, what string, got, want *View) {
	t.Helper()
	g, w := *got, *want
	g.FetchedAt, w.FetchedAt, g.Unchanged, w.Unchanged = time.Time{}, time.Time{}, false, false
	if !reflect.DeepEqual(g, w) {
		t.Fatalf("%s: view differs from golinstor's\n got %+v\nwant %+v", what, g, w)
	}
}

// decisionView is what decisions read of a view: node topology, the
// definitions' skip and saved-state properties, and where the replicas are
// and whether they count as diskful.
func decisionView(v *View) map[string]any {
	rds := map[string]any{}
	for name, rd := range v.RDs {
		var replicas []string
		for _, r := range rd.Resources {
			replicas = append(replicas, fmt.Sprintf("%s/%s diskful=%v", r.Name, r.Node, r.Diskful()))
		}
		slices.Sort(replicas)
		rds[name] = []any{rd.Skip, rd.LegacySaved, rd.Volumes, replicas}
	}
	return map[string]any{"nodes": v.Nodes, "rds": rds}
}

func (b *exBed) setVDProp(rd string, vol int, key, value string) {
	b.t.Helper()
	b.must(b.lc.ResourceDefinitions.ModifyVolumeDefinition(context.Background(), rd, vol, lapi.VolumeDefinitionModify{
		GenericPropsModify: lapi.GenericPropsModify{OverrideProps: lapi.OverrideProps{key: value}},
	}))
}

// The trimmed decoding sees exactly what golinstor's full decoding sees:
// nodes and their topology, saved-state properties, volume
// definitions, diskless and diskful replicas; against a LINSTOR whose
// answers never repeat, too.
func TestBulkFetchSeesWhatGolinstorSees(t *testing.T) {
	realistic, _ := newSimBed(t, linstorsim.Options{Realistic: true})
	for name, b := range map[string]*exBed{"fakelinstor": newExBed(t), "realistic simulator": realistic} {
		t.Run(name, func(t *testing.T) {
			b.addVolume("vol-a", 2, []string{"n1", "n2"}, []string{"n1", "n2"})
			b.addVolume("vol-b", 1, []string{"n3"}, []string{"n4"})
			b.must(b.lc.Resources.Create(context.Background(), lapi.ResourceCreate{Resource: lapi.Resource{Name: "vol-b", NodeName: "n4", Flags: []string{"DISKLESS", "DRBD_DISKLESS"}}}))
			b.setVDProp("vol-b", 0, SavedPVKey, `{"metadata":{"name":"pv-vol-b-0"}}`)

			bulk, _ := b.bulkLinstor(0)
			got, err := bulk.Fetch(context.Background())
			b.must(err)
			want, err := b.linstor.Fetch(context.Background())
			b.must(err)
			sameView(t, "first fetch", got, want)
			if got.Unchanged {
				t.Fatal("first fetch reported unchanged")
			}
			if len(got.RDs["vol-a"].Volumes) != 2 || got.RDs["vol-b"].Volumes[0] == "" || len(got.RDs["vol-b"].Resources) != 2 {
				t.Fatalf("trimmed view lost data: %+v %+v", got.RDs["vol-a"], got.RDs["vol-b"])
			}
		})
	}
}

// Every fetch is one request per list, whether anything changed or not, so
// no decision rests on data older than one cycle and a change costs nothing
// more. Nothing changed: the view is the last one, marked unchanged.
func TestBulkFetchSendsOneRequestPerList(t *testing.T) {
	b := newExBed(t)
	b.addVolume("vol-a", 1, []string{"n1", "n2"}, []string{"n1", "n2"})
	bulk, count := b.bulkLinstor(0)
	ctx := context.Background()
	fetch := func(what string, wantUnchanged bool) *View {
		t.Helper()
		v, err := bulk.Fetch(ctx)
		b.must(err)
		if n := count.n.Swap(0); n != 3 {
			t.Fatalf("%s: %d requests, want 3", what, n)
		}
		if v.Unchanged != wantUnchanged {
			t.Fatalf("%s: Unchanged=%v", what, v.Unchanged)
		}
		want, err := b.linstor.Fetch(ctx)
		b.must(err)
		sameView(t, what, v, want)
		return v
	}
	first := fetch("first fetch", false)
	second := fetch("nothing changed", true)
	if !second.FetchedAt.After(first.FetchedAt) {
		t.Fatalf("unchanged fetch: FetchedAt %v not after %v", second.FetchedAt, first.FetchedAt)
	}
	b.setVDProp("vol-a", 0, SavedPVKey, `{"metadata":{"name":"pv-vol-a-0"}}`)
	if v := fetch("saved state written", false); v.RDs["vol-a"].Volumes[0] == "" {
		t.Fatal("saved state not seen")
	}
	b.must(b.lc.Resources.Create(ctx, lapi.ResourceCreate{Resource: lapi.Resource{Name: "vol-a", NodeName: "n3"}}))
	if v := fetch("replica added", false); len(v.RDs["vol-a"].Resources) != 3 {
		t.Fatalf("new replica not seen: %v", v.RDs["vol-a"].Resources)
	}
	fetch("nothing changed since", true)
}

// Against a LINSTOR whose answers differ in every request (allocated sizes,
// DRBD states, in-use, report times), a view is unchanged as long as nothing
// a decision reads changed, and changed as soon as something did: a
// resource, a flag that decides whether it counts, a node or a property.
func TestBulkFetchUnchangedMeansWhatDecisionsReadIsUnchanged(t *testing.T) {
	b, sim := newSimBed(t, linstorsim.Options{Realistic: true, DeleteWindow: -1})
	b.addVolume("vol-a", 2, []string{"n1", "n2"}, []string{"n1", "n2"})
	b.addVolume("vol-b", 1, []string{"n2", "n3"}, []string{"n2", "n3"})
	bulk, count := b.bulkLinstor(0)
	ctx := context.Background()
	view := func() []byte {
		resp, err := http.Get(sim.URL() + "/v1/view/resources")
		b.must(err)
		defer resp.Body.Close()
		body, err := io.ReadAll(resp.Body)
		b.must(err)
		return body
	}
	if bytes.Equal(view(), view()) {
		t.Fatal("the simulator's view did not change between requests: not realistic")
	}
	if v, err := bulk.Fetch(ctx); err != nil || v.Unchanged {
		t.Fatalf("first fetch: %v, unchanged %v", err, v != nil && v.Unchanged)
	}
	setRDProp := func(key, value string) func() error {
		return func() error { return sim.SetRDProps("vol-a", map[string]string{key: value}) }
	}
	for _, tc := range []struct {
		name    string
		change  func() error
		changed bool
	}{
		{"nothing but LINSTOR's running state", func() error { return nil }, false},
		{"a replica fails and is in use", func() error {
			if err := sim.SetReplicaHealthy("vol-a", "n1", false); err != nil {
				return err
			}
			return sim.SetReplicaInUse("vol-b", "n3", true)
		}, false},
		{"a flag that does not change what counts", func() error { return sim.SetReplicaFlags("vol-a", "n2", "RESIZE") }, false},
		{"a property decisions do not read", setRDProp("Aux/other", "x"), false},
		{"a node property outside the namespace", func() error { return sim.SetNodeProps("n4", map[string]string{"Aux/other/rack": "r1"}) }, false},
		{"a replica added", func() error { return sim.AddReplica("vol-a", "n3", linstorsim.Diskful) }, true},
		{"a replica flagged DELETE", func() error { return sim.SetReplicaFlags("vol-a", "n3", "DELETE") }, true},
		{"a replica flagged DRBD_DELETE", func() error { return sim.SetReplicaFlags("vol-b", "n2", "DRBD_DELETE") }, true},
		{"a replica removed", func() error { return sim.DeleteReplica("vol-a", "n3") }, true},
		{"a replica moved", func() error { return sim.MoveReplica("vol-a", "n2", "n4") }, true},
		{"a diskless replica added", func() error { return sim.AddReplica("vol-b", "n1", linstorsim.TieBreaker) }, true},
		{"a node topology property", func() error {
			return sim.SetNodeProps("n1", map[string]string{NamespaceTopology + "/topology.kubernetes.io/zone": "z-moved"})
		}, true},
		{"a node added", func() error { return sim.AddNode("n5", nil, linstorsim.StoragePool{Name: "thin"}) }, true},
		{"the skip property", setRDProp(SkipRDKey, "yes"), true},
		{"saved state on the resource definition", setRDProp(SavedPVKey, `{"metadata":{"name":"x"}}`), true},
		{"saved state on a volume definition", func() error {
			return sim.SetVDProps("vol-b", 0, map[string]string{SavedPVKey: `{"metadata":{"name":"y"}}`})
		}, true},
		{"a volume definition added", func() error {
			return b.lc.ResourceDefinitions.CreateVolumeDefinition(ctx, "vol-b", lapi.VolumeDefinitionCreate{VolumeDefinition: lapi.VolumeDefinition{SizeKib: 1024}})
		}, true},
		{"a volume removed", func() error { return sim.DeleteVolume("vol-b") }, true},
		{"nothing since", func() error { return nil }, false},
	} {
		b.must(tc.change())
		count.n.Store(0)
		got, err := bulk.Fetch(ctx)
		b.must(err)
		if n := count.n.Load(); n != 3 {
			t.Errorf("%s: %d requests, want 3", tc.name, n)
		}
		if got.Unchanged == tc.changed {
			t.Errorf("%s: Unchanged=%v, want %v", tc.name, got.Unchanged, !tc.changed)
		}
		want, err := b.linstor.Fetch(ctx)
		b.must(err)
		if g, w := decisionView(got), decisionView(want); !reflect.DeepEqual(g, w) {
			t.Fatalf("%s: decisions would read\n%v\nwhere golinstor's full decoding gives\n%v", tc.name, g, w)
		}
	}
}

// A view is reported unchanged for maxReuse at most in a row; then once as
// changed, so the loop decides afresh.
func TestBulkFetchReportsChangedAfterMaxReuse(t *testing.T) {
	b := newExBed(t)
	b.addVolume("vol-a", 1, []string{"n1"}, []string{"n1"})
	bulk, _ := b.bulkLinstor(time.Nanosecond)
	for i := 0; i < 2; i++ {
		v, err := bulk.Fetch(context.Background())
		b.must(err)
		if v.Unchanged {
			t.Fatalf("fetch %d reported unchanged past maxReuse", i)
		}
	}
}

// countingLister counts how often the loop lists PVs, i.e. decides.
type countingLister struct {
	corelisters.PersistentVolumeLister
	lists int
}

func (c *countingLister) List(sel labels.Selector) ([]*corev1.PersistentVolume, error) {
	c.lists++
	return c.PersistentVolumeLister.List(sel)
}

// skipUnchangedLoop is a reconciler with SkipUnchanged on the bed's bulk
// LINSTOR, and a cycle that checks how often it decided in all.
func (b *exBed) skipUnchangedLoop() (*Reconciler, func(wantLists int, what string)) {
	r, _ := b.reconciler(nil)
	bulk, _ := b.bulkLinstor(0)
	r.linstor, r.opts.SkipUnchanged = bulk, true
	lister := &countingLister{PersistentVolumeLister: r.pvs}
	r.pvs = lister
	return r, func(wantLists int, what string) {
		b.t.Helper()
		b.must(r.Cycle(context.Background()))
		if lister.lists != wantLists {
			b.t.Fatalf("%s: decided %d times in all, want %d", what, lister.lists, wantLists)
		}
	}
}

// With SkipUnchanged, a cycle that would decide on exactly the inputs of a
// quiet cycle skips deciding; any PV/StorageClass change or LINSTOR change
// makes it decide again, and a drift is repaired.
func TestSkipUnchangedDecidesOnlyWhenSomethingChanged(t *testing.T) {
	b := newExBed(t)
	pvs := b.addVolume("vol-a", 1, []string{"n1"}, []string{"n1"})
	r, cycle := b.skipUnchangedLoop()
	ctx := context.Background()
	cycle(1, "first cycle")
	cycle(1, "nothing changed")
	cycle(1, "still nothing changed")
	r.NoteInputChange()
	cycle(2, "a PV changed")
	cycle(2, "nothing changed since")

	// A replica is added: LINSTOR's answer changes, so the loop decides and repairs.
	b.must(b.lc.Resources.Create(ctx, lapi.ResourceCreate{Resource: lapi.Resource{Name: "vol-a", NodeName: "n2"}}))
	cycle(3, "a replica was added")
	if got := b.affinityOf(pvs[0].Name); got != "[{linbit.com/hostname=n1} {linbit.com/hostname=n2}]" {
		t.Fatalf("moved volume not repaired: %s", got)
	}
	// It wrote the PV: until the cache shows it, cycles decide every time.
	cycle(4, "awaiting the cache")
}

func TestAPIResource(t *testing.T) {
	for path, want := range map[string]string{
		"/api/v1/persistentvolumes":                                    "persistentvolumes",
		"/api/v1/persistentvolumes/{name}":                             "persistentvolumes",
		"/api/v1/namespaces/{namespace}/events":                        "events",
		"/api/v1/namespaces/{namespace}":                               "namespaces",
		"/apis/coordination.k8s.io/v1/namespaces/{namespace}/leases/x": "leases",
		"/apis/storage.k8s.io/v1/storageclasses":                       "storageclasses",
		"/version":                                                     "other",
		"/apis":                                                        "other",
	} {
		if got := APIResource(path); got != want {
			t.Errorf("APIResource(%q) = %q, want %q", path, got, want)
		}
	}
}

// selfSigned returns a PEM certificate and key for tests.
func selfSigned(t *testing.T) (certPEM, keyPEM string) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "test"}, NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour), IsCA: true, BasicConstraintsValid: true}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	kder, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	return string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})), string(pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kder}))
}

// The transport under golinstor sets TLS up from the settings with
// golinstor's rules.
func TestLinstorTransportFollowsGolinstorsRules(t *testing.T) {
	tlsOf := func(t *testing.T, s podconfig.Linstor) *tls.Config {
		t.Helper()
		rt, err := linstorTransport(s)
		if err != nil {
			t.Fatal(err)
		}
		return rt.(*http.Transport).TLSClientConfig
	}
	if cfg := tlsOf(t, podconfig.Linstor{Controllers: "http://linstor:3370"}); cfg != nil && (cfg.RootCAs != nil || len(cfg.Certificates) > 0 || cfg.GetClientCertificate != nil) {
		t.Fatalf("no TLS setting: got a TLS setup %+v", cfg)
	}
	certPEM, keyPEM := selfSigned(t)

	t.Run("CA and client certificate as PEM", func(t *testing.T) {
		cfg := tlsOf(t, podconfig.Linstor{RootCA: certPEM, UserCertificate: certPEM, UserKey: keyPEM})
		if cfg.RootCAs == nil || len(cfg.Certificates) != 1 {
			t.Fatalf("TLS setup %+v, want the CA and one client certificate", cfg)
		}
	})
	t.Run("files are read at each handshake", func(t *testing.T) {
		dir := t.TempDir()
		certFile, keyFile := filepath.Join(dir, "tls.crt"), filepath.Join(dir, "tls.key")
		if err := os.WriteFile(certFile, []byte(certPEM), 0o600); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(keyFile, []byte(keyPEM), 0o600); err != nil {
			t.Fatal(err)
		}
		cfg := tlsOf(t, podconfig.Linstor{UserCertificateFile: certFile, UserKeyFile: keyFile})
		if cfg.GetClientCertificate == nil {
			t.Fatal("no client certificate callback for *_FILE settings")
		}
		if _, err := cfg.GetClientCertificate(nil); err != nil {
			t.Fatalf("client certificate from files: %v", err)
		}
		if err := os.Remove(certFile); err != nil {
			t.Fatal(err)
		}
		if _, err := cfg.GetClientCertificate(nil); err == nil {
			t.Fatal("a removed certificate file still gave a certificate: files are not read at each handshake")
		}
	})
	t.Run("key without certificate is refused", func(t *testing.T) {
		if _, err := linstorTransport(podconfig.Linstor{UserKey: keyPEM}); err == nil {
			t.Fatal("a key without a certificate was accepted")
		}
	})
	t.Run("a CA that is not PEM is refused", func(t *testing.T) {
		if _, err := linstorTransport(podconfig.Linstor{RootCA: "not a certificate"}); err == nil {
			t.Fatal("a bad CA was accepted")
		}
	})
}

// The client NewLinstorClient builds from the settings reaches a LINSTOR
// controller that asks for a client certificate exactly when golinstor's
// own client, built from the same settings in the environment, does: the
// two TLS setups cannot drift apart unnoticed. The settings never pass
// through the environment on the sidecar's side (it is cleared).
func TestLinstorClientConnectsWhereGolinstorDoes(t *testing.T) {
	sim := linstorsim.New(linstorsim.Options{RequireClientCert: true})
	if err := sim.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = sim.Close() })
	if err := sim.AddNode("n1", nil); err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	files, err := sim.WriteClientFiles(dir)
	if err != nil {
		t.Fatal(err)
	}
	certPEM, keyPEM, err := sim.IssueClientCert("sidecar")
	if err != nil {
		t.Fatal(err)
	}
	caPEM := string(sim.CACertPEM())
	// golinstor cannot parse an IP address without a scheme.
	hostPort := strings.Replace(strings.TrimPrefix(sim.URL(), "https://"), "127.0.0.1", "localhost", 1)
	other, _ := selfSigned(t)

	cases := []struct {
		name    string
		env     map[string]string
		reaches bool
	}{
		{"PEM content", map[string]string{"LS_CONTROLLERS": sim.URL(), "LS_ROOT_CA": caPEM, "LS_USER_CERTIFICATE": string(certPEM), "LS_USER_KEY": string(keyPEM)}, true},
		{"files", map[string]string{"LS_CONTROLLERS": sim.URL(), "LS_ROOT_CA_FILE": files.CA, "LS_USER_CERTIFICATE_FILE": files.Cert, "LS_USER_KEY_FILE": files.Key}, true},
		{"controller without a scheme", map[string]string{"LS_CONTROLLERS": hostPort, "LS_ROOT_CA_FILE": files.CA, "LS_USER_CERTIFICATE_FILE": files.Cert, "LS_USER_KEY_FILE": files.Key}, true},
		{"linstor+ssl scheme", map[string]string{"LS_CONTROLLERS": "linstor+ssl://" + hostPort, "LS_ROOT_CA": caPEM, "LS_USER_CERTIFICATE": string(certPEM), "LS_USER_KEY": string(keyPEM)}, true},
		{"no client certificate", map[string]string{"LS_CONTROLLERS": sim.URL(), "LS_ROOT_CA": caPEM}, false},
		{"another CA", map[string]string{"LS_CONTROLLERS": sim.URL(), "LS_ROOT_CA": other, "LS_USER_CERTIFICATE": string(certPEM), "LS_USER_KEY": string(keyPEM)}, false},
		{"no TLS settings", map[string]string{"LS_CONTROLLERS": sim.URL()}, false},
	}
	reaches := func(c *lapi.Client) error {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		_, err := c.Nodes.GetAll(ctx)
		return err
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			for _, name := range podconfig.LinstorEnv() {
				t.Setenv(name, tc.env[name])
				if tc.env[name] == "" {
					_ = os.Unsetenv(name)
				}
			}
			theirs, err := lapi.NewClient(lapi.Log(quietLog{}))
			if err != nil {
				t.Fatal(err)
			}
			theirErr := reaches(theirs)

			settings, _ := podconfig.LinstorFrom(os.LookupEnv)
			for _, name := range podconfig.LinstorEnv() {
				_ = os.Unsetenv(name)
			}
			ours, _, err := NewLinstorClient(settings, lapi.Log(quietLog{}))
			if err != nil {
				t.Fatal(err)
			}
			ourErr := reaches(ours)
			if (ourErr == nil) != (theirErr == nil) || (ourErr == nil) != tc.reaches {
				t.Fatalf("NewLinstorClient: %v; golinstor from the environment: %v; want reached = %v", ourErr, theirErr, tc.reaches)
			}
		})
	}
}

// SkipUnchanged holds against a LINSTOR whose answers never repeat: the
// loop decides once while only LINSTOR's running state changes, and again
// when a replica moves. The replica left behind is in LINSTOR's deletion
// window (DRBD_DELETE) when the loop sees the move; the PV goes straight to
// the new node, in one repair.
func TestSkipUnchangedHoldsWhileOnlyLinstorsRunningStateChanges(t *testing.T) {
	b, sim := newSimBed(t, linstorsim.Options{Realistic: true, DeleteWindow: time.Hour})
	pvs := b.addVolume("vol-a", 1, []string{"n1"}, []string{"n1"})
	_, cycle := b.skipUnchangedLoop()
	cycle(1, "first cycle")
	for i := 0; i < 3; i++ {
		cycle(1, "only LINSTOR's running state changed")
	}
	b.must(sim.MoveReplica("vol-a", "n1", "n2"))
	cycle(2, "a replica moved")
	if got := b.affinityOf(pvs[0].Name); got != "[{linbit.com/hostname=n2}]" {
		t.Fatalf("moved volume: affinity %s, want the new node only", got)
	}
	reps, err := sim.Replicas("vol-a")
	b.must(err)
	if len(reps) != 2 || !slices.Contains(reps[0].Flags, "DRBD_DELETE") {
		t.Fatalf("the old replica should still be in its deletion window: %+v", reps)
	}
}
