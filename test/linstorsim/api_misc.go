package linstorsim

import (
	"net/http"
	"sort"

	lapiconst "github.com/LINBIT/golinstor"
	"github.com/LINBIT/golinstor/client"
)

// REST handlers for the controller, the key-value store, remotes and
// anything not simulated.

// SimulatedVersion is the LINSTOR version the simulator reports.
const SimulatedVersion = "1.29.0"

func (s *Sim) controllerVersion(w http.ResponseWriter, r *http.Request) error {
	return writeJSON(w, http.StatusOK, client.ControllerVersion{
		Version:        SimulatedVersion,
		GitHash:        "linstorsim",
		BuildTime:      "2024-01-01T00:00:00+00:00",
		RestApiVersion: "1.22.0",
	})
}

func (s *Sim) health(w http.ResponseWriter, r *http.Request) error {
	w.WriteHeader(http.StatusOK)
	return nil
}

func (s *Sim) listKV(w http.ResponseWriter, r *http.Request) error {
	s.st.rlock()
	var kvs []client.KV
	for name, props := range s.st.kv {
		kvs = append(kvs, client.KV{Name: name, Props: copyProps(props)})
	}
	s.st.mu.RUnlock()
	sort.Slice(kvs, func(i, j int) bool { return kvs[i].Name < kvs[j].Name })
	if kvs == nil {
		kvs = []client.KV{}
	}
	return writeJSON(w, http.StatusOK, kvs)
}

func (s *Sim) getKV(w http.ResponseWriter, r *http.Request) error {
	name := r.PathValue("kv")
	s.st.rlock()
	props, ok := s.st.kv[name]
	s.st.mu.RUnlock()
	if !ok {
		return errNotFound(lapiconst.FailNotFoundKvs, "key-value store '%s' not found", name)
	}
	return writeJSON(w, http.StatusOK, client.KV{Name: name, Props: copyProps(props)})
}

func (s *Sim) modifyKV(w http.ResponseWriter, r *http.Request) error {
	name := r.PathValue("kv")
	var m client.GenericPropsModify
	if err := readJSON(r, &m); err != nil {
		return err
	}
	s.st.lock()
	s.st.kv[name] = applyProps(s.st.kv[name], m.OverrideProps, m.DeleteProps, m.DeleteNamespaces)
	s.st.mu.Unlock()
	return writeRC(w, http.StatusOK, lapiconst.Modified, map[string]string{"KVStore": name}, "Key-value store '%s' modified.", name)
}

func (s *Sim) deleteKV(w http.ResponseWriter, r *http.Request) error {
	name := r.PathValue("kv")
	s.st.lock()
	_, ok := s.st.kv[name]
	delete(s.st.kv, name)
	s.st.mu.Unlock()
	if !ok {
		return errNotFound(lapiconst.FailNotFoundKvs, "key-value store '%s' not found", name)
	}
	return writeRC(w, http.StatusOK, lapiconst.Deleted, map[string]string{"KVStore": name}, "Key-value store '%s' deleted.", name)
}

// The simulator has no remotes; these answer the lists with nothing.

func (s *Sim) listRemotes(w http.ResponseWriter, r *http.Request) error {
	return writeJSON(w, http.StatusOK, client.RemoteList{})
}

func (s *Sim) emptyList(w http.ResponseWriter, r *http.Request) error {
	return writeArray(w, nil)
}

// notSimulated answers routes the simulator does not know, so a gap shows
// up as a clear error instead of a misleading 404.
func (s *Sim) notSimulated(w http.ResponseWriter, r *http.Request) error {
	return &APIError{
		Status:  http.StatusNotImplemented,
		RetCode: lapiconst.FailUnknownError,
		Message: "linstorsim does not simulate " + r.Method + " " + r.URL.Path,
	}
}
