package proxy

import (
	"sort"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// The request-path metrics (commands, latencies, client bytes, pipeline depth, backend round
// trips) are counted without locks or atomics by the event loop that serves the request,
// in the loop's own statSet (a slow-path command is counted by its client's loop when its
// reply comes back). statsCollector adds them up when Prometheus scrapes: it asks every loop
// for a copy of its counters (a task run between two passes), so a scrape sees every
// command answered before it, exactly.

// histo is a histogram with fixed upper bounds (cumulated when exported).
type histo struct {
	counts []uint64 // counts[i]: values <= bounds[i] and > bounds[i-1]; the last is +Inf
	sum    float64
	n      uint64
}

func (h *histo) observe(bounds []float64, v float64) {
	if h.counts == nil {
		h.counts = make([]uint64, len(bounds)+1)
	}
	i := 0 // the first bound >= v; a linear scan: most observations fall in the low buckets
	for i < len(bounds) && bounds[i] < v {
		i++
	}
	h.counts[i]++
	h.sum += v
	h.n++
}

func (h *histo) add(o *histo) {
	if o.counts == nil {
		return
	}
	if h.counts == nil {
		h.counts = make([]uint64, len(o.counts))
	}
	for i, c := range o.counts {
		h.counts[i] += c
	}
	h.sum += o.sum
	h.n += o.n
}

func (h *histo) metric(desc *prometheus.Desc, bounds []float64, labels ...string) prometheus.Metric {
	buckets := make(map[float64]uint64, len(bounds))
	var cum uint64
	for i, b := range bounds {
		if h.counts != nil {
			cum += h.counts[i]
		}
		buckets[b] = cum
	}
	return prometheus.MustNewConstHistogram(desc, h.n, h.sum, buckets, labels...)
}

// cmdStat counts one command's results and latencies.
type cmdStat struct {
	ok, errors, redirected uint64
	lat                    histo
}

// statSet is one owner's share of the request-path metrics.
type statSet struct {
	cmds     map[string]*cmdStat
	bytesIn  uint64
	bytesOut uint64
	pipeline histo
	rtt      map[string]*histo // by node address
}

func newStatSet() *statSet {
	return &statSet{cmds: map[string]*cmdStat{}, rtt: map[string]*histo{}}
}

// command counts one answered command; result is "ok", "error" or "redirected".
func (st *statSet) command(label string, result string, d time.Duration) {
	cs := st.cmds[label]
	if cs == nil {
		cs = &cmdStat{}
		st.cmds[label] = cs
	}
	switch result {
	case "ok":
		cs.ok++
	case "error":
		cs.errors++
	default:
		cs.redirected++
	}
	cs.lat.observe(latencyBuckets, d.Seconds())
}

func (st *statSet) backendRTT(node string, d time.Duration) {
	h := st.rtt[node]
	if h == nil {
		h = &histo{}
		st.rtt[node] = h
	}
	h.observe(latencyBuckets, d.Seconds())
}

// addTo adds st to sum.
func (st *statSet) addTo(sum *statSet) {
	for k, cs := range st.cmds {
		t := sum.cmds[k]
		if t == nil {
			t = &cmdStat{}
			sum.cmds[k] = t
		}
		t.ok += cs.ok
		t.errors += cs.errors
		t.redirected += cs.redirected
		t.lat.add(&cs.lat)
	}
	sum.bytesIn += st.bytesIn
	sum.bytesOut += st.bytesOut
	sum.pipeline.add(&st.pipeline)
	for k, h := range st.rtt {
		t := sum.rtt[k]
		if t == nil {
			t = &histo{}
			sum.rtt[k] = t
		}
		t.add(h)
	}
}

var (
	pipelineBuckets = []float64{1, 2, 4, 8, 16, 32, 64, 128, 256, 512}

	commandsDesc = prometheus.NewDesc(namespace+"_commands_total",
		"Commands answered, by command (known commands, else other) and result (ok, error, redirected).", []string{"command", "result"}, nil)
	cmdLatencyDesc = prometheus.NewDesc(namespace+"_command_duration_seconds",
		"End-to-end command latency as seen by the proxy, by command (known commands, else other).", []string{"command"}, nil)
	bytesInDesc  = prometheus.NewDesc(namespace+"_client_received_bytes_total", "Bytes received from clients.", nil, nil)
	bytesOutDesc = prometheus.NewDesc(namespace+"_client_sent_bytes_total", "Bytes of replies sent to clients.", nil, nil)
	pipelineDesc = prometheus.NewDesc(namespace+"_client_pipeline_depth", "Commands read from a client in one batch.", nil, nil)
	rttDesc      = prometheus.NewDesc(namespace+"_backend_request_duration_seconds",
		"Round trip of a command on a shared backend connection, from its write to its reply, by node.", []string{"node"}, nil)
)

// statsCollector exports the sum of the shared statSet and every loop's.
type statsCollector struct{ s *Server }

func (c statsCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{commandsDesc, cmdLatencyDesc, bytesInDesc, bytesOutDesc, pipelineDesc, rttDesc} {
		ch <- d
	}
}

func (c statsCollector) Collect(ch chan<- prometheus.Metric) {
	sum := c.s.statsSnapshot()
	labels := make([]string, 0, len(sum.cmds))
	for k := range sum.cmds {
		labels = append(labels, k)
	}
	sort.Strings(labels)
	for _, k := range labels {
		cs := sum.cmds[k]
		for _, r := range []struct {
			name string
			n    uint64
		}{{"ok", cs.ok}, {"error", cs.errors}, {"redirected", cs.redirected}} {
			if r.n > 0 {
				ch <- prometheus.MustNewConstMetric(commandsDesc, prometheus.CounterValue, float64(r.n), k, r.name)
			}
		}
		ch <- cs.lat.metric(cmdLatencyDesc, latencyBuckets, k)
	}
	ch <- prometheus.MustNewConstMetric(bytesInDesc, prometheus.CounterValue, float64(sum.bytesIn))
	ch <- prometheus.MustNewConstMetric(bytesOutDesc, prometheus.CounterValue, float64(sum.bytesOut))
	ch <- sum.pipeline.metric(pipelineDesc, pipelineBuckets)
	for node, h := range sum.rtt {
		ch <- h.metric(rttDesc, latencyBuckets, node)
	}
}

// statsSnapshot adds up every loop's statSet (each copied by its loop).
func (s *Server) statsSnapshot() *statSet {
	sum := newStatSet()
	for _, l := range s.loops {
		part := newStatSet()
		if l.call(func() { l.stats.addTo(part) }, time.Second) {
			part.addTo(sum)
		}
	}
	return sum
}
