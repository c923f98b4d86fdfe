package main

import (
	"fmt"
	"image/color"
	"math"
	"os"

	"gonum.org/v1/plot"
	"gonum.org/v1/plot/font"
	"gonum.org/v1/plot/plotter"
	"gonum.org/v1/plot/text"
	"gonum.org/v1/plot/vg"
	"gonum.org/v1/plot/vg/draw"
	"gonum.org/v1/plot/vg/vgimg"
)

// The chart: one panel per goal, the library's bar beside its baseline's,
// in the baseline's own unit, with the goal drawn as a dashed line.
var (
	baseColor    = color.RGBA{R: 160, G: 160, B: 160, A: 255}
	libColor     = color.RGBA{R: 31, G: 119, B: 180, A: 255}
	contextColor = color.RGBA{R: 158, G: 202, B: 225, A: 255}
	goalColor    = color.RGBA{R: 214, G: 39, B: 40, A: 255}
	metColor     = color.RGBA{R: 0, G: 128, B: 0, A: 255}
)

const (
	chartCols = 5
	chartDPI  = 100
)

// renderChart writes the chart of rows to path as PNG.
func renderChart(path string, rows []row) error {
	sans := font.Font{Typeface: "Liberation", Variant: "Sans"}
	plot.DefaultFont = sans
	plotter.DefaultFont = sans

	// A context row is drawn as a bar of the panel of its baseline; a goal
	// that was not measured (a run without the realistic suite) has no
	// panel.
	var goals, context []row
	for _, r := range rows {
		if !r.measured {
			continue
		}
		if r.kind == info {
			context = append(context, r)
		} else {
			goals = append(goals, r)
		}
	}
	nrows := (len(goals) + chartCols - 1) / chartCols
	plots := make([][]*plot.Plot, nrows)
	for i := range plots {
		plots[i] = make([]*plot.Plot, chartCols)
	}
	for i, r := range goals {
		var extra []row
		for _, c := range context {
			if c.measured && r.measured && r.kind == faster && c.base == r.base {
				extra = append(extra, c)
			}
		}
		p, err := panel(r, extra)
		if err != nil {
			return fmt.Errorf("%s: %w", r.short, err)
		}
		plots[i/chartCols][i%chartCols] = p
	}

	img := vgimg.NewWith(vgimg.UseWH(vg.Length(chartCols)*3.4*vg.Inch, vg.Length(nrows)*3.6*vg.Inch), vgimg.UseDPI(chartDPI))
	dc := draw.New(img)
	tiles := draw.Tiles{Rows: nrows, Cols: chartCols, PadX: vg.Points(18), PadY: vg.Points(18),
		PadTop: vg.Points(8), PadBottom: vg.Points(8), PadLeft: vg.Points(8), PadRight: vg.Points(8)}
	canvases := plot.Align(plots, tiles, dc)
	for j := range plots {
		for i, p := range plots[j] {
			if p != nil {
				p.Draw(canvases[j][i])
			}
		}
	}
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	if _, err := (vgimg.PngCanvas{Canvas: img}).WriteTo(f); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

// panel is the plot of one goal, with the bars of the context rows that
// share its baseline between the baseline's and the library's.
func panel(r row, context []row) (*plot.Plot, error) {
	p := plot.New()
	p.Title.TextStyle.Font.Size = vg.Points(11)
	p.Y.Min = 0

	var names []string
	var values []float64
	var colors []color.Color
	var goalY float64
	var unit string
	switch r.kind {
	case faster, cheaper:
		unit = r.unit
		names = []string{r.label}
		values = []float64{1e9 / r.base}
		colors = []color.Color{baseColor}
		for _, c := range context {
			names = append(names, c.label)
			values = append(values, 1e9/c.lib)
			colors = append(colors, contextColor)
		}
		names = append(names, "audit")
		values = append(values, 1e9/r.lib)
		colors = append(colors, libColor)
		if r.kind == faster {
			goalY = r.limit * values[0]
		} else {
			goalY = values[0] / r.limit
		}
	case heapMiB:
		unit = "MiB"
		names = []string{"heap growth"}
		values = []float64{r.lib}
		colors = []color.Color{libColor}
		goalY = r.limit
	case stallMS:
		unit = "ms (longest sync Record)"
		names = []string{"before Prune", "during Prune"}
		values = []float64{r.base, r.lib}
		colors = []color.Color{baseColor, libColor}
		goalY = r.limit
	}
	p.Y.Label.Text = unit
	p.Title.Text = r.short + "\n" + verdict(r)
	if r.measured {
		p.Title.TextStyle.Color = goalColor
		if r.met {
			p.Title.TextStyle.Color = metColor
		}
	} else {
		values = make([]float64, len(values)) // an empty panel that says so
	}

	top := goalY
	for i, v := range values {
		bar, err := plotter.NewBarChart(plotter.Values{v}, vg.Points(34))
		if err != nil {
			return nil, err
		}
		bar.XMin = float64(i)
		bar.Color = colors[i]
		bar.LineStyle.Width = 0
		p.Add(bar)
		top = math.Max(top, v)
	}
	labels := make([]string, len(values))
	xys := make(plotter.XYs, len(values))
	for i, v := range values {
		labels[i] = short(v)
		xys[i] = plotter.XY{X: float64(i), Y: v}
	}
	l, err := plotter.NewLabels(plotter.XYLabels{XYs: xys, Labels: labels})
	if err != nil {
		return nil, err
	}
	for i := range l.TextStyle {
		l.TextStyle[i].XAlign = text.XCenter
		l.TextStyle[i].Font.Size = vg.Points(9)
	}
	l.Offset = vg.Point{Y: vg.Points(2)}
	p.Add(l)

	if goalY > 0 {
		line := plotter.NewFunction(func(float64) float64 { return goalY })
		line.Color = goalColor
		line.Width = vg.Points(1.5)
		line.Dashes = []vg.Length{vg.Points(5), vg.Points(3)}
		p.Add(line)
		tag, err := plotter.NewLabels(plotter.XYLabels{XYs: plotter.XYs{{X: -0.58, Y: goalY}}, Labels: []string{"goal"}})
		if err != nil {
			return nil, err
		}
		tag.TextStyle[0].Color = goalColor
		tag.TextStyle[0].Font.Size = vg.Points(8)
		tag.Offset = vg.Point{Y: vg.Points(2)}
		p.Add(tag)
	}
	p.Y.Tick.Marker = plot.TickerFunc(func(min, max float64) []plot.Tick {
		ticks := plot.DefaultTicks{}.Ticks(min, max)
		for i := range ticks {
			if ticks[i].Label != "" {
				ticks[i].Label = short(ticks[i].Value)
			}
		}
		return ticks
	})
	p.Y.Max = top * 1.25
	if p.Y.Max == 0 {
		p.Y.Max = 1
	}
	p.NominalX(names...)
	p.X.Min, p.X.Max = -0.6, float64(len(values))-0.4
	return p, nil
}

// verdict is the second line of a panel's title: the figure against the
// goal (the dashed line).
func verdict(r row) string {
	if !r.measured {
		return "not measured"
	}
	status := "MISSED"
	if r.met {
		status = "met"
	}
	switch r.kind {
	case faster:
		return fmt.Sprintf("%.2f× its rate (goal ≥ %g×): %s", r.ratio, r.limit, status)
	case cheaper:
		return fmt.Sprintf("%.2f× its time (goal ≤ %g×): %s", r.ratio, r.limit, status)
	case heapMiB:
		return fmt.Sprintf("%.2f MiB (goal ≤ %g MiB): %s", r.lib, r.limit, status)
	default:
		return fmt.Sprintf("%.0f ms (goal ≤ %g ms): %s", r.lib, r.limit, status)
	}
}

// short formats a bar's value in three significant digits.
func short(v float64) string {
	switch a := math.Abs(v); {
	case a >= 1e6:
		return fmt.Sprintf("%.3gM", v/1e6)
	case a >= 1e4:
		return fmt.Sprintf("%.3gk", v/1e3)
	case a >= 100 || v == math.Trunc(v):
		return fmt.Sprintf("%.0f", v)
	}
	return fmt.Sprintf("%.2g", v)
}
