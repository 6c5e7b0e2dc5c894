package gate

import (
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// Metrics are the gate's Prometheus metrics.
type Metrics struct {
	active      *prometheus.GaugeVec
	transitions *prometheus.CounterVec
	activation  *prometheus.HistogramVec
}

// NewMetrics creates the gate metrics and registers them on reg (nil: not registered).
func NewMetrics(reg prometheus.Registerer) *Metrics {
	m := &Metrics{
		active: prometheus.NewGaugeVec(prometheus.GaugeOpts{Namespace: "redis_carp_proxy", Name: "active",
			Help: "1 while this proxy accepts clients on the VIP (its host is CARP MASTER of it), else 0."}, []string{"vip"}),
		transitions: prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: "redis_carp_proxy", Name: "gate_transitions_total",
			Help: "Listener openings (to=active) and closings (to=inactive), by VIP."}, []string{"vip", "to"}),
		activation: prometheus.NewHistogramVec(prometheus.HistogramOpts{Namespace: "redis_carp_proxy", Name: "activation_duration_seconds",
			Help: "Time from learning this host became MASTER of the VIP to accepting clients on it.", Buckets: prometheus.ExponentialBuckets(0.0001, 4, 10)}, []string{"vip"}),
	}
	if reg != nil {
		reg.MustRegister(m.active, m.transitions, m.activation)
	}
	return m
}

// Init creates the series of vip (active 0, no transitions yet), so that a VIP this host
// never served is visible as inactive rather than absent.
func (m *Metrics) Init(vip string) {
	if m == nil {
		return
	}
	m.active.WithLabelValues(vip).Set(0)
	m.transitions.WithLabelValues(vip, "active")
	m.transitions.WithLabelValues(vip, "inactive")
}

func (m *Metrics) activated(vip string, d time.Duration) {
	if m == nil {
		return
	}
	m.active.WithLabelValues(vip).Set(1)
	m.transitions.WithLabelValues(vip, "active").Inc()
	m.activation.WithLabelValues(vip).Observe(d.Seconds())
}

func (m *Metrics) deactivated(vip string) {
	if m == nil {
		return
	}
	m.active.WithLabelValues(vip).Set(0)
	m.transitions.WithLabelValues(vip, "inactive").Inc()
}
