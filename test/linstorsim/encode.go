package linstorsim

import (
	"encoding/json"
	"slices"
	"strconv"

	lapiconst "github.com/LINBIT/golinstor"
)

// A hand-written encoder for the records that lists carry by the ten
// thousand: resource definitions (with volume definitions) and resources
// (with volumes). It writes exactly the bytes json.Marshal writes for the
// golinstor types built in convert.go (encode_test.go holds it to that),
// several times faster, so a 50,000-volume cluster encodes in a blink.

// jw appends JSON to a byte slice.
type jw struct{ b []byte }

// str appends s as a JSON string the way encoding/json does, taking the
// slow path only for bytes it would escape.
func (w *jw) str(s string) {
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c < 0x20 || c == '"' || c == '\\' || c == '<' || c == '>' || c == '&' || c >= 0x80 {
			q, _ := json.Marshal(s)
			w.b = append(w.b, q...)
			return
		}
	}
	w.b = append(w.b, '"')
	w.b = append(w.b, s...)
	w.b = append(w.b, '"')
}

// obj tracks the fields of one JSON object being written.
type obj struct {
	w *jw
	n int
}

func (w *jw) open() obj { w.b = append(w.b, '{'); return obj{w: w} }

func (o *obj) close() { o.w.b = append(o.w.b, '}') }

// next separates a field from the previous one.
func (o *obj) next() {
	if o.n > 0 {
		o.w.b = append(o.w.b, ',')
	}
	o.n++
}

// key starts a field whose name needs no escaping.
func (o *obj) key(k string) {
	o.next()
	o.w.b = append(o.w.b, '"')
	o.w.b = append(o.w.b, k...)
	o.w.b = append(o.w.b, '"', ':')
}

// strKey starts a field whose name is data (a node name), escaped.
func (o *obj) strKey(k string) {
	o.next()
	o.w.str(k)
	o.w.b = append(o.w.b, ':')
}

// str writes a string field, omitted when empty (omitempty).
func (o *obj) str(k, v string) {
	if v != "" {
		o.key(k)
		o.w.str(v)
	}
}

// num writes an integer field, omitted when zero (omitempty).
func (o *obj) num(k string, v int64) {
	if v != 0 {
		o.key(k)
		o.w.b = strconv.AppendInt(o.w.b, v, 10)
	}
}

func (o *obj) boolean(k string, v bool) {
	if v {
		o.key(k)
		o.w.b = append(o.w.b, "true"...)
	}
}

// props writes a string map with sorted keys, omitted when empty.
func (o *obj) props(k string, m map[string]string) {
	if len(m) == 0 {
		return
	}
	o.key(k)
	keys := make([]string, 0, len(m))
	for key := range m {
		keys = append(keys, key)
	}
	slices.Sort(keys)
	p := o.w.open()
	for _, key := range keys {
		p.strKey(key)
		p.w.str(m[key])
	}
	p.close()
}

// strs writes a string list, omitted when empty.
func (o *obj) strs(k string, v []string) {
	if len(v) == 0 {
		return
	}
	o.key(k)
	o.w.b = append(o.w.b, '[')
	for i, s := range v {
		if i > 0 {
			o.w.b = append(o.w.b, ',')
		}
		o.w.str(s)
	}
	o.w.b = append(o.w.b, ']')
}

// encodeRD writes client.ResourceDefinition, or with withVD
// client.ResourceDefinitionWithVolumeDefinition, for r.
func encodeRD(r *rdRec, withVD bool) []byte {
	w := &jw{b: make([]byte, 0, 512)}
	o := w.open()
	o.str("name", r.name)
	o.props("props", r.props)
	o.strs("flags", r.flags)
	o.key("layer_data")
	w.b = append(w.b, `[{"type":"DRBD","data":{"peer_slots":7,"al_stripes":1,"port":`...)
	w.b = strconv.AppendInt(w.b, int64(r.port), 10)
	w.b = append(w.b, `,"transport_type":"IP"}},{"type":"STORAGE"}]`...)
	o.str("uuid", r.uuid)
	o.str("resource_group_name", r.rg)
	if withVD && len(r.vds) > 0 {
		o.key("volume_definitions")
		w.b = append(w.b, '[')
		for i := range r.vds {
			if i > 0 {
				w.b = append(w.b, ',')
			}
			encodeVD(w, &r.vds[i])
		}
		w.b = append(w.b, ']')
	}
	o.close()
	return w.b
}

func encodeVD(w *jw, v *vdRec) {
	o := w.open()
	o.key("volume_number")
	w.b = strconv.AppendInt(w.b, int64(v.nr), 10)
	o.key("size_kib")
	w.b = strconv.AppendUint(w.b, v.sizeKiB, 10)
	o.props("props", v.props)
	o.strs("flags", v.flags)
	o.key("layer_data")
	w.b = append(w.b, `[{"type":"DRBD","data":{`...)
	d := obj{w: w}
	d.num("volume_number", int64(v.nr))
	d.num("minor_number", int64(v.minor))
	w.b = append(w.b, `}},{"type":"STORAGE"}]`...)
	o.str("uuid", v.uuid)
	o.close()
}

// encodeResource writes client.ResourceWithVolumes for res of rd, with the
// state stored in the record (what every answer shows outside realistic mode).
func encodeResource(rd *rdRec, res *resRec) []byte {
	w := &jw{b: make([]byte, 0, 1024)}
	writeResource(w, rd, res, storedState(rd, res))
	return w.b
}

// writeResource writes client.ResourceWithVolumes for res of rd in state st.
// The fields only linstor-server sends (replication states, report times)
// appear only when st has them, in realistic mode.
func writeResource(w *jw, rd *rdRec, res *resRec, st *replicaState) {
	o := w.open()
	o.str("name", rd.name)
	o.str("node_name", res.node)
	o.props("props", res.props)
	o.strs("flags", res.flags)
	o.key("layer_object")
	w.b = append(w.b, `{"children":[{"type":"STORAGE","storage":{}}],"type":"DRBD","drbd":{"drbd_resource_definition":{}`...)
	d := obj{w: w, n: 1}
	d.num("node_id", int64(res.nodeID))
	d.num("peer_slots", 7)
	d.num("al_stripes", 1)
	if len(st.peers) > 0 {
		d.key("connections")
		c := w.open()
		for _, p := range st.peers {
			c.strKey(p.node)
			pc := w.open()
			pc.boolean("connected", p.conn == connConnected)
			pc.str("message", p.conn)
			pc.close()
		}
		c.close()
	}
	d.num("promotion_score", int64(st.score))
	d.boolean("may_promote", st.mayPromote)
	w.b = append(w.b, "}}"...)
	if st.reported {
		o.key("state")
		if st.inUse {
			w.b = append(w.b, `{"in_use":true}`...)
		} else {
			w.b = append(w.b, `{"in_use":false}`...)
		}
	}
	o.str("uuid", res.uuid)
	o.key("create_timestamp")
	w.b = strconv.AppendInt(w.b, res.created.Unix()*1000, 10)
	if len(rd.vds) > 0 {
		o.key("volumes")
		w.b = append(w.b, '[')
		for i := range rd.vds {
			if i > 0 {
				w.b = append(w.b, ',')
			}
			writeVolume(w, rd, res, &rd.vds[i], st, st.alloc[i])
		}
		w.b = append(w.b, ']')
	}
	o.close()
}

// writeVolume writes client.Volume for volume v of res; alloc is its
// allocated size (-1: unknown, left out).
func writeVolume(w *jw, rd *rdRec, res *resRec, v *vdRec, st *replicaState, alloc int64) {
	known := max(alloc, 0)
	dev := "/dev/drbd" + strconv.Itoa(int(v.minor))
	o := w.open()
	o.num("volume_number", int64(v.nr))
	o.str("storage_pool_name", res.pool)
	o.str("provider_kind", string(res.provider))
	o.str("device_path", dev)
	o.num("allocated_size_kib", known)
	o.num("usable_size_kib", int64(v.sizeKiB))
	o.props("props", res.volProps[v.nr])
	o.strs("flags", res.volFlags)
	if st.reported {
		o.key("state")
		s := w.open()
		s.str("disk_state", st.disk)
		writeReplication(&s, st.peers)
		s.close()
	}
	o.key("layer_data_list")
	w.b = append(w.b, `[{"type":"DRBD","data":{"drbd_volume_definition":`...)
	dv := w.open()
	dv.num("volume_number", int64(v.nr))
	dv.num("minor_number", int64(v.minor))
	dv.close()
	d := obj{w: w, n: 1}
	d.str("device_path", dev)
	d.num("allocated_size_kib", known)
	d.num("usable_size_kib", int64(v.sizeKiB))
	d.str("disk_state", st.disk)
	w.b = append(w.b, `}},{"type":"STORAGE","data":{`...)
	sd := obj{w: w}
	sd.num("volume_number", int64(v.nr))
	sd.num("allocated_size_kib", known)
	sd.num("usable_size_kib", known)
	sd.str("disk_state", "[]")
	w.b = append(w.b, "}}]"...)
	o.str("uuid", rd.uuid+"-"+res.node+"-"+strconv.Itoa(int(v.nr)))
	if st.reportAt != "" {
		writeNotConnected(&o, res.node, st.reportAt)
	}
	o.close()
}

// writeReplication writes linstor-server's replication_states: the DRBD
// replication state towards each peer (not in golinstor's VolumeState).
func writeReplication(s *obj, peers []peerState) {
	if len(peers) == 0 {
		return
	}
	s.key("replication_states")
	r := s.w.open()
	for _, p := range peers {
		r.strKey(p.node)
		ps := s.w.open()
		ps.str("replication_state", p.repl)
		if p.done > 0 {
			ps.key("done_percentage")
			ps.w.b = strconv.AppendFloat(ps.w.b, p.done, 'f', -1, 64)
		}
		ps.close()
	}
	r.close()
}

// warnNotConnected is LINSTOR's WARN_NOT_CONNECTED, which the REST API
// sends as a signed 64-bit number.
var warnNotConnected uint64 = lapiconst.WarnNotConnected

// writeNotConnected writes the report linstor-server attaches to a volume
// whose satellite it could not ask for the allocated size, stamped with the
// time of the request.
func writeNotConnected(o *obj, node, at string) {
	o.key("reports")
	w := o.w
	w.b = append(w.b, '[')
	r := w.open()
	r.key("ret_code")
	w.b = strconv.AppendInt(w.b, int64(warnNotConnected), 10)
	r.str("message", "No active connection to satellite '"+node+"'")
	r.key("obj_refs")
	refs := w.open()
	refs.str("Node", node)
	refs.close()
	r.str("created_at", at)
	r.close()
	w.b = append(w.b, ']')
}
