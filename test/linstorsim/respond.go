package linstorsim

import (
	"bufio"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"

	lapiconst "github.com/LINBIT/golinstor"
	"github.com/LINBIT/golinstor/client"
)

// apiFunc is a REST handler; a returned error becomes an ApiCallError body.
type apiFunc func(w http.ResponseWriter, r *http.Request) error

func (f apiFunc) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if err := f(w, r); err != nil {
		writeError(w, err)
	}
}

// writeError answers like LINSTOR: the status of the error and a list of
// ApiCallRc describing it.
func writeError(w http.ResponseWriter, err error) {
	var ae *APIError
	if !errors.As(err, &ae) {
		ae = &APIError{Status: http.StatusInternalServerError, RetCode: lapiconst.FailUnknownError, Message: err.Error()}
	}
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(ae.Status)
	_ = json.NewEncoder(w).Encode(ae.body())
}

// writeRC answers a successful mutation with one ApiCallRc.
func writeRC(w http.ResponseWriter, status int, code uint64, objRefs map[string]string, format string, args ...any) error {
	return writeJSON(w, status, []client.ApiCallRc{{
		RetCode: int64(code),
		Message: fmt.Sprintf(format, args...),
		ObjRefs: objRefs,
	}})
}

func writeJSON(w http.ResponseWriter, status int, v any) error {
	b, err := json.Marshal(v)
	if err != nil {
		return fmt.Errorf("encode %T: %w", v, err)
	}
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	// The status is out; a failed write means the client went away.
	_, _ = w.Write(b)
	return nil
}

// writeArray streams a JSON array of pre-encoded items, so a list of tens of
// thousands of objects never sits in memory twice.
func writeArray(w http.ResponseWriter, items [][]byte) error {
	return writeItems(w, len(items), func(i int) []byte { return items[i] })
}

// writeItems streams a JSON array of n items, each encoded on demand (the
// bytes item returns are written before it is called again).
func writeItems(w http.ResponseWriter, n int, item func(i int) []byte) error {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(http.StatusOK)
	bw := bufio.NewWriterSize(w, 64<<10)
	_ = bw.WriteByte('[')
	for i := 0; i < n; i++ {
		if i > 0 {
			_ = bw.WriteByte(',')
		}
		_, _ = bw.Write(item(i))
	}
	_ = bw.WriteByte(']')
	// The status is out; a failed write means the client went away.
	_ = bw.Flush()
	return nil
}

// readJSON decodes a request body; an empty body leaves v untouched.
func readJSON(r *http.Request, v any) error {
	err := json.NewDecoder(r.Body).Decode(v)
	if err == nil || errors.Is(err, io.EOF) {
		return nil
	}
	return errInvalid("request body: %v", err)
}

func requester(r *http.Request) actor {
	return actor{via: ViaAPI, agent: r.UserAgent()}
}
