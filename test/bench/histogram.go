package main

import (
	"math"
	"sort"
	"strings"

	dto "github.com/prometheus/client_model/go"
)

// bucket is a cumulative Prometheus histogram bucket: observations ≤ LE.
type bucket struct {
	LE    float64 `json:"le"`
	Count float64 `json:"count"`
}

// histogram is a Prometheus histogram, or the sum of several with the same
// buckets.
type histogram struct {
	Buckets []bucket `json:"buckets"`
	Count   float64  `json:"count"`
	Sum     float64  `json:"sum"`
}

// histogramsOf adds up the histograms of family name whose labels match
// (see labelsMatch), grouped by the value of label groupBy ("" for one
// group keyed "").
func histogramsOf(fams map[string]*dto.MetricFamily, name string, match map[string]string, groupBy string) map[string]histogram {
	out := map[string]histogram{}
	f := fams[name]
	if f == nil {
		return out
	}
	for _, m := range f.Metric {
		if m.Histogram == nil || !labelsMatch(m, match) {
			continue
		}
		key := ""
		if groupBy != "" {
			key = labelValue(m, groupBy)
		}
		h := out[key]
		h.Count += float64(m.Histogram.GetSampleCount())
		h.Sum += m.Histogram.GetSampleSum()
		for _, b := range m.Histogram.Bucket {
			h.Buckets = addBucket(h.Buckets, b.GetUpperBound(), float64(b.GetCumulativeCount()))
		}
		out[key] = h
	}
	return out
}

func addBucket(bs []bucket, le, count float64) []bucket {
	for i := range bs {
		if bs[i].LE == le {
			bs[i].Count += count
			return bs
		}
	}
	bs = append(bs, bucket{LE: le, Count: count})
	sort.Slice(bs, func(i, j int) bool { return bs[i].LE < bs[j].LE })
	return bs
}

// minus is the histogram of the observations made since h0 was scraped.
func (h histogram) minus(h0 histogram) histogram {
	out := histogram{Count: h.Count - h0.Count, Sum: h.Sum - h0.Sum}
	for _, b := range h.Buckets {
		c := b.Count
		for _, b0 := range h0.Buckets {
			if b0.LE == b.LE {
				c -= b0.Count
			}
		}
		out.Buckets = append(out.Buckets, bucket{LE: b.LE, Count: c})
	}
	return out
}

// quantile estimates the q-quantile as Prometheus' histogram_quantile
// does: linear interpolation inside the bucket that holds it, the lower
// bound of the first bucket taken as 0; in the +Inf bucket, the highest
// finite bound. NaN without observations.
func (h histogram) quantile(q float64) float64 {
	if h.Count <= 0 || len(h.Buckets) == 0 {
		return math.NaN()
	}
	rank := q * h.Count
	lower, below := 0.0, 0.0
	for _, b := range h.Buckets {
		if b.Count >= rank {
			if math.IsInf(b.LE, 1) {
				return lower
			}
			if b.Count == below {
				return b.LE
			}
			return lower + (b.LE-lower)*(rank-below)/(b.Count-below)
		}
		lower, below = b.LE, b.Count
	}
	return lower
}

// histSummary is a histogram in the report: its count, mean and
// interpolated median and p99 (seconds).
type histSummary struct {
	Count  float64 `json:"count"`
	Mean   float64 `json:"meanSeconds"`
	Median float64 `json:"medianSeconds"`
	P99    float64 `json:"p99Seconds"`
}

func (h histogram) summary() histSummary {
	s := histSummary{Count: h.Count}
	if h.Count > 0 {
		s.Mean, s.Median, s.P99 = h.Sum/h.Count, h.quantile(0.5), h.quantile(0.99)
	}
	return s
}

// labelsMatch reports whether m has every label of match with its value (a
// value starting with "!" means "anything but this value").
func labelsMatch(m *dto.Metric, match map[string]string) bool {
	for k, want := range match {
		got := labelValue(m, k)
		if neg, isNeg := strings.CutPrefix(want, "!"); isNeg {
			if got == neg {
				return false
			}
		} else if got != want {
			return false
		}
	}
	return true
}

func labelValue(m *dto.Metric, name string) string {
	for _, l := range m.Label {
		if l.GetName() == name {
			return l.GetValue()
		}
	}
	return ""
}
