package bench

import (
	"fmt"
	"html"
	"io"
	"math"
	"strings"
)

// WriteChart writes an SVG grouped bar chart of msgs/s per peer per
// scenario. It is hand-written rather than drawn with a plotting library:
// one chart of bars needs about a hundred lines, while gonum/plot and its
// kin would add a dozen modules (fonts, image codecs) to go.mod for it.
// A peer that did not run gets no bar but a "skipped"/"failed" label, so
// the chart never shows a measured-looking zero.
func WriteChart(w io.Writer, scs []Scenario) error {
	// Peers in first-seen order across scenarios; one colour each.
	var names []string
	seen := map[string]bool{}
	for _, sc := range scs {
		for _, r := range sc.Results {
			if !seen[r.Peer] {
				seen[r.Peer] = true
				names = append(names, r.Peer)
			}
		}
	}
	colours := []string{"#d62728", "#1f77b4", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b"}
	colour := func(p string) string {
		for i, n := range names {
			if n == p {
				return colours[i%len(colours)]
			}
		}
		return "#999"
	}
	var maxRate float64
	for _, sc := range scs {
		for _, r := range sc.Results {
			maxRate = math.Max(maxRate, r.Rate())
		}
	}
	top := niceCeil(maxRate)

	const (
		left, right, topM, bottom = 80.0, 20.0, 40.0, 70.0
		barW, barGap, groupGap    = 26.0, 4.0, 30.0
		plotH                     = 320.0
	)
	groupW := float64(max(len(names), 1))*(barW+barGap) - barGap
	width := left + right + float64(max(len(scs), 1))*(groupW+groupGap)
	height := topM + plotH + bottom + 24
	var b strings.Builder
	fmt.Fprintf(&b, `<svg xmlns="http://www.w3.org/2000/svg" width="%.0f" height="%.0f" font-family="sans-serif" font-size="12">`+"\n", width, height)
	fmt.Fprintf(&b, `<rect width="100%%" height="100%%" fill="white"/>`+"\n")
	fmt.Fprintf(&b, `<text x="%.0f" y="22" font-size="15">msgs/s per peer per scenario (higher is better)</text>`+"\n", left)
	// Y axis with 5 gridlines.
	for i := 0; i <= 5; i++ {
		v := top * float64(i) / 5
		y := topM + plotH - plotH*float64(i)/5
		fmt.Fprintf(&b, `<line x1="%.0f" x2="%.0f" y1="%.1f" y2="%.1f" stroke="#ddd"/>`+"\n", left, width-right, y, y)
		fmt.Fprintf(&b, `<text x="%.0f" y="%.1f" text-anchor="end">%s</text>`+"\n", left-6, y+4, humanRate(v))
	}
	for gi, sc := range scs {
		x0 := left + groupGap/2 + float64(gi)*(groupW+groupGap)
		fmt.Fprintf(&b, `<text x="%.1f" y="%.0f" text-anchor="middle">%s</text>`+"\n", x0+groupW/2, topM+plotH+18, html.EscapeString(sc.Name))
		for _, r := range sc.Results {
			pi := 0
			for i, n := range names {
				if n == r.Peer {
					pi = i
				}
			}
			x := x0 + float64(pi)*(barW+barGap)
			if !r.Ran() {
				label := "skipped"
				if r.Skipped == "" {
					label = "failed"
				}
				fmt.Fprintf(&b, `<text class="notrun" x="%.1f" y="%.0f" transform="rotate(-90 %.1f %.0f)" fill="#888">%s %s</text>`+"\n",
					x+barW/2+4, topM+plotH-4, x+barW/2+4, topM+plotH-4, html.EscapeString(r.Peer), label)
				continue
			}
			h := 0.0
			if top > 0 {
				h = plotH * r.Rate() / top
			}
			fmt.Fprintf(&b, `<rect class="bar" x="%.1f" y="%.1f" width="%.0f" height="%.1f" fill="%s"><title>%s %s: %.0f msgs/s</title></rect>`+"\n",
				x, topM+plotH-h, barW, h, colour(r.Peer), html.EscapeString(sc.Name), html.EscapeString(r.Peer), r.Rate())
			fmt.Fprintf(&b, `<text x="%.1f" y="%.1f" text-anchor="middle" font-size="9">%s</text>`+"\n", x+barW/2, topM+plotH-h-3, humanRate(r.Rate()))
		}
	}
	// Legend.
	for i, n := range names {
		x := left + float64(i)*120
		y := topM + plotH + 40
		fmt.Fprintf(&b, `<rect x="%.0f" y="%.0f" width="12" height="12" fill="%s"/><text x="%.0f" y="%.0f">%s</text>`+"\n", x, y, colour(n), x+16, y+10, html.EscapeString(n))
	}
	b.WriteString("</svg>\n")
	_, err := io.WriteString(w, b.String())
	return err
}

// niceCeil rounds v up to 1, 2 or 5 times a power of ten.
func niceCeil(v float64) float64 {
	if v <= 0 {
		return 1
	}
	p := math.Pow(10, math.Floor(math.Log10(v)))
	for _, m := range []float64{1, 2, 5, 10} {
		if m*p >= v {
			return m * p
		}
	}
	return 10 * p
}

func humanRate(v float64) string {
	switch {
	case v >= 1e6:
		return fmt.Sprintf("%.1fM", v/1e6)
	case v >= 1e3:
		return fmt.Sprintf("%.1fk", v/1e3)
	}
	return fmt.Sprintf("%.0f", v)
}
