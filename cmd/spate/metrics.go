package main

import (
	"context"
	"errors"
	"net"
	"net/http"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/spate-mta/spate/engine/campaign"
)

// serveMetrics exposes the campaign's counters in the Prometheus text format
// on addr (e.g. ":9090") at /metrics until stop is called. Values are read
// from the runner's progress snapshot at scrape time.
func serveMetrics(addr string, r *campaign.Runner) (stop func(), err error) {
	reg := prometheus.NewRegistry()
	gauge := func(name, help string, f func(p campaign.Progress) float64) {
		reg.MustRegister(prometheus.NewGaugeFunc(prometheus.GaugeOpts{Namespace: "spate", Name: name, Help: help},
			func() float64 { return f(r.Progress()) }))
	}
	// Monotonic counts are counters (the _total suffix says so).
	counter := func(name, help string, f func(p campaign.Progress) float64) {
		reg.MustRegister(prometheus.NewCounterFunc(prometheus.CounterOpts{Namespace: "spate", Name: name, Help: help},
			func() float64 { return f(r.Progress()) }))
	}
	gauge("recipients_read", "Recipients read from the list.", func(p campaign.Progress) float64 { return float64(p.Read) })
	counter("delivered_total", "Recipients delivered (250 to the final dot).", func(p campaign.Progress) float64 { return float64(p.Delivered) })
	counter("bounced_total", "Recipients bounced (permanent failure or expired).", func(p campaign.Progress) float64 { return float64(p.Bounced) })
	counter("deferrals_total", "Temporary failures (each retry counts).", func(p campaign.Progress) float64 { return float64(p.Deferred) })
	gauge("in_flight", "Recipients handed to the engine and not yet answered.", func(p campaign.Progress) float64 { return float64(p.InFlight) })
	gauge("connections", "Open SMTP connections.", func(p campaign.Progress) float64 { return float64(p.Conns) })
	gauge("rate_msgs_per_second", "Delivered messages per second (recent).", func(p campaign.Progress) float64 { return p.Rate })
	reg.MustRegister(prometheus.NewGoCollector())

	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, err
	}
	mux := http.NewServeMux()
	mux.Handle("/metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{}))
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second}
	go func() {
		if err := srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			_ = err
		}
	}()
	return func() {
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		defer cancel()
		_ = srv.Shutdown(ctx)
	}, nil
}
