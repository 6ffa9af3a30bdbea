package decide

// The few unexported helpers the external tests (package decide_test) check
// directly; everything else they reach through the exported API.
var (
	PolicyEqual = policyEqual
	CoversAll   = coversAll
	TermSegment = termSegment
)

// SubsetOf says whether every key of s is in other with the same value.
func SubsetOf(s, other Segment) bool { return s.subsetOf(other) }
