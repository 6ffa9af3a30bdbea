package linstorsim

import (
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"strconv"
)

// The /_sim control API: the Go controls as JSON over HTTP, so a shell
// script can drive a standalone simulator. It is neither counted nor
// subject to faults. Errors answer {"error": "..."} with the status of the
// underlying APIError (400 when there is none).

type ctlFunc func(r *http.Request) (status int, body any, err error)

func (f ctlFunc) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	status, body, err := f(r)
	w.Header().Set("Content-Type", "application/json")
	if err != nil {
		code := http.StatusBadRequest
		var ae *APIError
		if errors.As(err, &ae) {
			code = ae.Status
		}
		w.WriteHeader(code)
		_ = json.NewEncoder(w).Encode(map[string]string{"error": err.Error()})
		return
	}
	if body == nil {
		body = map[string]bool{"ok": true}
	}
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(body)
}

func decode(r *http.Request, v any) error {
	dec := json.NewDecoder(r.Body)
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil && !errors.Is(err, io.EOF) {
		return errInvalid("request body: %v", err)
	}
	return nil
}

// propsChange is the body of the props endpoints.
type propsChange struct {
	Set    map[string]string `json:"set,omitempty"`
	Delete []string          `json:"delete,omitempty"`
}

// replicaChange is the body of PUT /_sim/volumes/{rd}/replicas/{node}; set
// fields are applied.
type replicaChange struct {
	Flags   *[]string `json:"flags,omitempty"`
	Healthy *bool     `json:"healthy,omitempty"`
	InUse   *bool     `json:"inUse,omitempty"`
}

func (s *Sim) controlMux() *http.ServeMux {
	m := http.NewServeMux()
	h := func(pattern string, f ctlFunc) { m.Handle(pattern, f) }

	h("GET /_sim/healthz", func(r *http.Request) (int, any, error) { return 200, nil, nil })
	h("GET /_sim/info", func(r *http.Request) (int, any, error) {
		return 200, map[string]any{
			"url": s.URL(), "propertyNamespace": s.opts.PropertyNamespace, "tls": s.opts.TLS,
			"requireClientCert": s.opts.RequireClientCert, "nodes": len(s.Nodes()), "volumes": s.VolumeCount(),
			"realistic": s.opts.Realistic, "deleteWindow": s.opts.DeleteWindow.String(),
		}, nil
	})
	h("POST /_sim/scenario", func(r *http.Request) (int, any, error) {
		data, err := io.ReadAll(r.Body)
		if err != nil {
			return 0, nil, err
		}
		sc, err := ParseScenario(data)
		if err != nil {
			return 0, nil, err
		}
		return 200, nil, s.LoadScenario(sc)
	})
	h("POST /_sim/generate", func(r *http.Request) (int, any, error) {
		var g GenerateSpec
		if err := decode(r, &g); err != nil {
			return 0, nil, err
		}
		return 200, nil, s.Generate(g)
	})

	h("POST /_sim/nodes", func(r *http.Request) (int, any, error) {
		var n NodeSpec
		if err := decode(r, &n); err != nil {
			return 0, nil, err
		}
		return 201, nil, s.AddNode(n.Name, n.Props, n.StoragePools...)
	})
	h("GET /_sim/nodes", func(r *http.Request) (int, any, error) { return 200, s.Nodes(), nil })
	h("DELETE /_sim/nodes/{node}", func(r *http.Request) (int, any, error) {
		return 200, nil, s.RemoveNode(r.PathValue("node"))
	})
	h("GET /_sim/nodes/{node}/props", func(r *http.Request) (int, any, error) {
		p, err := s.NodeProps(r.PathValue("node"))
		return 200, p, err
	})
	h("PUT /_sim/nodes/{node}/props", func(r *http.Request) (int, any, error) {
		var c propsChange
		if err := decode(r, &c); err != nil {
			return 0, nil, err
		}
		return 200, nil, s.SetNodeProps(r.PathValue("node"), c.Set, c.Delete...)
	})
	h("PUT /_sim/nodes/{node}/online", func(r *http.Request) (int, any, error) {
		var b struct {
			Online bool `json:"online"`
		}
		if err := decode(r, &b); err != nil {
			return 0, nil, err
		}
		return 200, nil, s.SetNodeOnline(r.PathValue("node"), b.Online)
	})
	h("POST /_sim/nodes/{node}/evacuate", func(r *http.Request) (int, any, error) {
		moves, err := s.EvacuateNode(r.PathValue("node"))
		if err != nil {
			return 0, nil, err
		}
		if moves == nil {
			moves = []Move{}
		}
		return 200, moves, nil
	})

	h("POST /_sim/resource-groups", func(r *http.Request) (int, any, error) {
		var g ResourceGroupSpec
		if err := decode(r, &g); err != nil {
			return 0, nil, err
		}
		return 201, nil, s.AddResourceGroup(g)
	})

	h("POST /_sim/volumes", func(r *http.Request) (int, any, error) {
		var v VolumeSpec
		if err := decode(r, &v); err != nil {
			return 0, nil, err
		}
		return 201, nil, s.CreateVolume(v)
	})
	h("GET /_sim/volumes/{rd}", func(r *http.Request) (int, any, error) {
		rd := r.PathValue("rd")
		reps, err := s.Replicas(rd)
		if err != nil {
			return 0, nil, err
		}
		props, err := s.RDProps(rd)
		if err != nil {
			return 0, nil, err
		}
		return 200, map[string]any{"name": rd, "replicas": reps, "props": props}, nil
	})
	h("DELETE /_sim/volumes/{rd}", func(r *http.Request) (int, any, error) {
		return 200, nil, s.DeleteVolume(r.PathValue("rd"))
	})
	h("GET /_sim/volumes/{rd}/props", func(r *http.Request) (int, any, error) {
		p, err := s.RDProps(r.PathValue("rd"))
		return 200, p, err
	})
	h("PUT /_sim/volumes/{rd}/props", func(r *http.Request) (int, any, error) {
		var c propsChange
		if err := decode(r, &c); err != nil {
			return 0, nil, err
		}
		return 200, nil, s.SetRDProps(r.PathValue("rd"), c.Set, c.Delete...)
	})
	vnr := func(r *http.Request) (int32, error) {
		n, err := strconv.ParseInt(r.PathValue("vnr"), 10, 32)
		if err != nil {
			return 0, errInvalid("invalid volume number %q", r.PathValue("vnr"))
		}
		return int32(n), nil
	}
	h("GET /_sim/volumes/{rd}/volume-definitions/{vnr}/props", func(r *http.Request) (int, any, error) {
		nr, err := vnr(r)
		if err != nil {
			return 0, nil, err
		}
		p, err := s.VDProps(r.PathValue("rd"), nr)
		return 200, p, err
	})
	h("PUT /_sim/volumes/{rd}/volume-definitions/{vnr}/props", func(r *http.Request) (int, any, error) {
		nr, err := vnr(r)
		if err != nil {
			return 0, nil, err
		}
		var c propsChange
		if err := decode(r, &c); err != nil {
			return 0, nil, err
		}
		return 200, nil, s.SetVDProps(r.PathValue("rd"), nr, c.Set, c.Delete...)
	})
	h("POST /_sim/volumes/{rd}/replicas", func(r *http.Request) (int, any, error) {
		var b struct {
			Node string      `json:"node"`
			Kind ReplicaKind `json:"kind,omitempty"`
		}
		if err := decode(r, &b); err != nil {
			return 0, nil, err
		}
		return 201, nil, s.AddReplica(r.PathValue("rd"), b.Node, b.Kind)
	})
	h("PUT /_sim/volumes/{rd}/replicas/{node}", func(r *http.Request) (int, any, error) {
		rd, node := r.PathValue("rd"), r.PathValue("node")
		var c replicaChange
		if err := decode(r, &c); err != nil {
			return 0, nil, err
		}
		if c.Flags != nil {
			if err := s.SetReplicaFlags(rd, node, *c.Flags...); err != nil {
				return 0, nil, err
			}
		}
		if c.Healthy != nil {
			if err := s.SetReplicaHealthy(rd, node, *c.Healthy); err != nil {
				return 0, nil, err
			}
		}
		if c.InUse != nil {
			if err := s.SetReplicaInUse(rd, node, *c.InUse); err != nil {
				return 0, nil, err
			}
		}
		return 200, nil, nil
	})
	h("DELETE /_sim/volumes/{rd}/replicas/{node}", func(r *http.Request) (int, any, error) {
		return 200, nil, s.DeleteReplica(r.PathValue("rd"), r.PathValue("node"))
	})
	h("POST /_sim/volumes/{rd}/move", func(r *http.Request) (int, any, error) {
		var b struct {
			From string `json:"from"`
			To   string `json:"to"`
		}
		if err := decode(r, &b); err != nil {
			return 0, nil, err
		}
		return 200, nil, s.MoveReplica(r.PathValue("rd"), b.From, b.To)
	})

	h("GET /_sim/faults", func(r *http.Request) (int, any, error) { return 200, s.Faults(), nil })
	h("POST /_sim/faults", func(r *http.Request) (int, any, error) {
		var f Fault
		if err := decode(r, &f); err != nil {
			return 0, nil, err
		}
		id, err := s.InjectFault(f)
		return 201, map[string]int{"id": id}, err
	})
	h("DELETE /_sim/faults", func(r *http.Request) (int, any, error) { s.ClearFaults(); return 200, nil, nil })
	h("DELETE /_sim/faults/{id}", func(r *http.Request) (int, any, error) {
		id, err := strconv.Atoi(r.PathValue("id"))
		if err != nil {
			return 0, nil, errInvalid("invalid fault id %q", r.PathValue("id"))
		}
		if !s.ClearFault(id) {
			return 0, nil, &APIError{Status: 404, Message: "fault " + strconv.Itoa(id) + " is not active"}
		}
		return 200, nil, nil
	})

	h("GET /_sim/counters", func(r *http.Request) (int, any, error) {
		counts := s.RequestCounts()
		if counts == nil {
			counts = map[string]int64{}
		}
		var total int64
		for _, v := range counts {
			total += v
		}
		return 200, map[string]any{"total": total, "counts": counts}, nil
	})
	h("DELETE /_sim/counters", func(r *http.Request) (int, any, error) { s.ResetRequestCounts(); return 200, nil, nil })

	h("GET /_sim/deletions", func(r *http.Request) (int, any, error) {
		d := s.Deletions()
		if v, _ := strconv.ParseBool(r.URL.Query().Get("volumesOnly")); v {
			d = s.VolumeDeletions()
		}
		if d == nil {
			d = []Deletion{}
		}
		return 200, d, nil
	})
	h("DELETE /_sim/deletions", func(r *http.Request) (int, any, error) { s.ResetDeletions(); return 200, nil, nil })
	h("/_sim/", func(r *http.Request) (int, any, error) {
		return 0, nil, &APIError{Status: 404, Message: "no control " + r.Method + " " + r.URL.Path}
	})
	return m
}
