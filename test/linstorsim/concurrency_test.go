package linstorsim

import (
	"fmt"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/LINBIT/golinstor/client"
)

// TestConcurrentReadersSeeConsistentStateWhileWritersChangeIt runs list
// readers against REST writers and scenario controls; with -race it also
// checks the locking.
func TestConcurrentReadersSeeConsistentStateWhileWritersChangeIt(t *testing.T) {
	s, _ := startSim(t, Options{})
	const nodes, vols = 6, 60
	for i := 0; i < nodes; i++ {
		must(t, s.AddNode(fmt.Sprintf("n%d", i), nil, StoragePool{Name: "thin"}))
	}
	for i := 0; i < vols; i++ {
		must(t, s.CreateVolume(VolumeSpec{Name: fmt.Sprintf("v%02d", i), Diskful: []string{fmt.Sprintf("n%d", i%nodes), fmt.Sprintf("n%d", (i+1)%nodes)}}))
	}
	s.ResetRequestCounts()

	var requests atomic.Int64
	var wg sync.WaitGroup
	errs := make(chan error, 64)
	fail := func(format string, args ...any) {
		select {
		case errs <- fmt.Errorf(format, args...):
		default:
		}
	}

	// Readers: every snapshot must show each volume with exactly two
	// diskful replicas, since moves are atomic.
	for r := 0; r < 4; r++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			c, err := s.NewClient()
			if err != nil {
				fail("client: %v", err)
				return
			}
			for i := 0; i < 15; i++ {
				view, err := c.Resources.GetResourceView(tctx(t))
				requests.Add(1)
				if err != nil {
					fail("view: %v", err)
					return
				}
				per := map[string]int{}
				for _, res := range view {
					per[res.Name]++
				}
				if len(per) != vols {
					fail("view has %d volumes, want %d", len(per), vols)
				}
				for name, n := range per {
					if n != 2 {
						fail("%s has %d replicas in one snapshot", name, n)
					}
				}
				rds, err := c.ResourceDefinitions.GetAll(tctx(t), client.RDGetAllRequest{WithVolumeDefinitions: true})
				requests.Add(1)
				if err != nil || len(rds) != vols {
					fail("rds: %d, %v", len(rds), err)
				}
				_, err = c.Nodes.GetAll(tctx(t))
				requests.Add(1)
				if err != nil {
					fail("nodes: %v", err)
				}
			}
		}()
	}
	// REST writers: each saves its own VD props.
	for w := 0; w < 3; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			c, err := s.NewClient()
			if err != nil {
				fail("client: %v", err)
				return
			}
			for i := w; i < vols; i += 3 {
				err := c.ResourceDefinitions.ModifyVolumeDefinition(tctx(t), fmt.Sprintf("v%02d", i), 0, client.VolumeDefinitionModify{
					GenericPropsModify: client.GenericPropsModify{OverrideProps: map[string]string{"Aux/writer": fmt.Sprint(w)}},
				})
				requests.Add(1)
				if err != nil {
					fail("modify v%02d: %v", i, err)
				}
			}
		}()
	}
	// Scenario writer: moves replicas and changes node props.
	wg.Add(1)
	go func() {
		defer wg.Done()
		for i := 0; i < vols; i++ {
			name := fmt.Sprintf("v%02d", i)
			from := fmt.Sprintf("n%d", i%nodes)
			to := fmt.Sprintf("n%d", (i+2)%nodes)
			if err := s.MoveReplica(name, from, to); err != nil {
				fail("move %s: %v", name, err)
			}
			if err := s.SetNodeProps(from, map[string]string{"Aux/topology/gen": fmt.Sprint(i)}); err != nil {
				fail("node props: %v", err)
			}
			_ = s.Faults()
			_ = s.RequestCounts()
		}
	}()
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}

	for i := 0; i < vols; i++ {
		props, err := s.VDProps(fmt.Sprintf("v%02d", i), 0)
		must(t, err)
		if props["Aux/writer"] != fmt.Sprint(i%3) {
			t.Errorf("v%02d writer prop = %q", i, props["Aux/writer"])
		}
		nodes, err := s.DiskfulNodes(fmt.Sprintf("v%02d", i))
		must(t, err)
		if len(nodes) != 2 {
			t.Errorf("v%02d ends with %v", i, nodes)
		}
	}
	if got := s.TotalRequests(); got != requests.Load() {
		t.Errorf("counted %d requests, clients made %d", got, requests.Load())
	}
}
