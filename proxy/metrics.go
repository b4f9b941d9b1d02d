package proxy

import (
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// Metrics are the proxy's Prometheus metrics. A nil *Metrics records nothing.
type Metrics struct {
	negotiates *prometheus.CounterVec
	upstreamS  *prometheus.HistogramVec
}

// NewMetrics registers the proxy's metrics with reg.
func NewMetrics(reg prometheus.Registerer) *Metrics {
	m := &Metrics{
		negotiates: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "negotiate_sidecar_negotiate_requests_total",
			Help: "Negotiate requests by outcome (rewritten, preflight, unauthenticated, not_ready, upstream_status, rewrite_failed, upstream_unreachable, client_gone).",
		}, []string{"outcome"}),
		upstreamS: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "negotiate_sidecar_upstream_duration_seconds",
			Help:    "Time from sending a request to the app until its response headers arrive, by route (negotiate or other) and result (response or error).",
			Buckets: []float64{.005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30},
		}, []string{"route", "result"}),
	}
	reg.MustRegister(m.negotiates, m.upstreamS)
	return m
}

func (m *Metrics) negotiate(outcome string) {
	if m == nil {
		return
	}
	m.negotiates.WithLabelValues(outcome).Inc()
}

func (m *Metrics) upstream(route string, err error, d time.Duration) {
	if m == nil {
		return
	}
	result := "response"
	if err != nil {
		result = "error"
	}
	m.upstreamS.WithLabelValues(route, result).Observe(d.Seconds())
}
