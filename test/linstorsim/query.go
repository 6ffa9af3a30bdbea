package linstorsim

import (
	"net/url"
	"strconv"
	"strings"
)

// listQuery is the filter and paging part of a LINSTOR list request, as
// golinstor's ListOpts encodes it: repeated (or comma separated) names,
// "props" entries of the form key or key=value, and offset/limit where a
// limit <= 0 means everything.
type listQuery struct {
	nodes     map[string]bool
	resources map[string]bool
	pools     map[string]bool
	props     []string
	offset    int
	limit     int
}

func nameSet(q url.Values, keys ...string) map[string]bool {
	var set map[string]bool
	for _, key := range keys {
		for _, v := range q[key] {
			for _, name := range strings.Split(v, ",") {
				if name = strings.TrimSpace(name); name != "" {
					if set == nil {
						set = map[string]bool{}
					}
					set[name] = true
				}
			}
		}
	}
	return set
}

func firstInt(q url.Values, key string) (int, error) {
	v := q.Get(key)
	if v == "" {
		return 0, nil
	}
	n, err := strconv.Atoi(v)
	if err != nil || n < 0 {
		return 0, errInvalid("query parameter %s=%q is not a non-negative integer", key, v)
	}
	return n, nil
}

func parseListQuery(q url.Values) (listQuery, error) {
	lq := listQuery{
		nodes:     nameSet(q, "nodes"),
		resources: nameSet(q, "resources", "resource_definitions"),
		pools:     nameSet(q, "storage_pools"),
	}
	for _, p := range q["props"] {
		if p != "" {
			lq.props = append(lq.props, p)
		}
	}
	var err error
	if lq.offset, err = firstInt(q, "offset"); err != nil {
		return lq, err
	}
	if lq.limit, err = firstInt(q, "limit"); err != nil {
		return lq, err
	}
	return lq, nil
}

// in reports whether name passes a name filter (nil = no filter).
func in(set map[string]bool, name string) bool {
	return set == nil || set[name]
}

// propsMatch reports whether props satisfy every key or key=value filter.
func (lq listQuery) propsMatch(props map[string]string) bool {
	for _, f := range lq.props {
		key, want, hasValue := strings.Cut(f, "=")
		got, ok := props[key]
		if !ok || (hasValue && got != want) {
			return false
		}
	}
	return true
}

// page returns the bounds of the requested page of n items.
func (lq listQuery) page(n int) (int, int) {
	if lq.limit <= 0 {
		return 0, n
	}
	start := min(lq.offset, n)
	return start, min(start+lq.limit, n)
}

// thin drops an evenly spread fraction of items, the "partial data" fault:
// item i goes when floor((i+1)*f) > floor(i*f), so exactly floor(n*f)
// items are dropped and the choice depends only on n and f.
func thin[T any](items []T, f float64) []T {
	if f <= 0 {
		return items
	}
	out := make([]T, 0, len(items))
	for i, it := range items {
		if int(float64(i+1)*f) > int(float64(i)*f) {
			continue
		}
		out = append(out, it)
	}
	return out
}
