package carp

import "github.com/prometheus/client_golang/prometheus"

// Metrics are the CARP watcher's Prometheus metrics. A nil *Metrics records nothing.
type Metrics struct {
	state       *prometheus.GaugeVec
	transitions *prometheus.CounterVec
	readErrors  *prometheus.CounterVec
	demoted     prometheus.Gauge
}

// NewMetrics creates the metrics and registers them on reg (nil: not registered).
func NewMetrics(reg prometheus.Registerer) *Metrics {
	m := &Metrics{
		state: prometheus.NewGaugeVec(prometheus.GaugeOpts{Namespace: "redis_carp_proxy", Name: "carp_state",
			Help: "CARP state of the virtual address: 0 INIT, 1 BACKUP, 2 MASTER."}, []string{"vip"}),
		transitions: prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: "redis_carp_proxy", Name: "carp_transitions_total",
			Help: "CARP state changes seen, by new state."}, []string{"vip", "to"}),
		readErrors: prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: "redis_carp_proxy", Name: "carp_read_errors_total",
			Help: "Failed reads of the CARP state of the VIP (each counts as INIT)."}, []string{"vip"}),
		demoted: prometheus.NewGauge(prometheus.GaugeOpts{Namespace: "redis_carp_proxy", Name: "carp_demoted",
			Help: "1 while this proxy demotes its host's CARP because it cannot serve."}),
	}
	if reg != nil {
		reg.MustRegister(m.state, m.transitions, m.readErrors, m.demoted)
	}
	return m
}

func (m *Metrics) setState(vip string, s State) {
	if m != nil {
		m.state.WithLabelValues(vip).Set(float64(s))
	}
}

func (m *Metrics) transition(vip string, to State) {
	if m != nil {
		m.transitions.WithLabelValues(vip, to.String()).Inc()
	}
}

func (m *Metrics) readError(vip string) {
	if m != nil {
		m.readErrors.WithLabelValues(vip).Inc()
	}
}

func (m *Metrics) setDemoted(on bool) {
	if m != nil {
		v := 0.0
		if on {
			v = 1
		}
		m.demoted.Set(v)
	}
}
