package node

import (
	"context"
	"testing"
	"time"

	"github.com/piraeusdatastore/linstor-affinity-sidecar/test/cluster"
)

// StartT starts a node for t and stops it in t.Cleanup (before the control
// plane's cleanup, which was registered earlier), printing the end of the
// node's logs first when the test failed.
func StartT(t testing.TB, c *cluster.Cluster, opts Options) *Node {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	began := time.Now()
	n, err := Start(ctx, c, opts)
	if err != nil {
		cluster.SkipOrFatal(t, err)
	}
	t.Logf("node %s registered in %v (dir %s)", n.Name, time.Since(began).Round(time.Millisecond), n.Dir())
	t.Cleanup(func() {
		if t.Failed() {
			cluster.LogTails(t, n.Processes())
		}
		if err := n.Stop(); err != nil {
			t.Errorf("stop node: %v", err)
		}
	})
	return n
}
