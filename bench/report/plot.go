package main

import (
	"fmt"
	"image"
	"image/color"
	"image/png"
	"math"
	"os"
)

// writeChart draws the throughput of each mode relative to its baseline as
// bars (median), with each round as a tick and the targets as red lines.
func writeChart(path string, res *Results) error {
	const (
		W, H                     = 960, 560
		left, right, top, bottom = 80, 30, 80, 150
		scale                    = 2
	)
	type bar struct {
		label1, label2 string
		m              *Mode
		target         float64 // 0: none
		col            color.RGBA
	}
	var (
		grey   = color.RGBA{150, 150, 150, 255}
		blue   = color.RGBA{52, 110, 180, 255}
		orange = color.RGBA{220, 130, 40, 255}
		red    = color.RGBA{210, 30, 30, 255}
		black  = color.RGBA{20, 20, 20, 255}
		light  = color.RGBA{225, 225, 225, 255}
		text   = color.RGBA{40, 40, 40, 255}
	)
	var bars []bar
	add := func(mode, l1, l2 string, target float64, col color.RGBA) {
		if m := findMode(res.Modes, mode); m != nil {
			bars = append(bars, bar{l1, l2, m, target, col})
		}
	}
	add("none", "NO AGENT", "", 0, grey)
	add("export-sink", "ALL SPANS", "TO SINK", 0.90, blue)
	add("export-all", "ALL SPANS", "TO JAEGER", 0.90, blue)
	add("errors-only", "TCPSPAN", "ERRORS", 0.97, blue)
	add("bpftrace", "BPFTRACE", "PRINTF", 0, orange)
	stormTarget := 0.0
	if b := findMode(res.Modes, "storm-none"); b != nil && b.RateMedian > 0 {
		stormTarget = 20000 / b.RateMedian
	}
	add("storm-none", "RST STORM", "NO AGENT", 0, grey)
	add("storm-errors", "RST STORM", "ERRORS", stormTarget, blue)
	if len(bars) == 0 {
		return fmt.Errorf("nothing to plot")
	}

	ymax := 1.2
	for _, b := range bars {
		for _, r := range b.m.runs {
			ymax = math.Max(ymax, ratioOf(res, r)*1.1)
		}
	}
	ymax = math.Ceil(ymax/0.2) * 0.2
	img := image.NewRGBA(image.Rect(0, 0, W, H))
	fillRect(img, 0, 0, W, H, color.White)
	plotW, plotH := W-left-right, H-top-bottom
	y := func(v float64) int { return top + plotH - int(math.Round(v/ymax*float64(plotH))) }

	title := "THROUGHPUT RELATIVE TO NO AGENT (MEDIAN OF ROUNDS)"
	drawText(img, (W-textWidth(title, scale))/2, 20, title, scale, text)
	sub := fmt.Sprintf("%s  %d CPU  KERNEL %s", res.Date[:10], res.Machine.NProc, res.Machine.Kernel)
	drawText(img, (W-textWidth(sub, 1))/2, 48, sub, 1, text)

	for v := 0.0; v <= ymax+1e-9; v += 0.2 {
		yy := y(v)
		fillRect(img, left, yy, plotW, 1, light)
		l := fmt.Sprintf("%.1f", v)
		drawText(img, left-10-textWidth(l, scale), yy-7, l, scale, text)
	}
	fillRect(img, left, top, 2, plotH+1, black)
	fillRect(img, left, top+plotH, plotW, 2, black)
	fillRect(img, left, y(1), plotW, 1, grey)

	slot := plotW / len(bars)
	bw := slot * 55 / 100
	for i, b := range bars {
		x0 := left + i*slot + (slot-bw)/2
		ratio := b.m.Ratio
		fillRect(img, x0, y(ratio), bw, top+plotH-y(ratio), b.col)
		for _, r := range b.m.runs {
			rr := ratioOf(res, r)
			fillRect(img, x0+bw/2-8, y(rr)-1, 16, 3, black)
		}
		if b.target > 0 {
			ty := y(b.target)
			for xx := x0 - 12; xx < x0+bw+12; xx += 8 {
				fillRect(img, xx, ty-1, 5, 3, red)
			}
			tl := fmt.Sprintf("%.2f", b.target)
			if b.m.Mode == "storm-errors" {
				tl = "20K/S"
			}
			drawText(img, x0+bw+14, ty-3, tl, 1, red)
		}
		// The value goes above the bar, its rounds and its target.
		topV := math.Max(ratio, b.target)
		for _, r := range b.m.runs {
			topV = math.Max(topV, ratioOf(res, r))
		}
		vl := fmt.Sprintf("%.2fx", ratio)
		drawText(img, x0+(bw-textWidth(vl, scale))/2, y(topV)-22, vl, scale, text)
		cx := left + i*slot + slot/2
		drawText(img, cx-textWidth(b.label1, scale)/2, top+plotH+14, b.label1, scale, text)
		drawText(img, cx-textWidth(b.label2, scale)/2, top+plotH+34, b.label2, scale, text)
		unit := "CONN/S"
		if b.m.Kind == "storm" {
			unit = "RST/S"
		}
		rl := fmt.Sprintf("%.1fK %s", b.m.RateMedian/1000, unit)
		drawText(img, cx-textWidth(rl, 1)/2, top+plotH+58, rl, 1, grey)
		if b.m.Mode != "none" && b.m.Mode != "storm-none" {
			cl := fmt.Sprintf("AGENT %.0f%% CPU", b.m.AgentCPUPct)
			drawText(img, cx-textWidth(cl, 1)/2, top+plotH+70, cl, 1, grey)
		}
	}
	ly := H - 34
	for xx := left; xx < left+30; xx += 8 {
		fillRect(img, xx, ly+2, 5, 3, red)
	}
	drawText(img, left+38, ly, "TARGET", scale, text)
	fillRect(img, left+160, ly+2, 16, 3, black)
	drawText(img, left+184, ly, "ONE ROUND", scale, text)
	drawText(img, left+330, ly, "BAR: MEDIAN / NO-AGENT MEDIAN", scale, text)

	f, err := os.Create(path)
	if err != nil {
		return err
	}
	if err := png.Encode(f, img); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

// ratioOf is a run's rate over the median rate of its baseline mode.
func ratioOf(res *Results, r *Run) float64 {
	if b := findMode(res.Modes, r.baselineMode()); b != nil && b.RateMedian > 0 {
		return r.Rate / b.RateMedian
	}
	return 0
}
