package proxy

import (
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// Metrics are the proxy's Prometheus metrics. A nil *Metrics records nothing.
//
// The authentication counters follow Envoy's jwt_authn statistics (allowed,
// denied), labelled by provider and, for denials, by reason, so that a
// dashboard built for one reads the other.
type Metrics struct {
	negotiates *prometheus.CounterVec
	upstreamS  *prometheus.HistogramVec
	allowed    *prometheus.CounterVec
	denied     *prometheus.CounterVec
	inFlight   prometheus.Gauge

	// The series every negotiate touches, looked up once rather than by
	// hashing their label values on each request.
	byOutcome map[string]prometheus.Counter
	upstreamO [2][2]prometheus.Observer // by route (negotiate, other) and result (response, error)
}

// NewMetrics registers the proxy's metrics with reg.
func NewMetrics(reg prometheus.Registerer) *Metrics {
	m := &Metrics{
		negotiates: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "negotiate_sidecar_negotiate_requests_total",
			Help: "Negotiate requests by outcome (rewritten, preflight, unauthenticated, not_ready, upstream_status, rewrite_failed, upstream_unreachable, upstream_timeout, client_gone, request_too_large, request_timeout).",
		}, []string{"outcome"}),
		upstreamS: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "negotiate_sidecar_upstream_duration_seconds",
			Help:    "Time from sending a request to the app until its response headers arrive, by route (negotiate or other) and result (response or error).",
			Buckets: []float64{.005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30},
		}, []string{"route", "result"}),
		allowed: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "negotiate_sidecar_jwt_authn_allowed_total",
			Help: "Negotiate requests whose bearer token was accepted, by identity provider.",
		}, []string{"provider"}),
		denied: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "negotiate_sidecar_jwt_authn_denied_total",
			Help: "Negotiate requests whose bearer token was refused, by identity provider (empty when none was found) and reason.",
		}, []string{"provider", "reason"}),
		inFlight: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "negotiate_sidecar_in_flight_requests",
			Help: "Requests being served by the proxy, all routes.",
		}),
	}
	reg.MustRegister(m.negotiates, m.upstreamS, m.allowed, m.denied, m.inFlight)
	m.byOutcome = make(map[string]prometheus.Counter, len(Outcomes()))
	for _, o := range Outcomes() {
		m.byOutcome[o] = m.negotiates.WithLabelValues(o)
	}
	for i, route := range [...]string{"negotiate", "other"} {
		for j, result := range [...]string{"response", "error"} {
			m.upstreamO[i][j] = m.upstreamS.WithLabelValues(route, result)
		}
	}
	return m
}

func (m *Metrics) negotiate(outcome string) {
	if m == nil {
		return
	}
	if c, ok := m.byOutcome[outcome]; ok {
		c.Inc()
		return
	}
	m.negotiates.WithLabelValues(outcome).Inc()
}

func (m *Metrics) authn(provider, deniedReason string) {
	if m == nil {
		return
	}
	if deniedReason == "" {
		m.allowed.WithLabelValues(provider).Inc()
		return
	}
	m.denied.WithLabelValues(provider, deniedReason).Inc()
}

func (m *Metrics) inFlightAdd(d float64) {
	if m == nil {
		return
	}
	m.inFlight.Add(d)
}

// upstream observes an upstream round trip; route is "negotiate" or "other".
func (m *Metrics) upstream(route string, err error, d time.Duration) {
	if m == nil {
		return
	}
	i, j := 0, 0
	if route == "other" {
		i = 1
	}
	if err != nil {
		j = 1
	}
	m.upstreamO[i][j].Observe(d.Seconds())
}
