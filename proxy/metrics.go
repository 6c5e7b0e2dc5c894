package proxy

import (
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/redis-carp-proxy/redis-carp-proxy/proxy/command"
)

const namespace = "redis_carp_proxy"

// Metrics are the proxy's Prometheus metrics. Label values are bounded: command names come
// from the command table (anything else is "other"), nodes are cluster members. Keys and
// client addresses are never label values.
type Metrics struct {
	// Client connections by VIP (the Endpoint they were accepted on).
	clientsCurrent  *prometheus.GaugeVec
	clientsAccepted *prometheus.CounterVec
	clientsRejected *prometheus.CounterVec
	clientsClosed   *prometheus.CounterVec
	// Client connections passed to a successor or adopted from a predecessor (handoff.go).
	handoffClients *prometheus.CounterVec
	handoverHolds  prometheus.Counter

	redirects   *prometheus.CounterVec
	protoErrors prometheus.Counter

	outputLimitClosed *prometheus.CounterVec
	clientMemEvicted  prometheus.Counter
	clientMemory      prometheus.Gauge
	denied            prometheus.Counter
	monitors          prometheus.Gauge   // monitor.go
	monitorLines      prometheus.Counter // monitor.go
	reloads           *prometheus.CounterVec

	backendErrors *prometheus.CounterVec
	backendConns  *prometheus.GaugeVec

	suspectNodes     prometheus.Gauge
	suspectTotal     *prometheus.CounterVec
	abandoned        *prometheus.CounterVec
	redirectBackoffs prometheus.Counter
	busyNodes        *prometheus.CounterVec // busy.go

	refreshes       *prometheus.CounterVec
	refreshDuration prometheus.Histogram
	lastRefresh     prometheus.Gauge
	slotsCovered    prometheus.Gauge
	slotmapEpoch    prometheus.Gauge
	nodesKnown      prometheus.Gauge
	buildInfo       *prometheus.GaugeVec

	sec   secMetrics   // security counters (docs/security.md)
	track trackMetrics // client-side caching (tracking.go)
}

// latencyBuckets cover 100 µs to 2.5 s: a proxied command on a LAN takes a few hundred µs.
var latencyBuckets = []float64{.0001, .00025, .0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5}

// NewMetrics creates the proxy metrics and registers them on reg (nil: not registered).
func NewMetrics(reg prometheus.Registerer) *Metrics {
	m := &Metrics{
		clientsCurrent:   prometheus.NewGaugeVec(prometheus.GaugeOpts{Namespace: namespace, Name: "client_connections", Help: "Client connections currently open, by VIP."}, []string{"vip"}),
		clientsAccepted:  prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: namespace, Name: "client_connections_accepted_total", Help: "Client connections accepted, by VIP."}, []string{"vip"}),
		clientsRejected:  prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: namespace, Name: "client_connections_rejected_total", Help: "Client connections refused, by VIP and reason."}, []string{"vip", "reason"}),
		clientsClosed:    prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: namespace, Name: "client_connections_closed_total", Help: "Client connections closed, by VIP."}, []string{"vip"}),
		handoffClients:   prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: namespace, Name: "handoff_clients_total", Help: "Client connections handed over in an in-place restart: passed to the successor or adopted from the predecessor."}, []string{"direction"}),
		handoverHolds:    prometheus.NewCounter(prometheus.CounterOpts{Namespace: namespace, Name: "handover_holds_total", Help: "Holds of a VIP's clients at the start of a planned handover (their next commands wait until the VIP has moved)."}),
		redirects:        prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: namespace, Name: "redirections_total", Help: "Cluster redirections and transient errors handled, by type (moved, ask, tryagain, clusterdown) and the node that sent them."}, []string{"type", "node"}),
		protoErrors:      prometheus.NewCounter(prometheus.CounterOpts{Namespace: namespace, Name: "client_protocol_errors_total", Help: "Client connections closed for a protocol error or exceeded limit."}),
		backendErrors:    prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: namespace, Name: "backend_errors_total", Help: "Backend connection failures by node and kind (connect, timeout, connection_lost)."}, []string{"node", "kind"}),
		suspectNodes:     prometheus.NewGauge(prometheus.GaugeOpts{Namespace: namespace, Name: "backend_suspect_nodes", Help: "Cluster nodes currently suspect (commands waiting past backend-suspect-after, a timeout, a failed or reset connection), until they answer again."}),
		suspectTotal:     prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: namespace, Name: "backend_suspect_total", Help: "Nodes becoming suspect, by node and reason (slow, timeout, connect, connection_lost)."}, []string{"node", "reason"}),
		abandoned:        prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: namespace, Name: "backend_abandoned_total", Help: "Times the connections of an unwell node were abandoned because the slot map moved its slots to another node."}, []string{"node"}),
		busyNodes:        prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: namespace, Name: "backend_busy_total", Help: "Times a node that kept commands waiting was found executing rather than gone, by node and reason (busy: a script past its busy-reply-threshold, loading: loading its dataset); its commands then wait up to backend-busy-timeout."}, []string{"node", "reason"}),
		redirectBackoffs: prometheus.NewCounter(prometheus.CounterOpts{Namespace: namespace, Name: "redirect_backoffs_total", Help: "Pauses taken by commands whose redirections looped (beyond max-redirects, within redirect-budget)."}),
		backendConns:     prometheus.NewGaugeVec(prometheus.GaugeOpts{Namespace: namespace, Name: "backend_connections", Help: "Open event-loop connections per cluster node (one per loop that has sent to it)."}, []string{"node"}),
		refreshes:        prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: namespace, Name: "slotmap_refreshes_total", Help: "Slot map refreshes by trigger and result."}, []string{"trigger", "result"}),
		refreshDuration: prometheus.NewHistogram(prometheus.HistogramOpts{Namespace: namespace, Name: "slotmap_refresh_duration_seconds", Help: "Time to load an accepted slot map.",
			Buckets: prometheus.ExponentialBuckets(0.0005, 4, 8)}),
		lastRefresh:       prometheus.NewGauge(prometheus.GaugeOpts{Namespace: namespace, Name: "slotmap_last_refresh_timestamp_seconds", Help: "Unix time of the last accepted slot map."}),
		slotsCovered:      prometheus.NewGauge(prometheus.GaugeOpts{Namespace: namespace, Name: "slotmap_slots_covered", Help: "Slots the cluster reported served in the last refresh (16384 when complete; an incomplete map is never used)."}),
		slotmapEpoch:      prometheus.NewGauge(prometheus.GaugeOpts{Namespace: namespace, Name: "slotmap_epoch", Help: "Generation of the current slot map; increases with every accepted refresh."}),
		nodesKnown:        prometheus.NewGauge(prometheus.GaugeOpts{Namespace: namespace, Name: "backend_nodes", Help: "Cluster nodes known to the proxy."}),
		buildInfo:         prometheus.NewGaugeVec(prometheus.GaugeOpts{Namespace: namespace, Name: "build_info", Help: "Always 1; the version label is the proxy's version."}, []string{"version"}),
		outputLimitClosed: prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: namespace, Name: "client_output_limit_closed_total", Help: "Clients disconnected for exceeding the output buffer limit, by class (normal, pubsub, monitor)."}, []string{"class"}),
		clientMemEvicted:  prometheus.NewCounter(prometheus.CounterOpts{Namespace: namespace, Name: "client_memory_evicted_total", Help: "Clients closed because the bytes held for all clients exceeded maxmemory-clients (those holding the most first)."}),
		clientMemory:      prometheus.NewGauge(prometheus.GaugeOpts{Namespace: namespace, Name: "client_memory_bytes", Help: "Bytes held for all clients together (replies and messages not yet written, commands not yet parsed), as maxmemory-clients counts them; updated every 100 ms."}),
		denied:            prometheus.NewCounter(prometheus.CounterOpts{Namespace: namespace, Name: "commands_denied_total", Help: "Commands refused by deny-commands."}),
		monitors:          prometheus.NewGauge(prometheus.GaugeOpts{Namespace: namespace, Name: "monitor_clients", Help: "Clients in MONITOR mode."}),
		monitorLines:      prometheus.NewCounter(prometheus.CounterOpts{Namespace: namespace, Name: "monitor_commands_total", Help: "Commands shown to MONITOR clients (once per command, whatever the number of monitors)."}),
		reloads:           prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: namespace, Name: "config_reloads_total", Help: "Configuration reloads by result (ok, error)."}, []string{"result"}),
	}
	m.buildInfo.WithLabelValues(Version).Set(1)
	m.sec = newSecMetrics(reg)
	m.track = newTrackMetrics(reg)
	if reg != nil {
		reg.MustRegister(m.clientsCurrent, m.clientsAccepted, m.clientsRejected, m.clientsClosed, m.handoffClients, m.handoverHolds,
			m.redirects, m.protoErrors,
			m.outputLimitClosed, m.clientMemEvicted, m.clientMemory, m.denied, m.reloads, m.monitors, m.monitorLines,
			m.backendErrors, m.backendConns, m.suspectNodes, m.suspectTotal, m.abandoned, m.busyNodes, m.redirectBackoffs, m.refreshes, m.refreshDuration, m.lastRefresh,
			m.slotsCovered, m.slotmapEpoch, m.nodesKnown, m.buildInfo)
	}
	return m
}

func (m *Metrics) refreshed(trigger string, sm *slotMap, d time.Duration) {
	m.refreshes.WithLabelValues(trigger, "ok").Inc()
	m.refreshDuration.Observe(d.Seconds())
	m.lastRefresh.Set(float64(sm.loaded.UnixNano()) / 1e9)
	m.slotsCovered.Set(command.NumSlots)
	m.slotmapEpoch.Set(float64(sm.epoch))
}

func (m *Metrics) refreshFailed(trigger string, covered int) {
	m.refreshes.WithLabelValues(trigger, "error").Inc()
	if covered >= 0 {
		m.slotsCovered.Set(float64(covered))
	}
}

// pendingDesc describes backend_pending_requests, computed when scraped.
var pendingDesc = prometheus.NewDesc(namespace+"_backend_pending_requests",
	"Commands queued for or awaiting a reply on the event loops' connections to a cluster node.", []string{"node"}, nil)

// pendingCollector reports the pending requests of every known node at scrape time, so
// the hot path only touches counters it needs anyway.
type pendingCollector struct{ c *cluster }

func (pc pendingCollector) Describe(ch chan<- *prometheus.Desc) { ch <- pendingDesc }

func (pc pendingCollector) Collect(ch chan<- prometheus.Metric) {
	pc.c.nodesMu.Lock()
	nodes := make([]*node, 0, len(pc.c.nodes))
	for _, n := range pc.c.nodes {
		nodes = append(nodes, n)
	}
	pc.c.nodesMu.Unlock()
	for _, n := range nodes {
		ch <- prometheus.MustNewConstMetric(pendingDesc, prometheus.GaugeValue, float64(n.pending()), n.addr)
	}
}

// proxyCommands are the commands the proxy answers itself that no Redis command table has.
var proxyCommands = map[string]string{"proxy": "proxy"}

// commandLabel returns the command label of r: a command of the command table (which comes
// from the cluster's COMMAND reply and the built-in table, so it is bounded), a proxy
// command, or "other". A client sending random command names cannot add label values.
func commandLabel(t *command.Table, r *request) string {
	if r.info != nil {
		return r.info.Name
	}
	if len(r.args) == 0 {
		return "other"
	}
	if info := t.Lookup(r.args[0]); info != nil {
		return info.Name
	}
	if len(r.args[0]) <= 8 {
		if name, ok := proxyCommands[lowerName(r.args[0])]; ok {
			return name
		}
	}
	return "other"
}

// secMetrics are the counters of the security limits (listed in docs/security.md).
type secMetrics struct {
	panics       *prometheus.CounterVec
	authFailures prometheus.Counter
}

func newSecMetrics(reg prometheus.Registerer) secMetrics {
	m := secMetrics{
		panics:       prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: namespace, Name: "panics_recovered_total", Help: "Panics recovered while serving one client (that client was closed), by where: loop, loop_backend, loop_task, slow, session."}, []string{"where"}),
		authFailures: prometheus.NewCounter(prometheus.CounterOpts{Namespace: namespace, Name: "auth_failures_total", Help: "Failed AUTH attempts (AUTH and HELLO AUTH)."}),
	}
	if reg != nil {
		reg.MustRegister(m.panics, m.authFailures)
	}
	return m
}

// trackMetrics are the client-side caching metrics (CLIENT TRACKING, tracking.go).
type trackMetrics struct {
	keys          prometheus.Gauge
	clients       prometheus.Gauge
	invalidations *prometheus.CounterVec
	flushes       *prometheus.CounterVec
}

func newTrackMetrics(reg prometheus.Registerer) trackMetrics {
	m := trackMetrics{
		keys:          prometheus.NewGauge(prometheus.GaugeOpts{Namespace: namespace, Name: "tracking_keys", Help: "Keys in the proxy's client-side caching table (read by clients with CLIENT TRACKING on, not yet invalidated)."}),
		clients:       prometheus.NewGauge(prometheus.GaugeOpts{Namespace: namespace, Name: "tracking_clients", Help: "Clients with CLIENT TRACKING on."}),
		invalidations: prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: namespace, Name: "tracking_invalidations_total", Help: "Invalidation messages with keys sent to tracking clients, by reason (write, table_full, slot_moved, connection_lost, connection_made, node_removed)."}, []string{"reason"}),
		flushes:       prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: namespace, Name: "tracking_flushes_total", Help: "Null invalidation messages (flush everything) sent to tracking clients, by reason (flushall, slot_moved, connection_lost, connection_made, node_removed)."}, []string{"reason"}),
	}
	if reg != nil {
		reg.MustRegister(m.keys, m.clients, m.invalidations, m.flushes)
	}
	return m
}
