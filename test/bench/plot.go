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

// writePlot draws convergence latency (median, p99, max) against N for each
// repair method, with the 7 s target, as a PNG.
func writePlot(path string, runs []runResult) error {
	p := plot.New()
	p.Title.Text = "Convergence after a replica move (default settings)"
	p.X.Label.Text = "PVs (N)"
	p.Y.Label.Text = "seconds until the PV shows the new affinity"
	p.X.Scale = plot.LogScale{}
	p.X.Tick.Marker = plot.LogTicks{Prec: -1}
	p.Legend.Top = true
	p.Legend.Left = true
	sorted := append([]runResult(nil), runs...)
	sort.Slice(sorted, func(i, j int) bool { return sorted[i].N < sorted[j].N })
	type series struct {
		method, stat string
		get          func(summary) float64
		dash         []vg.Length
	}
	colors := map[string]color.Color{"in-place": color.RGBA{R: 0x1f, G: 0x77, B: 0xb4, A: 0xff}, "recreate": color.RGBA{R: 0xd6, G: 0x27, B: 0x28, A: 0xff}}
	var all []series
	for _, m := range []string{"in-place", "recreate"} {
		all = append(all,
			series{m, "median", func(s summary) float64 { return s.Median }, []vg.Length{vg.Points(2), vg.Points(2)}},
			series{m, "p99", func(s summary) float64 { return s.P99 }, nil},
			series{m, "max", func(s summary) float64 { return s.Max }, []vg.Length{vg.Points(6), vg.Points(3)}},
		)
	}
	maxN := 0.0
	for _, s := range all {
		var pts plotter.XYs
		for _, r := range sorted {
			c, ok := r.Convergence[s.method]
			if !ok || c.Latency.Count == 0 {
				continue
			}
			pts = append(pts, plotter.XY{X: float64(r.N), Y: s.get(c.Latency)})
			maxN = max(maxN, float64(r.N))
		}
		if len(pts) == 0 {
			continue
		}
		line, points, err := plotter.NewLinePoints(pts)
		if err != nil {
			return err
		}
		line.Color, points.Color = colors[s.method], colors[s.method]
		line.Dashes = s.dash
		points.Shape = draw.CircleGlyph{}
		p.Add(line, points)
		p.Legend.Add(fmt.Sprintf("%s %s", s.method, s.stat), line, points)
	}
	if maxN > 0 {
		target, err := plotter.NewLine(plotter.XYs{{X: float64(sorted[0].N), Y: 7}, {X: maxN, Y: 7}})
		if err != nil {
			return err
		}
		target.Color = color.Gray{Y: 0x80}
		target.Dashes = []vg.Length{vg.Points(1), vg.Points(3)}
		p.Add(target)
		p.Legend.Add("p99 target (7 s)", target)
	}
	p.Y.Min = 0
	p.Y.Max = max(p.Y.Max, 7) * 1.7 // room for the legend above the target line
	p.Add(plotter.NewGrid())
	return p.Save(7*vg.Inch, 4.5*vg.Inch, path)
}
