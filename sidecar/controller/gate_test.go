package controller

import (
	"context"
	"errors"
	"go/ast"
	"go/parser"
	"go/token"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/piraeusdatastore/linstor-affinity-sidecar/sidecar/decide"
	"github.com/piraeusdatastore/linstor-affinity-sidecar/sidecar/internal/fixture"
	"github.com/piraeusdatastore/linstor-affinity-sidecar/sidecar/repair"
	"k8s.io/client-go/tools/record"
)

// gateCalls records which server the gate asked, in order.
type gateCalls []string

// gateDriver is a CSI driver whose answer to ControllerGetVolume a row sets.
type gateDriver struct {
	calls  *gateCalls
	answer csiAnswer
}

type csiAnswer int

const (
	csiHas csiAnswer = iota
	csiMissing
	csiFails
	csiCannotTell
)

func (d *gateDriver) Ready(context.Context) error { return nil }

func (d *gateDriver) VolumeExists(context.Context, string) (bool, string, error) {
	*d.calls = append(*d.calls, "csi")
	switch d.answer {
	case csiMissing:
		return false, "", nil
	case csiFails:
		return false, "", errors.New("connection refused")
	case csiCannotTell:
		return false, "", ErrCheckUnsupported
	}
	return true, "", nil
}

// gateReplicas is LINSTOR's per-volume answer about the replicas.
type gateReplicas struct {
	calls *gateCalls
	nodes []string
	err   error
}

func (r *gateReplicas) Replicas(context.Context, string) ([]decide.Resource, error) {
	*r.calls = append(*r.calls, "replicas")
	var out []decide.Resource
	for _, n := range r.nodes {
		out = append(out, fixture.Res(n))
	}
	return out, r.err
}

// gateCase is one action and the state of every check the gate runs, in
// the gate's order, with the verdict expected.
type gateCase struct {
	name string
	kind decide.Kind // the action's kind; "" is a replace
	// Step 1: fresh input.
	awaitingCache bool // the cache does not show the sidecar's last write yet
	inBackoff     bool // the PV's last repair failed a moment ago
	// Step 2: brakes.
	otherActive bool    // another affinity controller is active
	brakes      *Brakes // nil: none
	// Step 3: volume exists.
	noDriver bool // standalone: no CSI driver to ask
	csi      csiAnswer
	// Step 4: replicas confirmed.
	noConfirmer bool
	replicas    []string // LINSTOR's per-volume answer; nil: the decided n2
	replicasErr error

	held  decide.Reason // "": allowed
	asked []string      // the servers asked, in order
}

// passGate runs an action through every step of the gate, as the loop does,
// and returns the reason it was held ("" if allowed) and the error of a
// per-action step.
func passGate(g *Gate, a decide.Action, now time.Time) (decide.Reason, error) {
	a = g.Fresh(a, now)
	if a.Kind == decide.KindNone {
		return a.Reason, nil
	}
	allowed, held := g.Brake([]decide.Action{a}, 1, true, now)
	if len(held) > 0 {
		return held[0].Reason, nil
	}
	if len(allowed) != 1 {
		return "lost by the brakes", nil
	}
	v := g.Admit(context.Background(), allowed[0])
	return v.Held, v.Err
}

func gateAction(kind decide.Kind) decide.Action {
	pv := fixture.PV("pv-a", "vol-a", fixture.WithAffinity(fixture.AffinityOf(fixture.Host("n1"))))
	top := decide.Topology{Diskful: []string{"n2"}, Segments: []decide.Segment{fixture.Host("n2")}}
	a := decide.Action{Kind: decide.KindReplace, Reason: decide.ReasonDrifted, Name: pv.Name, PV: pv, Ref: decide.VolumeRef{RD: "vol-a"},
		Affinity: decide.AffinityFor(top), Topology: &top}
	if kind != "" && kind != decide.KindReplace {
		saved := pv.DeepCopy()
		a = decide.Action{Kind: kind, Reason: decide.ReasonInterruptedReplace, Name: pv.Name, PV: pv, Ref: decide.VolumeRef{RD: "vol-a"},
			Saved: &decide.SavedState{Ref: decide.VolumeRef{RD: "vol-a"}, PV: saved, Raw: "{}"}}
		if kind == decide.KindRecreate {
			a.PV = nil
		}
	}
	return a
}

func runGateCases(t *testing.T, cases []gateCase) {
	t.Helper()
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			now := time.Now()
			var calls gateCalls
			opts := Options{Timeout: time.Second, ExpectationTimeout: time.Minute, Brakes: tc.brakes}
			if tc.otherActive {
				opts.OtherController = &fakeOther{active: true}
			}
			if !tc.noConfirmer {
				nodes := tc.replicas
				if nodes == nil {
					nodes = []string{"n2"}
				}
				opts.Replicas = &gateReplicas{calls: &calls, nodes: nodes, err: tc.replicasErr}
			}
			var driver Driver
			if !tc.noDriver {
				driver = &gateDriver{calls: &calls, answer: tc.csi}
			}
			g := newGate(opts, driver, newRepairBackoff(0, 0), NewMetrics(), record.NewFakeRecorder(10))
			a := gateAction(tc.kind)
			if tc.awaitingCache {
				// The sidecar wrote the PV; the cache still shows the copy before.
				written := a.PV.DeepCopy()
				if written == nil {
					written = a.Saved.PV.DeepCopy()
				}
				written.ResourceVersion = "99"
				g.expect(a.Name, repair.Outcome{PV: written}, a.PV, now)
			}
			if tc.inBackoff {
				g.backoff.failed(a, now)
			}
			got, err := passGate(g, a, now)
			if got != tc.held {
				t.Fatalf("held for %q (%v), want %q", got, err, tc.held)
			}
			perAction := slices.Contains([]decide.Reason{ReasonVolumeMissing, ReasonDriverUnanswered, ReasonReplicasUnconfirmed}, got)
			if perAction != (err != nil) {
				t.Errorf("verdict %q with error %v: a per-action hold, and only one, says what it found", got, err)
			}
			if !slices.Equal(calls, tc.asked) {
				t.Errorf("asked %v, want %v", []string(calls), tc.asked)
			}
		})
	}
}

// Every check of the gate, and its order: a step that holds an action
// keeps it from every later step, so a held action never costs a request.
func TestGate(t *testing.T) {
	drift := func() *Brakes { return &Brakes{MaxDriftFraction: 0.5, DriftConfirmations: 2} }
	full := func() *Brakes {
		b := &Brakes{MaxRepairsPerMinute: 1}
		b.takeRepairSlot("pv-other", time.Now())
		return b
	}
	both := []string{"csi", "replicas"}
	runGateCases(t, []gateCase{
		// Nothing holds it: every per-action step is asked, in order.
		{name: "replace with every check passed", asked: both},
		{name: "replace with brakes that do not hold", brakes: &Brakes{MaxRepairsPerMinute: 10}, asked: both},

		// Step 1: fresh input.
		{name: "cache not showing the last write holds it", awaitingCache: true, held: ReasonAwaitingCache},
		{name: "backoff holds it", inBackoff: true, held: ReasonBackoff},
		{name: "awaiting the cache comes before the backoff", awaitingCache: true, inBackoff: true, held: ReasonAwaitingCache},
		{name: "fresh input comes before another controller", inBackoff: true, otherActive: true, held: ReasonBackoff},
		{name: "fresh input comes before the drift brake", awaitingCache: true, brakes: drift(), held: ReasonAwaitingCache},

		// Step 2: brakes. A brake-held action never reaches the CSI call.
		{name: "another controller holds it", otherActive: true, held: ReasonOtherController},
		{name: "another controller comes before the drift brake", otherActive: true, brakes: drift(), held: ReasonOtherController},
		{name: "drift brake holds it", brakes: drift(), held: ReasonDriftBrake},
		{name: "rate limit holds it", brakes: full(), held: ReasonRateLimited},
		{name: "brake comes before a missing volume", brakes: drift(), csi: csiMissing, held: ReasonDriftBrake},

		// Step 3: volume exists. A volume missing in CSI never reaches confirmation.
		{name: "volume missing in CSI holds it", csi: csiMissing, held: ReasonVolumeMissing, asked: []string{"csi"}},
		{name: "driver not answering holds it", csi: csiFails, held: ReasonDriverUnanswered, asked: []string{"csi"}},
		{name: "missing volume comes before disagreeing replicas", csi: csiMissing, replicas: []string{"n1", "n2"},
			held: ReasonVolumeMissing, asked: []string{"csi"}},
		{name: "driver that cannot tell lets it through", csi: csiCannotTell, asked: both},
		{name: "no driver (standalone) lets it through", noDriver: true, asked: []string{"replicas"}},

		// Step 4: replicas confirmed.
		{name: "replicas disagreeing with the bulk view hold it", replicas: []string{"n1", "n2"},
			held: ReasonReplicasUnconfirmed, asked: both},
		{name: "replicas that cannot be read hold it", replicasErr: errors.New("timeout"),
			held: ReasonReplicasUnconfirmed, asked: both},
		{name: "no confirmer lets it through", noConfirmer: true, asked: []string{"csi"}},

		// Finishing or undoing a replace from saved state: only fresh input
		// holds it; no brake, CSI or replica answer may leave a PV missing.
		{name: "recreate from saved state passes brakes, CSI and replicas", kind: decide.KindRecreate,
			otherActive: true, brakes: drift(), csi: csiMissing, replicas: []string{"n9"}},
		{name: "clear saved state passes brakes, CSI and replicas", kind: decide.KindClearSaved,
			otherActive: true, brakes: full(), csi: csiFails, replicasErr: errors.New("timeout")},
		{name: "clear saved state waits for the cache", kind: decide.KindClearSaved, awaitingCache: true, held: ReasonAwaitingCache},
		{name: "recreate from saved state waits for its backoff", kind: decide.KindRecreate, inBackoff: true, held: ReasonBackoff},
	})
}

// A replace held for disagreeing replicas says what each read showed.
func TestGateSaysWhyReplicasAreUnconfirmed(t *testing.T) {
	var calls gateCalls
	g := newGate(Options{Timeout: time.Second, Replicas: &gateReplicas{calls: &calls, nodes: []string{"n1", "n2"}}},
		nil, newRepairBackoff(0, 0), NewMetrics(), record.NewFakeRecorder(10))
	v := g.Admit(context.Background(), gateAction(decide.KindReplace))
	if !errors.Is(v.Err, ErrReplicasUnconfirmed) || !strings.Contains(v.Err.Error(), "[n2]") || !strings.Contains(v.Err.Error(), "[n1, n2]") {
		t.Fatalf("verdict %+v, want ErrReplicasUnconfirmed naming both answers", v)
	}
}

// The Executor is only ever called after the gate: in this package's code
// its one caller is Reconciler.attempt, after Gate.Admit, and attempt runs
// only for actions Reconciler.brake let through (step 2) out of decisions
// Gate.Fresh let through (step 1).
func TestEveryExecuteIsGated(t *testing.T) {
	fset := token.NewFileSet()
	files, err := filepath.Glob("*.go")
	if err != nil {
		t.Fatal(err)
	}
	calls := map[string][]string{} // function -> the calls it makes, in order
	for _, name := range files {
		if strings.HasSuffix(name, "_test.go") {
			continue
		}
		f, err := parser.ParseFile(fset, name, nil, 0)
		if err != nil {
			t.Fatal(err)
		}
		for _, d := range f.Decls {
			fn, ok := d.(*ast.FuncDecl)
			if !ok || fn.Body == nil {
				continue
			}
			ast.Inspect(fn.Body, func(n ast.Node) bool {
				if c, ok := n.(*ast.CallExpr); ok {
					if sel, ok := c.Fun.(*ast.SelectorExpr); ok {
						calls[fn.Name.Name] = append(calls[fn.Name.Name], sel.Sel.Name)
					}
				}
				return true
			})
		}
	}
	callers := func(callee string) []string {
		var out []string
		for fn, cs := range calls {
			if slices.Contains(cs, callee) {
				out = append(out, fn)
			}
		}
		slices.Sort(out)
		return out
	}
	before := func(fn, first, then string) bool {
		i, j := slices.Index(calls[fn], first), slices.Index(calls[fn], then)
		return i >= 0 && j >= 0 && i < j
	}
	if got := callers("Execute"); !slices.Equal(got, []string{"attempt"}) {
		t.Fatalf("Execute is called from %v, want only attempt", got)
	}
	if !before("attempt", "Admit", "Execute") {
		t.Errorf("attempt calls Execute without Gate.Admit first: %v", calls["attempt"])
	}
	if got := callers("attempt"); !slices.Equal(got, []string{"act"}) {
		t.Errorf("attempt is called from %v, want only act", got)
	}
	for _, fn := range callers("execute") {
		if !before(fn, "brake", "execute") {
			t.Errorf("%s carries out actions without passing them through the brakes first: %v", fn, calls[fn])
		}
	}
	if !before("decideOn", "plan", "brake") || !slices.Contains(calls["plan"], "Fresh") {
		t.Errorf("a cycle brakes decisions that did not pass Gate.Fresh: decideOn %v, plan %v", calls["decideOn"], calls["plan"])
	}
	if !before("Demand", "Fresh", "brake") {
		t.Errorf("Demand brakes decisions that did not pass Gate.Fresh: %v", calls["Demand"])
	}
	if got := callers("Brake"); !slices.Equal(got, []string{"brake"}) {
		t.Errorf("Gate.Brake is called from %v, want only Reconciler.brake", got)
	}
}
