package linstorsim

import (
	"fmt"
	"os"

	"github.com/LINBIT/golinstor/client"
	"sigs.k8s.io/yaml"
)

// Scenario is a cluster to preload, in order: nodes, resource groups,
// volumes, then generated bulk. It is what `linstorsim --scenario` and
// POST /_sim/scenario read (YAML or JSON).
type Scenario struct {
	Nodes          []NodeSpec          `json:"nodes,omitempty"`
	ResourceGroups []ResourceGroupSpec `json:"resourceGroups,omitempty"`
	Volumes        []VolumeSpec        `json:"volumes,omitempty"`
	Generate       *GenerateSpec       `json:"generate,omitempty"`
}

// NodeSpec describes a node to add (see AddNode).
type NodeSpec struct {
	Name         string            `json:"name"`
	Props        map[string]string `json:"props,omitempty"`
	StoragePools []StoragePool     `json:"storagePools,omitempty"`
}

// GenerateSpec creates a large, regular cluster for scale runs: nodes
// <NodePrefix>000.. spread over Zones zones, and volumes
// <VolumePrefix>00000000.. each with Replicas diskful replicas on
// consecutive nodes (volume i starts at node i mod Nodes).
type GenerateSpec struct {
	Nodes      int    `json:"nodes"`
	NodePrefix string `json:"nodePrefix,omitempty"`
	// Zones sets <ns>/topology.kubernetes.io/zone=zone-<n mod Zones>.
	Zones int `json:"zones,omitempty"`
	// Pool defaults to an LVM_THIN pool "thin" of 16 TiB.
	Pool         *StoragePool `json:"pool,omitempty"`
	Volumes      int          `json:"volumes"`
	VolumePrefix string       `json:"volumePrefix,omitempty"`
	// Replicas defaults to 2 and is capped at Nodes.
	Replicas      int    `json:"replicas,omitempty"`
	SizeKiB       uint64 `json:"sizeKiB,omitempty"`
	ResourceGroup string `json:"resourceGroup,omitempty"`
}

// ParseScenario reads a scenario from YAML or JSON, refusing unknown
// fields so a typo does not silently load an empty cluster.
func ParseScenario(data []byte) (Scenario, error) {
	var sc Scenario
	if err := yaml.UnmarshalStrict(data, &sc); err != nil {
		return Scenario{}, fmt.Errorf("parse scenario: %w", err)
	}
	return sc, nil
}

// LoadScenarioFile reads and loads a scenario file.
func (s *Sim) LoadScenarioFile(path string) error {
	data, err := os.ReadFile(path)
	if err != nil {
		return fmt.Errorf("scenario %s: %w", path, err)
	}
	sc, err := ParseScenario(data)
	if err != nil {
		return fmt.Errorf("scenario %s: %w", path, err)
	}
	return wrapf(s.LoadScenario(sc), "scenario %s", path)
}

// LoadScenario adds everything in sc; it stops at the first error.
func (s *Sim) LoadScenario(sc Scenario) error {
	for _, n := range sc.Nodes {
		if err := s.AddNode(n.Name, n.Props, n.StoragePools...); err != nil {
			return err
		}
	}
	for _, g := range sc.ResourceGroups {
		if err := s.AddResourceGroup(g); err != nil {
			return err
		}
	}
	for _, v := range sc.Volumes {
		if err := s.CreateVolume(v); err != nil {
			return err
		}
	}
	if sc.Generate != nil {
		return s.Generate(*sc.Generate)
	}
	return nil
}

// Generate adds the nodes and volumes described by g.
func (s *Sim) Generate(g GenerateSpec) error {
	if g.Nodes < 0 || g.Volumes < 0 {
		return fmt.Errorf("generate: negative counts (nodes %d, volumes %d)", g.Nodes, g.Volumes)
	}
	if g.NodePrefix == "" {
		g.NodePrefix = "node-"
	}
	if g.VolumePrefix == "" {
		g.VolumePrefix = "pvc-"
	}
	pool := StoragePool{Name: "thin", Provider: client.LVM_THIN, TotalKiB: 16 << 30}
	if g.Pool != nil {
		pool = *g.Pool
	}
	for i := 0; i < g.Nodes; i++ {
		props := map[string]string{}
		if g.Zones > 0 {
			props[s.opts.PropertyNamespace+"/topology.kubernetes.io/zone"] = fmt.Sprintf("zone-%d", i%g.Zones)
		}
		if err := s.AddNode(fmt.Sprintf("%s%03d", g.NodePrefix, i), props, pool); err != nil {
			return fmt.Errorf("generate: %w", err)
		}
	}
	nodes := s.Nodes()
	replicas := g.Replicas
	if replicas <= 0 {
		replicas = 2
	}
	replicas = min(replicas, len(nodes))
	if g.Volumes > 0 && len(nodes) == 0 {
		return fmt.Errorf("generate: %d volumes but no nodes", g.Volumes)
	}
	for i := 0; i < g.Volumes; i++ {
		spec := VolumeSpec{Name: fmt.Sprintf("%s%08d", g.VolumePrefix, i), ResourceGroup: g.ResourceGroup}
		if g.SizeKiB > 0 {
			spec.SizesKiB = []uint64{g.SizeKiB}
		}
		for k := 0; k < replicas; k++ {
			spec.Diskful = append(spec.Diskful, nodes[(i+k)%len(nodes)])
		}
		if err := s.CreateVolume(spec); err != nil {
			return fmt.Errorf("generate: %w", err)
		}
	}
	return nil
}
