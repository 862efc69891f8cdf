package admin

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/http"

	"github.com/gatewayd/gatewayd/errkind"
)

// DecodeBody reads a request's JSON body (at most 1 MiB) into v, refusing
// fields v does not have, so a misspelt option is an error and not ignored.
func DecodeBody(r *http.Request, v any) error {
	dec := json.NewDecoder(http.MaxBytesReader(nil, r.Body, 1<<20))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return fmt.Errorf("bad request body: %w", err)
	}
	return nil
}

// ErrorCode is the status an error answer carries: 409 for an error that
// is one of conflicts, then by the error's class (404 not found, 503
// retryable), 400 otherwise.
func ErrorCode(err error, conflicts ...error) int {
	for _, c := range conflicts {
		if errors.Is(err, c) {
			return http.StatusConflict
		}
	}
	switch {
	case errkind.IsNotFound(err):
		return http.StatusNotFound
	case errkind.IsRetryable(err):
		return http.StatusServiceUnavailable
	}
	return http.StatusBadRequest
}
