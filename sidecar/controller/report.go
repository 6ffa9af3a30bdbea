package controller

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"sort"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/piraeusdatastore/linstor-affinity-sidecar/sidecar/decide"
	corev1 "k8s.io/api/core/v1"
	storagev1 "k8s.io/api/storage/v1"
)

// Inspector is what the check report asks the CSI driver, when reachable.
type Inspector interface {
	// VolumeCondition says how the driver sees a volume: "ok", "not found",
	// "abnormal: <message>" (ControllerGetVolume).
	VolumeCondition(ctx context.Context, volumeID string) (string, error)
	// Capacity is GetCapacity for a segment and StorageClass parameters.
	Capacity(ctx context.Context, parameters map[string]string, segment map[string]string) (int64, error)
}

// Report is the read-only answer of `linstor-affinity-sidecar check`.
type Report struct {
	Driver      string      `json:"driver"`
	GeneratedAt time.Time   `json:"generatedAt"`
	Summary     Summary     `json:"summary"`
	PVs         []ReportRow `json:"pvs"`
}

// Summary counts PVs by status.
type Summary struct {
	InSync  int `json:"inSync"`
	Drifted int `json:"drifted"`
	Skipped int `json:"skipped"`
}

// ReportRow is one PV (or saved state) of the report.
type ReportRow struct {
	PV           string              `json:"pv"`
	VolumeHandle string              `json:"volumeHandle,omitempty"`
	StorageClass string              `json:"storageClass,omitempty"`
	Status       string              `json:"status"`
	Decision     decide.Kind         `json:"decision"`
	Reason       decide.Reason       `json:"reason"`
	Message      string              `json:"message"`
	Policy       string              `json:"policy,omitempty"`
	PolicySource decide.PolicySource `json:"policySource,omitempty"`
	Current      string              `json:"currentAffinity"`
	Desired      string              `json:"desiredAffinity,omitempty"`
	Replicas     []string            `json:"diskfulReplicas,omitempty"`
	Driver       string              `json:"driverVolume,omitempty"`
	Capacity     []SegmentCapacity   `json:"capacity,omitempty"`
}

// SegmentCapacity is the driver's capacity answer for one desired segment.
type SegmentCapacity struct {
	Segment   map[string]string `json:"segment"`
	Available int64             `json:"availableBytes"`
	Error     string            `json:"error,omitempty"`
}

// BuildReport turns decisions into report rows, asking the driver (when
// inspector is not nil) about each volume and each desired segment.
func BuildReport(ctx context.Context, driver string, decisions []decide.Action, scs map[string]*storagev1.StorageClass, inspector Inspector, timeout time.Duration, now time.Time) Report {
	rep := Report{Driver: driver, GeneratedAt: now, PVs: make([]ReportRow, 0, len(decisions))}
	for _, a := range decisions {
		row := ReportRow{PV: a.Name, Status: pvStatus(a), Decision: a.Kind, Reason: a.Reason, Message: a.Message, PolicySource: a.PolicySource}
		switch row.Status {
		case "in-sync":
			rep.Summary.InSync++
		case "drifted":
			rep.Summary.Drifted++
		default:
			rep.Summary.Skipped++
		}
		if a.Policy != nil {
			row.Policy = a.Policy.String()
		}
		pv := a.PV
		if pv == nil && a.Saved != nil {
			pv = a.Saved.PV
		}
		row.Current = "-"
		if a.PV != nil {
			row.Current = decide.DescribeAffinity(a.PV.Spec.NodeAffinity)
		}
		if a.Topology != nil {
			row.Desired = decide.DescribeAffinity(decide.AffinityFor(*a.Topology))
			row.Replicas = a.Topology.Diskful
		} else if a.Kind == decide.KindRecreate {
			row.Desired = decide.DescribeAffinity(a.Affinity)
		}
		if pv != nil && pv.Spec.CSI != nil {
			row.VolumeHandle = pv.Spec.CSI.VolumeHandle
			row.StorageClass = pv.Spec.StorageClassName
			if inspector != nil {
				row.Driver, row.Capacity = inspect(ctx, inspector, pv, a.Topology, scs[pv.Spec.StorageClassName], timeout)
			}
		}
		rep.PVs = append(rep.PVs, row)
	}
	return rep
}

func inspect(ctx context.Context, in Inspector, pv *corev1.PersistentVolume, topo *decide.Topology, sc *storagev1.StorageClass, timeout time.Duration) (string, []SegmentCapacity) {
	cctx, cancel := context.WithTimeout(ctx, timeout)
	cond, err := in.VolumeCondition(cctx, pv.Spec.CSI.VolumeHandle)
	cancel()
	if err != nil {
		cond = "error: " + err.Error()
	}
	if topo == nil || topo.Anywhere {
		return cond, nil
	}
	var params map[string]string
	if sc != nil {
		params = sc.Parameters
	}
	caps := make([]SegmentCapacity, 0, len(topo.Segments))
	for _, seg := range topo.Segments {
		cctx, cancel := context.WithTimeout(ctx, timeout)
		avail, err := in.Capacity(cctx, params, seg)
		cancel()
		c := SegmentCapacity{Segment: seg, Available: avail}
		if err != nil {
			c.Error = err.Error()
		}
		caps = append(caps, c)
	}
	return cond, caps
}

// WriteJSON writes the report as indented JSON.
func (r Report) WriteJSON(w io.Writer) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(r)
}

// WriteTable writes the report as an aligned table, one PV per line, then
// the summary.
func (r Report) WriteTable(w io.Writer) error {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "PV\tSTATUS\tREASON\tCURRENT\tDESIRED\tDRIVER\tCAPACITY")
	for _, row := range r.PVs {
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\n", row.PV, row.Status, row.Reason, row.Current, dash(row.Desired), dash(row.Driver), capacityText(row.Capacity))
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	_, err := fmt.Fprintf(w, "\n%s: %d PVs, %d in sync, %d would change, %d skipped\n", r.Driver, len(r.PVs), r.Summary.InSync, r.Summary.Drifted, r.Summary.Skipped)
	return err
}

func dash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

func capacityText(caps []SegmentCapacity) string {
	if len(caps) == 0 {
		return "-"
	}
	parts := make([]string, 0, len(caps))
	for _, c := range caps {
		keys := make([]string, 0, len(c.Segment))
		for k, v := range c.Segment {
			keys = append(keys, k+"="+v)
		}
		sort.Strings(keys)
		v := fmt.Sprintf("%dGiB", c.Available>>30)
		if c.Error != "" {
			v = "?"
		}
		parts = append(parts, strings.Join(keys, ",")+":"+v)
	}
	return strings.Join(parts, " ")
}
