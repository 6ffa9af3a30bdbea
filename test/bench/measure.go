package main

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"time"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/watch"
)

// scrape reads the sidecar's metrics.
func scrape(ctx context.Context, url string) (map[string]*dto.MetricFamily, error) {
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url+"/metrics", nil)
	if err != nil {
		return nil, err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close() //nolint:errcheck // read-only
	p := expfmt.NewTextParser(model.UTF8Validation)
	return p.TextToMetricFamilies(resp.Body)
}

// sum adds the samples of a counter or gauge whose labels match (a label
// value starting with "!" means "not this value").
func sum(fams map[string]*dto.MetricFamily, name string, match map[string]string) float64 {
	f := fams[name]
	if f == nil {
		// Histograms are one family under the base name.
		if base, ok := strings.CutSuffix(name, "_count"); ok {
			f = fams[base]
		} else if base, ok := strings.CutSuffix(name, "_sum"); ok {
			f = fams[base]
		}
	}
	if f == nil {
		return 0
	}
	var total float64
	for _, m := range f.Metric {
		if !labelsMatch(m, match) {
			continue
		}
		switch {
		case m.Histogram != nil && strings.HasSuffix(name, "_count"):
			total += float64(m.Histogram.GetSampleCount())
		case m.Histogram != nil && strings.HasSuffix(name, "_sum"):
			total += m.Histogram.GetSampleSum()
		case m.Counter != nil:
			total += m.Counter.GetValue()
		case m.Gauge != nil:
			total += m.Gauge.GetValue()
		case m.Untyped != nil:
			total += m.Untyped.GetValue()
		}
	}
	return total
}

// procCPU is utime+stime of pid from /proc/<pid>/stat.
func procCPU(pid int) (time.Duration, error) {
	raw, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0, err
	}
	// The command name is in parentheses and may hold spaces: fields count
	// from after the last ')'.
	s := string(raw)
	fields := strings.Fields(s[strings.LastIndexByte(s, ')')+1:])
	if len(fields) < 13 {
		return 0, fmt.Errorf("/proc/%d/stat: short", pid)
	}
	utime, err1 := strconv.ParseInt(fields[11], 10, 64)
	stime, err2 := strconv.ParseInt(fields[12], 10, 64)
	if err1 != nil || err2 != nil {
		return 0, fmt.Errorf("/proc/%d/stat: bad times", pid)
	}
	// USER_HZ is 100 on Linux everywhere Go runs.
	return time.Duration(utime+stime) * 10 * time.Millisecond, nil
}

// procMem returns VmRSS, VmHWM, RssAnon and RssFile of pid in bytes.
func procMem(pid int) (rss, hwm, anon, file int64, err error) {
	raw, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0, 0, 0, 0, err
	}
	for _, line := range strings.Split(string(raw), "\n") {
		f := strings.Fields(line)
		if len(f) < 2 {
			continue
		}
		kb, _ := strconv.ParseInt(f[1], 10, 64)
		switch f[0] {
		case "VmRSS:":
			rss = kb << 10
		case "VmHWM:":
			hwm = kb << 10
		case "RssAnon:":
			anon = kb << 10
		case "RssFile:":
			file = kb << 10
		}
	}
	return rss, hwm, anon, file, nil
}

// watcher records, for every PV name, when the API server showed it with a
// given affinity: a single watch of all PVs, as a client would see them.
type watcher struct {
	mu      sync.Mutex
	want    map[string]string    // PV name -> expected affinity key
	since   map[string]time.Time // PV name -> when the move that set want was made
	healed  []healed
	waiters chan struct{}
}

// healed is a PV that showed its expected affinity: when it was expected
// (the move) and when the watch showed it.
type healed struct {
	pv        string
	since, at time.Time
}

func (b *bed) watchPVs(ctx context.Context) (*watcher, error) {
	list, err := b.kube.CoreV1().PersistentVolumes().List(ctx, metav1.ListOptions{ResourceVersion: "0", Limit: 1})
	if err != nil {
		return nil, err
	}
	w, err := b.kube.CoreV1().PersistentVolumes().Watch(ctx, metav1.ListOptions{ResourceVersion: list.ResourceVersion, AllowWatchBookmarks: true})
	if err != nil {
		return nil, err
	}
	pw := &watcher{want: map[string]string{}, since: map[string]time.Time{}, waiters: make(chan struct{}, 1)}
	go func() {
		defer w.Stop()
		for ev := range w.ResultChan() {
			if ev.Type != watch.Added && ev.Type != watch.Modified {
				continue
			}
			pv, ok := ev.Object.(*corev1.PersistentVolume)
			if !ok {
				continue
			}
			seen := time.Now()
			pw.mu.Lock()
			if want, ok := pw.want[pv.Name]; ok && want == affinityKey(pv.Spec.NodeAffinity) && pv.DeletionTimestamp == nil {
				pw.healed = append(pw.healed, healed{pv: pv.Name, since: pw.since[pv.Name], at: seen})
				delete(pw.want, pv.Name)
				select {
				case pw.waiters <- struct{}{}:
				default:
				}
			}
			pw.mu.Unlock()
		}
	}()
	return pw, nil
}

// expect registers that pv should get affinity from now on.
func (w *watcher) expect(pv string, affinity string, since time.Time) {
	w.mu.Lock()
	w.want[pv], w.since[pv] = affinity, since
	w.mu.Unlock()
}

// wait blocks until every expected PV healed or the timeout; it returns
// those that did and the names of those that did not.
func (w *watcher) wait(ctx context.Context, timeout time.Duration) ([]healed, []string) {
	deadline := time.NewTimer(timeout)
	defer deadline.Stop()
	for waiting := true; waiting; {
		w.mu.Lock()
		left := len(w.want)
		w.mu.Unlock()
		if left == 0 {
			break
		}
		select {
		case <-w.waiters:
		case <-deadline.C:
			waiting = false
		case <-ctx.Done():
			waiting = false
		}
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	var missing []string
	for k := range w.want {
		missing = append(missing, k)
	}
	return append([]healed(nil), w.healed...), missing
}

// moveOne moves one diskful replica of a random strict or zone volume not
// yet used to a node that changes the volume's expected affinity, and
// returns the volume and its new expected affinity key. Volumes with a
// claim are left to blockedPods.
func (b *bed) moveOne(used map[string]bool) (*volume, string, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	for tries := 0; tries < 10000; tries++ {
		v := b.vols[b.rng.IntN(len(b.vols))]
		if used[v.name] || v.policy == anywhere || v.claim {
			continue
		}
		from := v.nodes[b.rng.IntN(len(v.nodes))]
		to := nodeName(b.rng.IntN(nodeCount))
		if contains(v.nodes, to) {
			continue
		}
		next := replaceNode(v.nodes, from, to)
		before, after := affinityKey(expectedAffinity(v.policy, v.nodes)), affinityKey(expectedAffinity(v.policy, next))
		if before == after {
			continue
		}
		if err := b.sim.MoveReplica(v.name, from, to); err != nil {
			return nil, "", err
		}
		v.nodes = next
		used[v.name] = true
		return v, after, nil
	}
	return nil, "", fmt.Errorf("no volume left to move")
}

func contains(s []string, x string) bool {
	for _, v := range s {
		if v == x {
			return true
		}
	}
	return false
}

func replaceNode(nodes []string, from, to string) []string {
	out := make([]string, 0, len(nodes))
	for _, n := range nodes {
		if n != from {
			out = append(out, n)
		}
	}
	out = append(out, to)
	return sortedCopy(out)
}

// unattendedResult is measurement (c): convergence after a replica move of
// a volume no pod waits for.
type unattendedResult struct {
	K               int     `json:"k"`
	IntervalSeconds float64 `json:"intervalSeconds"`
	Latency         summary `json:"latency"`
	Missing         int     `json:"notRepaired"`
}

// unattended moves k replicas of volumes without a claim, one every
// interval, and returns how long each affected PV took to show its new
// affinity (from the move until the PV watch showed it).
func (b *bed) unattended(ctx context.Context, k int, interval, timeout time.Duration, used map[string]bool) (unattendedResult, error) {
	r := unattendedResult{K: k, IntervalSeconds: interval.Seconds()}
	w, err := b.watchPVs(ctx)
	if err != nil {
		return r, err
	}
	for i := 0; i < k; i++ {
		v, want, err := b.moveOne(used)
		if err != nil {
			return r, err
		}
		w.expect(v.name, want, time.Now())
		if i < k-1 {
			if err := sleepUntil(ctx, time.Now().Add(interval)); err != nil {
				return r, err
			}
		}
	}
	done, missing := w.wait(ctx, timeout)
	var lat []time.Duration
	for _, h := range done {
		lat = append(lat, h.at.Sub(h.since))
	}
	r.Latency, r.Missing = summarize(lat), len(missing)
	return r, nil
}

// heapTop fetches a heap profile from the sidecar and returns the top of
// `go tool pprof -top -inuse_space`: what was live at the last collection.
func (b *bed) heapTop(ctx context.Context, out string) (string, error) {
	if err := b.fetchProfile(ctx, "heap?gc=1", out, nil); err != nil {
		return "", err
	}
	return b.pprofTop(ctx, out, "-inuse_space")
}

// profile fetches a CPU profile of seconds from the sidecar, running during
// (when not nil) meanwhile, and returns the top of `go tool pprof -top`.
func (b *bed) profile(ctx context.Context, seconds int, out string, during func()) (string, error) {
	if err := b.fetchProfile(ctx, fmt.Sprintf("profile?seconds=%d", seconds), out, during); err != nil {
		return "", err
	}
	return b.pprofTop(ctx, out)
}

// fetchProfile saves /debug/pprof/<what> of the sidecar to out; during, when
// not nil, runs while the profile is taken and has ended when this returns.
func (b *bed) fetchProfile(ctx context.Context, what, out string, during func()) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, b.sidecar.url+"/debug/pprof/"+what, nil)
	if err != nil {
		return err
	}
	done := make(chan struct{})
	if during != nil {
		go func() { defer close(done); during() }()
	} else {
		close(done)
	}
	resp, err := http.DefaultClient.Do(req)
	<-done
	if err != nil {
		return err
	}
	defer resp.Body.Close() //nolint:errcheck // read-only
	f, err := os.Create(out)
	if err != nil {
		return err
	}
	if _, err := io.Copy(f, resp.Body); err != nil {
		_ = f.Close()
		return err
	}
	return f.Close()
}

// pprofTop returns the top 15 of `go tool pprof -top` over a saved profile.
func (b *bed) pprofTop(ctx context.Context, out string, flags ...string) (string, error) {
	args := append([]string{"tool", "pprof", "-top", "-nodecount=15"}, flags...)
	cmd := exec.CommandContext(ctx, "go", append(args, b.binary, out)...)
	cmd.Dir = filepath.Dir(out)
	msg, err := cmd.CombinedOutput()
	if err != nil {
		return "", fmt.Errorf("go tool pprof: %v\n%s", err, msg)
	}
	return string(msg), nil
}
