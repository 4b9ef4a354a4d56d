package main

import (
	"fmt"
	"io"
	"os"
	"strings"
	"sync"
	"time"

	"github.com/schollz/progressbar/v3"
	"golang.org/x/term"

	"github.com/spate-mta/spate/engine/campaign"
)

// display shows campaign progress: on a terminal a bar with rate and ETA and a
// per-site table redrawn in place; otherwise a plain line every 5 s.
type display struct {
	out   io.Writer
	mode  string // tty, plain, off
	r     *campaign.Runner
	done  chan struct{}
	wg    sync.WaitGroup
	lines int // lines drawn last time (tty)
	bar   *progressbar.ProgressBar
}

func newDisplay(out io.Writer, mode string, r *campaign.Runner) *display {
	if mode == "auto" || mode == "" {
		mode = "plain"
		if f, ok := out.(*os.File); ok && term.IsTerminal(int(f.Fd())) {
			mode = "tty"
		}
	}
	return &display{out: out, mode: mode, r: r, done: make(chan struct{})}
}

func (d *display) start() {
	if d.mode == "off" {
		return
	}
	every := 5 * time.Second
	if d.mode == "tty" {
		every = 250 * time.Millisecond
		d.bar = progressbar.NewOptions64(-1, progressbar.OptionSetWriter(io.Discard),
			progressbar.OptionSetWidth(30), progressbar.OptionShowCount(), progressbar.OptionShowIts(),
			progressbar.OptionSetItsString("msg"), progressbar.OptionSetPredictTime(true), progressbar.OptionSetElapsedTime(true))
	}
	d.wg.Add(1)
	go func() {
		defer d.wg.Done()
		t := time.NewTicker(every)
		defer t.Stop()
		for {
			select {
			case <-d.done:
				d.draw(true)
				return
			case <-t.C:
				d.draw(false)
			}
		}
	}()
}

func (d *display) stop() {
	if d.mode == "off" {
		return
	}
	close(d.done)
	d.wg.Wait()
}

func (d *display) draw(last bool) {
	p := d.r.Progress()
	done := p.Delivered + p.Bounced
	switch d.mode {
	case "plain":
		fmt.Fprintf(d.out, "%s read=%d delivered=%d bounced=%d deferred=%d in-flight=%d conns=%d rate=%.0f/s\n",
			time.Now().Format("15:04:05"), p.Read, p.Delivered, p.Bounced, p.Deferred, p.InFlight, p.Conns, p.Rate)
	case "tty":
		var b strings.Builder
		if d.lines > 0 {
			fmt.Fprintf(&b, "\x1b[%dF\x1b[J", d.lines) // back to the top of the last drawing, clear below
		}
		if p.ReadDone {
			d.bar.ChangeMax64(p.Read)
		}
		_ = d.bar.Set64(done)
		fmt.Fprintf(&b, "%s\n", strings.TrimSpace(d.bar.String()))
		fmt.Fprintf(&b, "read %d  delivered %d  bounced %d  deferred %d  in-flight %d  conns %d  %.0f msgs/s\n",
			p.Read, p.Delivered, p.Bounced, p.Deferred, p.InFlight, p.Conns, p.Rate)
		n := 2
		if len(p.Sites) > 0 {
			fmt.Fprintf(&b, "%-36s %5s %9s %8s %9s  %s\n", "site", "conns", "sent", "deferred", "msgs/s", "state")
			n++
			for i, s := range p.Sites {
				if i == 10 {
					fmt.Fprintf(&b, "… %d more sites\n", len(p.Sites)-10)
					n++
					break
				}
				state := ""
				if !s.SuspendedUntil.IsZero() && s.SuspendedUntil.After(time.Now()) {
					state = "suspended until " + s.SuspendedUntil.Format("15:04:05")
				}
				fmt.Fprintf(&b, "%-36s %5d %9d %8d %9.1f  %s\n", trunc(s.Site, 36), s.Conns, s.Sent, s.Deferred, s.Rate, state)
				n++
			}
		}
		d.lines = n
		io.WriteString(d.out, b.String())
	}
}

func trunc(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n-1] + "…"
}
