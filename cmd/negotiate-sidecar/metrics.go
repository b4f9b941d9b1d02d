package main

import (
	"runtime"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"

	"github.com/negotiate-sidecar/negotiate-sidecar/auth"
)

// sidecarMetrics are the metrics of the wiring: key fetches, key set state,
// reloads and build information. The proxy registers its own.
type sidecarMetrics struct {
	fetchOK     *prometheus.CounterVec
	fetchFailed *prometheus.CounterVec
	reloads     *prometheus.CounterVec
	entraFetch  *prometheus.CounterVec
}

func newSidecarMetrics(reg *prometheus.Registry, cur *current, cache *auth.Cache, now func() time.Time) *sidecarMetrics {
	m := &sidecarMetrics{
		fetchOK: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "negotiate_sidecar_jwks_fetch_success_total",
			Help: "Successful fetches of an identity provider's keys (discovery and JWKS), by provider.",
		}, []string{"provider"}),
		fetchFailed: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "negotiate_sidecar_jwks_fetch_failed_total",
			Help: "Failed fetches of an identity provider's keys, by provider. The last good keys stay in use.",
		}, []string{"provider"}),
		reloads: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "negotiate_sidecar_config_reloads_total",
			Help: "Configuration reloads after a watched file changed, by result (success or failure).",
		}, []string{"result"}),
		entraFetch: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "negotiate_sidecar_entra_key_fetches_total",
			Help: "Requests for the sidecar's own temporary key from an endpoint reached with Microsoft Entra ID, by endpoint and result (success or failure).",
		}, []string{"endpoint", "result"}),
	}
	build := prometheus.NewGauge(prometheus.GaugeOpts{
		Name:        "negotiate_sidecar_build_info",
		Help:        "Always 1; the labels tell the version and Go version of the running binary.",
		ConstLabels: prometheus.Labels{"version": binaryVersion(), "go_version": runtime.Version()},
	})
	build.Set(1)
	reg.MustRegister(
		collectors.NewGoCollector(),
		collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
		m.fetchOK, m.fetchFailed, m.reloads, m.entraFetch, build,
		keySetCollector{cur: cur, now: now},
		entraCollector{cur: cur, now: now},
		cacheCollector{cache},
	)
	for _, r := range []string{"success", "failure"} {
		m.reloads.WithLabelValues(r)
	}
	return m
}

func (m *sidecarMetrics) keyFetch(provider string, err error) {
	if err != nil {
		m.fetchFailed.WithLabelValues(provider).Inc()
		return
	}
	m.fetchOK.WithLabelValues(provider).Inc()
}

func (m *sidecarMetrics) entraKeyFetch(endpoint string, err error) {
	if err != nil {
		m.entraFetch.WithLabelValues(endpoint, "failure").Inc()
		return
	}
	m.entraFetch.WithLabelValues(endpoint, "success").Inc()
}

func (m *sidecarMetrics) reload(ok bool) {
	if ok {
		m.reloads.WithLabelValues("success").Inc()
		return
	}
	m.reloads.WithLabelValues("failure").Inc()
}

// keySetCollector reports each provider's key set as it is at scrape time,
// for whichever providers the current configuration has.
type keySetCollector struct {
	cur *current
	now func() time.Time
}

var (
	keysDesc = prometheus.NewDesc("negotiate_sidecar_jwks_keys",
		"Verification keys held, by provider.", []string{"provider"}, nil)
	ageDesc = prometheus.NewDesc("negotiate_sidecar_jwks_age_seconds",
		"Seconds since every JWKS source of the provider last answered; absent for static key sets and before the first fetch.", []string{"provider"}, nil)
)

func (c keySetCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- keysDesc
	ch <- ageDesc
}

func (c keySetCollector) Collect(ch chan<- prometheus.Metric) {
	rt := c.cur.load()
	if rt == nil {
		return
	}
	for _, p := range rt.providers {
		ch <- prometheus.MustNewConstMetric(keysDesc, prometheus.GaugeValue, float64(p.keys.Count()), p.settings.Name)
		if last := p.keys.LastSuccess(); p.keys.Remote() && !last.IsZero() {
			ch <- prometheus.MustNewConstMetric(ageDesc, prometheus.GaugeValue, c.now().Sub(last).Seconds(), p.settings.Name)
		}
	}
}

// cacheCollector reports the verified-token cache. Its hit ratio is
// hits / (hits + misses); with the cache off the series are absent.
type cacheCollector struct{ cache *auth.Cache }

var (
	cacheEntriesDesc = prometheus.NewDesc("negotiate_sidecar_token_cache_entries",
		"Verified caller tokens held in the cache.", nil, nil)
	cacheBytesDesc = prometheus.NewDesc("negotiate_sidecar_token_cache_bytes",
		"Estimated memory of the cached tokens' claims, in bytes.", nil, nil)
	cacheHitsDesc = prometheus.NewDesc("negotiate_sidecar_token_cache_hits_total",
		"Bearer tokens served from the cache without a signature check.", nil, nil)
	cacheMissesDesc = prometheus.NewDesc("negotiate_sidecar_token_cache_misses_total",
		"Bearer tokens not in the cache (or no longer valid there), checked afresh.", nil, nil)
)

func (c cacheCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- cacheEntriesDesc
	ch <- cacheBytesDesc
	ch <- cacheHitsDesc
	ch <- cacheMissesDesc
}

func (c cacheCollector) Collect(ch chan<- prometheus.Metric) {
	if c.cache == nil {
		return
	}
	s := c.cache.Stats()
	ch <- prometheus.MustNewConstMetric(cacheEntriesDesc, prometheus.GaugeValue, float64(s.Entries))
	ch <- prometheus.MustNewConstMetric(cacheBytesDesc, prometheus.GaugeValue, float64(s.Bytes))
	ch <- prometheus.MustNewConstMetric(cacheHitsDesc, prometheus.CounterValue, float64(s.Hits))
	ch <- prometheus.MustNewConstMetric(cacheMissesDesc, prometheus.CounterValue, float64(s.Misses))
}

// entraCollector reports the age of the sidecar's own key for each endpoint
// reached with Microsoft Entra ID. The service counts a key as expired
// after two hours; the sidecar fetches a new one every 55 minutes.
type entraCollector struct {
	cur *current
	now func() time.Time
}

var entraAgeDesc = prometheus.NewDesc("negotiate_sidecar_entra_key_age_seconds",
	"Seconds since the sidecar's own temporary key for an endpoint reached with Microsoft Entra ID was fetched; absent before the first key.", []string{"endpoint"}, nil)

func (c entraCollector) Describe(ch chan<- *prometheus.Desc) { ch <- entraAgeDesc }

func (c entraCollector) Collect(ch chan<- prometheus.Metric) {
	rt := c.cur.load()
	if rt == nil {
		return
	}
	for _, src := range rt.entra {
		if src.source == nil {
			continue
		}
		if st := src.source.Status(); !st.Fetched.IsZero() {
			ch <- prometheus.MustNewConstMetric(entraAgeDesc, prometheus.GaugeValue, c.now().Sub(st.Fetched).Seconds(), src.source.Endpoint())
		}
	}
}
