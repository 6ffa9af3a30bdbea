//go:build !faulthooks

package repair

import ()

// faultHook is a no-op in every normal build: the production binary cannot
// kill itself. The fault suite (test/faults) builds with -tags faulthooks to
// get the version in faulthook_on.go.
func faultHook(Step, string) {}

// FaultHooksCompiled reports whether this binary carries the test-only fault
// hook; it is false in every build without the faulthooks tag.
const FaultHooksCompiled = false
