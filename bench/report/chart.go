package main

import (
	"fmt"
	"image/color"
	"math"

	"gonum.org/v1/plot"
	"gonum.org/v1/plot/plotter"
	"gonum.org/v1/plot/vg"
	"gonum.org/v1/plot/vg/draw"
)

// The chart's colours: no agent, tcpspan, BIN_B, bpftrace, targets.
var (
	colNone     = color.RGBA{150, 150, 150, 255}
	colTCPSpan  = color.RGBA{52, 110, 180, 255}
	colB        = color.RGBA{120, 80, 170, 255}
	colBPFTrace = color.RGBA{220, 130, 40, 255}
	colTarget   = color.RGBA{210, 30, 30, 255}
)

// writeChart draws the rate of each mode relative to its baseline as bars
// (median), with each round as a tick and the targets as dashed red lines;
// 960×560 pixels, as PNG (or SVG, PDF by the file's extension).
func writeChart(path string, res *Results) error {
	p := plot.New()
	p.Title.Text = fmt.Sprintf("Rate relative to no agent, median of rounds\n%s, %d CPUs, kernel %s, commit %s",
		dateOf(res.Date), res.Machine.NProc, res.Machine.Kernel, res.Commit)
	p.Y.Label.Text = "× its baseline (the same load, no agent)"
	p.Y.Min = 0
	p.Add(plotter.NewGrid())

	var names []string
	var values []plotter.XY
	var labels []string
	ymax := 1.2
	roundStyle := draw.GlyphStyle{Color: color.Black, Radius: vg.Points(2), Shape: draw.BoxGlyph{}}
	var anyTarget, anyRound plot.Thumbnailer
	for _, m := range res.Modes {
		i := float64(len(names))
		bars, err := plotter.NewBarChart(plotter.Values{m.Ratio}, vg.Points(40))
		if err != nil {
			return err
		}
		bars.XMin = i
		bars.Color = barColor(m.Mode)
		bars.LineStyle.Width = 0
		p.Add(bars)

		top := m.Ratio
		var rounds plotter.XYs
		for _, r := range m.runs {
			rr := ratioOf(res, r)
			rounds = append(rounds, plotter.XY{X: i, Y: rr})
			top = math.Max(top, rr)
		}
		if len(rounds) > 0 {
			s, err := plotter.NewScatter(rounds)
			if err != nil {
				return err
			}
			s.GlyphStyle = roundStyle
			p.Add(s)
			anyRound = s
		}
		if t := targetRatio(res, m); t > 0 {
			l, err := plotter.NewLine(plotter.XYs{{X: i - 0.35, Y: t}, {X: i + 0.35, Y: t}})
			if err != nil {
				return err
			}
			l.Color = colTarget
			l.Width = vg.Points(1.5)
			l.Dashes = []vg.Length{vg.Points(4), vg.Points(2)}
			p.Add(l)
			anyTarget = l
			top = math.Max(top, t)
		}
		values = append(values, plotter.XY{X: i, Y: top})
		labels = append(labels, fmt.Sprintf("%.2f×", m.Ratio))
		names = append(names, m.Mode+"\n"+rateWords(m))
		ymax = math.Max(ymax, top*1.15)
	}
	if len(names) == 0 {
		return fmt.Errorf("nothing to plot")
	}
	vl, err := plotter.NewLabels(plotter.XYLabels{XYs: values, Labels: labels})
	if err != nil {
		return err
	}
	for i := range vl.TextStyle {
		vl.TextStyle[i].XAlign = draw.XCenter
	}
	vl.Offset = vg.Point{Y: vg.Points(4)}
	p.Add(vl)
	one, err := plotter.NewLine(plotter.XYs{{X: -0.5, Y: 1}, {X: float64(len(names)) - 0.5, Y: 1}})
	if err != nil {
		return err
	}
	one.Color = colNone
	p.Add(one)

	p.NominalX(names...)
	p.X.Tick.Label.Font.Size = vg.Points(8)
	p.Y.Max = math.Ceil(ymax/0.2) * 0.2
	p.Legend.Top = true
	p.Legend.Left = true
	if anyTarget != nil {
		p.Legend.Add("target", anyTarget)
	}
	if anyRound != nil {
		p.Legend.Add("one round", anyRound)
	}
	return p.Save(10*vg.Inch, 5.833*vg.Inch, path)
}

func barColor(mode string) color.Color {
	m, _ := specOf(mode)
	switch {
	case m.Agent == "":
		return colNone
	case m.Agent == "bpftrace":
		return colBPFTrace
	case m.BinB:
		return colB
	}
	return colTCPSpan
}

// rateWords is a mode's median rate under its name: 6.4k conn/s, 62 ns/call.
func rateWords(m *Mode) string {
	switch m.Kind {
	case kindSyscall:
		return fmt.Sprintf("%.0f ns/call", m.NsPerCall)
	case kindLoop:
		return fmt.Sprintf("%.1f µs/conn", m.NsPerConn/1000)
	case kindStorm:
		return fmt.Sprintf("%.1fk RST/s", m.RateMedian/1000)
	case kindKeepalive:
		return fmt.Sprintf("%.1fk req/s", m.RateMedian/1000)
	}
	return fmt.Sprintf("%.1fk conn/s", m.RateMedian/1000)
}

// targetRatio is a mode's target as a ratio to its baseline, 0 for none:
// the same goals as targets.go's.
func targetRatio(res *Results, m *Mode) float64 {
	switch m.Mode {
	case "export-sink", "export-all":
		return 0.90
	case "errors-only":
		return 0.97
	case "keepalive-agent":
		return 0.99
	case "syscall-agent":
		if b := findMode(res.Modes, m.Baseline); b != nil && b.NsPerCall > 0 {
			return b.NsPerCall / (b.NsPerCall + max(1, 0.02*b.NsPerCall))
		}
	case "storm-errors":
		if b := findMode(res.Modes, m.Baseline); b != nil && b.RateMedian > 0 {
			return 20000 / b.RateMedian
		}
	}
	return 0
}

// ratioOf is a run's rate over the median rate of its baseline mode.
func ratioOf(res *Results, r *Run) float64 {
	if b := findMode(res.Modes, r.baselineMode()); b != nil && b.RateMedian > 0 {
		return r.Rate / b.RateMedian
	}
	return 0
}

func dateOf(rfc3339 string) string {
	if len(rfc3339) >= 10 {
		return rfc3339[:10]
	}
	return rfc3339
}
