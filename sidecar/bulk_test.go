package sidecar

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"reflect"
	"sync/atomic"
	"testing"
	"time"

	lapi "github.com/LINBIT/golinstor/client"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/labels"
	corelisters "k8s.io/client-go/listers/core/v1"
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
	u, err := url.Parse(b.fl.Server.URL)
	b.must(err)
	ct := &countingTransport{base: http.DefaultTransport.(*http.Transport).Clone()}
	bt := NewBulkTransport(ct)
	lc, err := lapi.NewClient(lapi.BaseURL(u), lapi.Log(quietLog{}), lapi.HTTPClient(&http.Client{Transport: bt}))
	b.must(err)
	return NewBulkLinstor(lc, bt, NamespaceTopology, maxReuse), ct
}

func sameView(t *testing.T, what string, got, want *View) {
	t.Helper()
	g, w := *got, *want
	g.FetchedAt, w.FetchedAt, g.Unchanged, w.Unchanged = time.Time{}, time.Time{}, false, false
	if !reflect.DeepEqual(g, w) {
		t.Fatalf("%s: view differs from golinstor's\n got %+v\nwant %+v", what, g, w)
	}
}

func (b *exBed) setVDProp(rd string, vol int, key, value string) {
	b.t.Helper()
	b.must(b.lc.ResourceDefinitions.ModifyVolumeDefinition(context.Background(), rd, vol, lapi.VolumeDefinitionModify{
		GenericPropsModify: lapi.GenericPropsModify{OverrideProps: lapi.OverrideProps{key: value}},
	}))
}

// The trimmed decoding sees exactly what golinstor's full decoding sees:
// nodes and their topology, saved-state properties, volume
// definitions, diskless and diskful replicas.
func TestBulkFetchSeesWhatGolinstorSees(t *testing.T) {
	b := newExBed(t)
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
}

// Nothing changed: still three requests (data never older than a cycle), but
// the view is the last one, marked unchanged. A change is seen at the next
// fetch, at the cost of one more request per changed list.
func TestBulkFetchDecodesOnlyChangedAnswers(t *testing.T) {
	b := newExBed(t)
	b.addVolume("vol-a", 1, []string{"n1", "n2"}, []string{"n1", "n2"})
	bulk, count := b.bulkLinstor(0)
	ctx := context.Background()
	first, err := bulk.Fetch(ctx)
	b.must(err)
	if n := count.n.Swap(0); n != 3 {
		t.Fatalf("first fetch sent %d requests, want 3", n)
	}
	second, err := bulk.Fetch(ctx)
	b.must(err)
	if n := count.n.Swap(0); n != 3 {
		t.Fatalf("unchanged fetch sent %d requests, want 3", n)
	}
	if !second.Unchanged || !second.FetchedAt.After(first.FetchedAt) {
		t.Fatalf("unchanged fetch: Unchanged=%v, FetchedAt %v after %v", second.Unchanged, second.FetchedAt, first.FetchedAt)
	}
	sameView(t, "unchanged fetch", second, first)

	b.setVDProp("vol-a", 0, SavedPVKey, `{"metadata":{"name":"pv-vol-a-0"}}`)
	third, err := bulk.Fetch(ctx)
	b.must(err)
	if n := count.n.Swap(0); n != 4 {
		t.Fatalf("fetch after a resource definition change sent %d requests, want 4 (3 + the changed list again)", n)
	}
	if third.Unchanged || third.RDs["vol-a"].Volumes[0] == "" {
		t.Fatalf("change not seen: Unchanged=%v volumes %v", third.Unchanged, third.RDs["vol-a"].Volumes)
	}
	want, err := b.linstor.Fetch(ctx)
	b.must(err)
	sameView(t, "after a change", third, want)

	b.must(b.lc.Resources.Create(ctx, lapi.ResourceCreate{Resource: lapi.Resource{Name: "vol-a", NodeName: "n3"}}))
	fourth, err := bulk.Fetch(ctx)
	b.must(err)
	if fourth.Unchanged || len(fourth.RDs["vol-a"].Resources) != 3 {
		t.Fatalf("new replica not seen: Unchanged=%v resources %v", fourth.Unchanged, fourth.RDs["vol-a"].Resources)
	}
	want, err = b.linstor.Fetch(ctx)
	b.must(err)
	sameView(t, "after a new replica", fourth, want)
}

// Equal sums are trusted for maxReuse at most; then everything is decoded.
func TestBulkFetchDecodesAfresh(t *testing.T) {
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

// With SkipUnchanged, a cycle that would decide on exactly the inputs of a
// quiet cycle skips deciding; any PV/StorageClass change or LINSTOR change
// makes it decide again, and a drift is repaired.
func TestSkipUnchangedDecidesOnlyWhenSomethingChanged(t *testing.T) {
	b := newExBed(t)
	pvs := b.addVolume("vol-a", 1, []string{"n1"}, []string{"n1"})
	r, _ := b.reconciler(nil)
	bulk, _ := b.bulkLinstor(0)
	r.linstor, r.opts.SkipUnchanged = bulk, true
	lister := &countingLister{PersistentVolumeLister: r.pvs}
	r.pvs = lister
	ctx := context.Background()
	cycle := func(wantLists int, what string) {
		t.Helper()
		b.must(r.Cycle(ctx))
		if lister.lists != wantLists {
			t.Fatalf("%s: decided %d times in all, want %d", what, lister.lists, wantLists)
		}
	}
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
	if n := float64(lister.lists); n != 3 {
		t.Fatalf("decisions = %v", n)
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

// The transport under golinstor reads the same LS_* TLS variables golinstor
// would, with the same rules.
func TestLinstorBaseTransportFollowsGolinstorsEnvironment(t *testing.T) {
	for _, k := range []string{lapi.UserCertEnv, lapi.UserCertFileEnv, lapi.UserKeyEnv, lapi.UserKeyFileEnv, lapi.RootCAEnv, lapi.RootCAFileEnv} {
		t.Setenv(k, "")
		_ = os.Unsetenv(k)
	}
	tlsOf := func(t *testing.T) *tls.Config {
		t.Helper()
		rt, err := linstorBaseTransport()
		if err != nil {
			t.Fatal(err)
		}
		return rt.(*http.Transport).TLSClientConfig
	}
	if cfg := tlsOf(t); cfg != nil && (cfg.RootCAs != nil || len(cfg.Certificates) > 0 || cfg.GetClientCertificate != nil) {
		t.Fatalf("no LS_* TLS variable: got a TLS setup %+v", cfg)
	}
	certPEM, keyPEM := selfSigned(t)

	t.Run("CA and client certificate as PEM", func(t *testing.T) {
		t.Setenv(lapi.RootCAEnv, certPEM)
		t.Setenv(lapi.UserCertEnv, certPEM)
		t.Setenv(lapi.UserKeyEnv, keyPEM)
		cfg := tlsOf(t)
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
		t.Setenv(lapi.UserCertFileEnv, certFile)
		t.Setenv(lapi.UserKeyFileEnv, keyFile)
		cfg := tlsOf(t)
		if cfg.GetClientCertificate == nil {
			t.Fatal("no client certificate callback for *_FILE variables")
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
		t.Setenv(lapi.UserKeyEnv, keyPEM)
		if _, err := linstorBaseTransport(); err == nil {
			t.Fatal("a key without a certificate was accepted")
		}
	})
	t.Run("a CA that is not PEM is refused", func(t *testing.T) {
		t.Setenv(lapi.RootCAEnv, "not a certificate")
		if _, err := linstorBaseTransport(); err == nil {
			t.Fatal("a bad CA was accepted")
		}
	})
}
