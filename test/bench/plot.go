package main

import (
	"fmt"
	"image/color"
	"sort"

	"gonum.org/v1/plot"
	"gonum.org/v1/plot/plotter"
	"gonum.org/v1/plot/vg"
	"gonum.org/v1/plot/vg/draw"
)

// writePlot draws the time from a replica move to the blocked pod scheduled
// (median, p99, max) against N, for the default flags and, where measured,
// "before: 3 s polling", with the 2 s target, as a PNG.
func writePlot(path string, runs []runResult) error {
	p := plot.New()
	p.Title.Text = "Replica move to blocked pod scheduled (kube-scheduler)"
	p.X.Label.Text = "PVs (N)"
	p.Y.Label.Text = "seconds until the pod has a node"
	p.X.Scale = plot.LogScale{}
	p.X.Tick.Marker = plot.LogTicks{Prec: -1}
	p.Legend.Top = true
	p.Legend.Left = true
	sorted := append([]runResult(nil), runs...)
	sort.Slice(sorted, func(i, j int) bool { return sorted[i].N < sorted[j].N })
	type series struct {
		stat string
		get  func(summary) float64
		dash []vg.Length
	}
	stats := []series{
		{"median", func(s summary) float64 { return s.Median }, []vg.Length{vg.Points(2), vg.Points(2)}},
		{"p99", func(s summary) float64 { return s.P99 }, nil},
		{"max", func(s summary) float64 { return s.Max }, []vg.Length{vg.Points(6), vg.Points(3)}},
	}
	configs := []struct {
		key, label string
		color      color.Color
	}{
		{"default", labelDefault, color.RGBA{R: 0x1f, G: 0x77, B: 0xb4, A: 0xff}},
		{"before", labelBefore, color.RGBA{R: 0xd6, G: 0x27, B: 0x28, A: 0xff}},
	}
	minN, maxN := 0.0, 0.0
	for _, c := range configs {
		for _, s := range stats {
			var pts plotter.XYs
			for _, r := range sorted {
				pr, ok := r.Pods[c.key]
				if !ok || pr.Latency.Count == 0 {
					continue
				}
				pts = append(pts, plotter.XY{X: float64(r.N), Y: s.get(pr.Latency)})
				if minN == 0 {
					minN = float64(r.N)
				}
				minN, maxN = min(minN, float64(r.N)), max(maxN, float64(r.N))
			}
			if len(pts) == 0 {
				continue
			}
			line, points, err := plotter.NewLinePoints(pts)
			if err != nil {
				return err
			}
			line.Color, points.Color = c.color, c.color
			line.Dashes = s.dash
			points.Shape = draw.CircleGlyph{}
			p.Add(line, points)
			p.Legend.Add(fmt.Sprintf("%s, %s", c.label, s.stat), line, points)
		}
	}
	if maxN > 0 {
		target, err := plotter.NewLine(plotter.XYs{{X: minN, Y: targetPodP99}, {X: maxN, Y: targetPodP99}})
		if err != nil {
			return err
		}
		target.Color = color.Gray{Y: 0x80}
		target.Dashes = []vg.Length{vg.Points(1), vg.Points(3)}
		p.Add(target)
		p.Legend.Add(fmt.Sprintf("p99 target at 10,000 (%.0f s)", targetPodP99), target)
	}
	p.Y.Min = 0
	p.Y.Max = max(p.Y.Max, targetPodP99) * 1.7 // room for the legend above the lines
	p.Add(plotter.NewGrid())
	return p.Save(7*vg.Inch, 4.5*vg.Inch, path)
}
