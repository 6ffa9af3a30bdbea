package linstorsim

import (
	"errors"
	"fmt"
	"net/http"

	lapiconst "github.com/LINBIT/golinstor"
	"github.com/LINBIT/golinstor/client"
)

// APIError is a failed LINSTOR call: the HTTP status the REST API answers
// with and the return code golinstor matches with IsApiCallError. The Go
// controls return it too, so a test can tell "not found" from "no room".
type APIError struct {
	Status  int
	RetCode uint64
	Message string
}

func (e *APIError) Error() string { return e.Message }

// IsNotFound reports whether err is a simulator "no such object" error.
func IsNotFound(err error) bool {
	var ae *APIError
	return errors.As(err, &ae) && ae.Status == http.StatusNotFound
}

func (e *APIError) body() client.ApiCallError {
	return client.ApiCallError{{
		RetCode: int64(e.RetCode),
		Message: e.Message,
		Cause:   "linstorsim",
	}}
}

func errNotFound(code uint64, format string, args ...any) *APIError {
	return &APIError{Status: http.StatusNotFound, RetCode: code, Message: fmt.Sprintf(format, args...)}
}

func errExists(code uint64, format string, args ...any) *APIError {
	return &APIError{Status: http.StatusConflict, RetCode: code, Message: fmt.Sprintf(format, args...)}
}

func errInvalid(format string, args ...any) *APIError {
	return &APIError{Status: http.StatusBadRequest, RetCode: lapiconst.FailInvldProp, Message: fmt.Sprintf(format, args...)}
}

func errNoNodes(format string, args ...any) *APIError {
	return &APIError{Status: http.StatusInternalServerError, RetCode: lapiconst.FailNotEnoughNodes, Message: fmt.Sprintf(format, args...)}
}

func noNode(name string) *APIError {
	return errNotFound(lapiconst.FailNotFoundNode, "node '%s' not found", name)
}

func noRD(name string) *APIError {
	return errNotFound(lapiconst.FailNotFoundRscDfn, "resource definition '%s' not found", name)
}

func noRG(name string) *APIError {
	return errNotFound(lapiconst.FailNotFoundRscGrp, "resource group '%s' not found", name)
}

func noVD(rd string, nr int32) *APIError {
	return errNotFound(lapiconst.FailNotFoundVlmDfn, "volume definition %d of '%s' not found", nr, rd)
}

func noResource(rd, node string) *APIError {
	return errNotFound(lapiconst.FailNotFoundRsc, "resource '%s' not found on node '%s'", rd, node)
}
