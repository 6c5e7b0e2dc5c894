package gate

import (
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// Metrics are the gate's Prometheus metrics.
type Metrics struct {
	active      prometheus.Gauge
	transitions *prometheus.CounterVec
	activation  prometheus.Histogram
}

// NewMetrics creates the gate metrics and registers them on reg (nil: not registered).
func NewMetrics(reg prometheus.Registerer) *Metrics {
	m := &Metrics{
		active: prometheus.NewGauge(prometheus.GaugeOpts{Namespace: "redis_carp_proxy", Name: "active",
			Help: "1 while this proxy accepts clients (its host is CARP MASTER), else 0."}),
		transitions: prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: "redis_carp_proxy", Name: "gate_transitions_total",
			Help: "Listener openings (to=active) and closings (to=inactive)."}, []string{"to"}),
		activation: prometheus.NewHistogram(prometheus.HistogramOpts{Namespace: "redis_carp_proxy", Name: "activation_duration_seconds",
			Help: "Time from learning this host became MASTER to accepting clients.", Buckets: prometheus.ExponentialBuckets(0.0001, 4, 10)}),
	}
	if reg != nil {
		reg.MustRegister(m.active, m.transitions, m.activation)
	}
	return m
}

func (m *Metrics) activated(d time.Duration) {
	if m == nil {
		return
	}
	m.active.Set(1)
	m.transitions.WithLabelValues("active").Inc()
	m.activation.Observe(d.Seconds())
}

func (m *Metrics) deactivated() {
	if m == nil {
		return
	}
	m.active.Set(0)
	m.transitions.WithLabelValues("inactive").Inc()
}
