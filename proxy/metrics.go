package proxy

import (
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

const namespace = "redis_carp_proxy"

// Metrics are the proxy's Prometheus metrics. Label values are bounded: command names come
// from the command table (anything else is "other"), nodes are cluster members.
type Metrics struct {
	clientsCurrent  prometheus.Gauge
	clientsAccepted prometheus.Counter
	clientsRejected *prometheus.CounterVec
	clientsClosed   prometheus.Counter

	commands    *prometheus.CounterVec
	cmdLatency  *prometheus.HistogramVec
	redirects   *prometheus.CounterVec
	bytesIn     prometheus.Counter
	bytesOut    prometheus.Counter
	pipeline    prometheus.Histogram
	protoErrors prometheus.Counter

	backendErrors *prometheus.CounterVec
	backendConns  *prometheus.GaugeVec

	refreshes    *prometheus.CounterVec
	lastRefresh  prometheus.Gauge
	slotsCovered prometheus.Gauge
	slotmapEpoch prometheus.Gauge
	nodesKnown   prometheus.Gauge
}

// NewMetrics creates the proxy metrics and registers them on reg (nil: not registered).
func NewMetrics(reg prometheus.Registerer) *Metrics {
	m := &Metrics{
		clientsCurrent:  prometheus.NewGauge(prometheus.GaugeOpts{Namespace: namespace, Name: "client_connections", Help: "Client connections currently open."}),
		clientsAccepted: prometheus.NewCounter(prometheus.CounterOpts{Namespace: namespace, Name: "client_connections_accepted_total", Help: "Client connections accepted."}),
		clientsRejected: prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: namespace, Name: "client_connections_rejected_total", Help: "Client connections refused, by reason."}, []string{"reason"}),
		clientsClosed:   prometheus.NewCounter(prometheus.CounterOpts{Namespace: namespace, Name: "client_connections_closed_total", Help: "Client connections closed."}),
		commands:        prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: namespace, Name: "commands_total", Help: "Commands answered, by command and result (ok, error, redirected)."}, []string{"command", "result"}),
		cmdLatency: prometheus.NewHistogramVec(prometheus.HistogramOpts{Namespace: namespace, Name: "command_duration_seconds", Help: "End-to-end command latency as seen by the proxy.",
			Buckets: []float64{.0001, .00025, .0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5}}, []string{"command"}),
		redirects:     prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: namespace, Name: "redirections_total", Help: "Cluster redirections and transient errors handled, by type (moved, ask, tryagain, clusterdown)."}, []string{"type"}),
		bytesIn:       prometheus.NewCounter(prometheus.CounterOpts{Namespace: namespace, Name: "client_received_bytes_total", Help: "Bytes received from clients."}),
		bytesOut:      prometheus.NewCounter(prometheus.CounterOpts{Namespace: namespace, Name: "client_sent_bytes_total", Help: "Bytes sent to clients."}),
		pipeline:      prometheus.NewHistogram(prometheus.HistogramOpts{Namespace: namespace, Name: "client_pipeline_depth", Help: "Commands read from a client in one batch.", Buckets: []float64{1, 2, 4, 8, 16, 32, 64, 128, 256, 512}}),
		protoErrors:   prometheus.NewCounter(prometheus.CounterOpts{Namespace: namespace, Name: "client_protocol_errors_total", Help: "Client connections closed for a protocol error or exceeded limit."}),
		backendErrors: prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: namespace, Name: "backend_errors_total", Help: "Backend connection failures by node and kind (connect, timeout, connection_lost)."}, []string{"node", "kind"}),
		backendConns:  prometheus.NewGaugeVec(prometheus.GaugeOpts{Namespace: namespace, Name: "backend_connections", Help: "Open shared connections per cluster node."}, []string{"node"}),
		refreshes:     prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: namespace, Name: "slotmap_refreshes_total", Help: "Slot map refreshes by trigger and result."}, []string{"trigger", "result"}),
		lastRefresh:   prometheus.NewGauge(prometheus.GaugeOpts{Namespace: namespace, Name: "slotmap_last_refresh_timestamp_seconds", Help: "Unix time of the last accepted slot map."}),
		slotsCovered:  prometheus.NewGauge(prometheus.GaugeOpts{Namespace: namespace, Name: "slotmap_slots_covered", Help: "Slots covered by the current slot map (16384 when complete)."}),
		slotmapEpoch:  prometheus.NewGauge(prometheus.GaugeOpts{Namespace: namespace, Name: "slotmap_epoch", Help: "Generation of the current slot map; increases with every accepted refresh."}),
		nodesKnown:    prometheus.NewGauge(prometheus.GaugeOpts{Namespace: namespace, Name: "backend_nodes", Help: "Cluster nodes known to the proxy."}),
	}
	if reg != nil {
		reg.MustRegister(m.clientsCurrent, m.clientsAccepted, m.clientsRejected, m.clientsClosed,
			m.commands, m.cmdLatency, m.redirects, m.bytesIn, m.bytesOut, m.pipeline, m.protoErrors,
			m.backendErrors, m.backendConns, m.refreshes, m.lastRefresh, m.slotsCovered, m.slotmapEpoch, m.nodesKnown)
	}
	return m
}

func (m *Metrics) refreshed(trigger string, sm *slotMap, _ time.Duration) {
	m.refreshes.WithLabelValues(trigger, "ok").Inc()
	m.lastRefresh.Set(float64(sm.loaded.UnixNano()) / 1e9)
	m.slotsCovered.Set(NumSlots)
	m.slotmapEpoch.Set(float64(sm.epoch))
}

func (m *Metrics) refreshFailed(trigger string) {
	m.refreshes.WithLabelValues(trigger, "error").Inc()
}
