package monitor

import (
	"net/http"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"booted/internal/inventory"
)

// metrics is what /metrics exposes, through the Prometheus client library
// (its own registry): workers by state and each worker's health, the
// requests measured through the load balancer (a latency histogram,
// request and error counters, the last interval's error rate) and the
// scaling actions.
type metrics struct {
	reg      *prometheus.Registry
	workers  *prometheus.GaugeVec
	healthy  *prometheus.GaugeVec
	latency  prometheus.Histogram
	requests prometheus.Counter
	failed   prometheus.Counter
	errRate  prometheus.Gauge
	actions  *prometheus.CounterVec
	inFlight prometheus.Gauge
	active   prometheus.Gauge
}

func newMetrics() *metrics {
	m := &metrics{
		reg: prometheus.NewRegistry(),
		workers: prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "booted_workers",
			Help: "Workers of the environment by lifecycle state."}, []string{"state"}),
		healthy: prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "booted_worker_healthy",
			Help: "1 when the worker is serving and its health check passed in the last interval, else 0."}, []string{"worker", "state"}),
		latency: prometheus.NewHistogram(prometheus.HistogramOpts{Name: "booted_request_duration_seconds",
			Help: "Latency of the requests measured through the load balancer.", Buckets: prometheus.DefBuckets}),
		requests: prometheus.NewCounter(prometheus.CounterOpts{Name: "booted_requests_total",
			Help: "Requests measured through the load balancer."}),
		failed: prometheus.NewCounter(prometheus.CounterOpts{Name: "booted_request_errors_total",
			Help: "Requests measured through the load balancer that failed."}),
		errRate: prometheus.NewGauge(prometheus.GaugeOpts{Name: "booted_error_rate",
			Help: "Share of failed requests over the last interval."}),
		actions: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "booted_scaling_actions_total",
			Help: "Scaling actions carried out, by kind."}, []string{"kind"}),
		inFlight: prometheus.NewGauge(prometheus.GaugeOpts{Name: "booted_action_in_flight",
			Help: "Whether a scaling action is under way."}),
		active: prometheus.NewGauge(prometheus.GaugeOpts{Name: "booted_monitor_active",
			Help: "1 when this daemon acts (holds the environment's lease), 0 when it stands by for another controller's."}),
	}
	m.reg.MustRegister(m.workers, m.healthy, m.latency, m.requests, m.failed, m.errRate, m.actions, m.inFlight, m.active)
	for _, s := range inventory.States {
		m.workers.WithLabelValues(string(s))
	}
	for _, k := range []string{ScaleUp, ScaleDown, Replace, CancelDrain} {
		m.actions.WithLabelValues(k)
	}
	return m
}

// interval records one interval's measure and workers.
func (m *metrics) interval(meas Measure, workers []Worker, healthy map[string]bool) {
	for _, d := range meas.Latencies {
		m.latency.Observe(d.Seconds())
	}
	m.requests.Add(float64(meas.Requests))
	m.failed.Add(float64(meas.Failed))
	m.errRate.Set(meas.ErrorRate)
	counts := map[inventory.State]int{}
	m.healthy.Reset() // workers that went away go from the page
	for _, w := range workers {
		counts[w.State]++
		ok := 0.0
		if w.State == inventory.Serving && healthy[w.Name] {
			ok = 1
		}
		m.healthy.WithLabelValues(w.Name, string(w.State)).Set(ok)
	}
	for _, s := range inventory.States {
		m.workers.WithLabelValues(string(s)).Set(float64(counts[s]))
	}
}

// action counts a finished action.
func (m *metrics) action(kind string) { m.actions.WithLabelValues(kind).Inc() }

// setActive says whether this daemon acts.
func (m *metrics) setActive(on bool) {
	v := 0.0
	if on {
		v = 1
	}
	m.active.Set(v)
}

// setInFlight says whether an action is under way.
func (m *metrics) setInFlight(on bool) {
	v := 0.0
	if on {
		v = 1
	}
	m.inFlight.Set(v)
}

func (m *metrics) handler() http.Handler {
	return promhttp.HandlerFor(m.reg, promhttp.HandlerOpts{Timeout: 5 * time.Second})
}
