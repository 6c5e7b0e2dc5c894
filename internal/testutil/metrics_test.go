package testutil

import (
	"testing"

	"github.com/prometheus/client_golang/prometheus"
)

func TestMetricSum(t *testing.T) {
	reg := prometheus.NewRegistry()
	c := prometheus.NewCounterVec(prometheus.CounterOpts{Name: "c_total"}, []string{"type", "node"})
	h := prometheus.NewHistogram(prometheus.HistogramOpts{Name: "h_seconds"})
	reg.MustRegister(c, h)
	c.WithLabelValues("moved", "a").Add(2)
	c.WithLabelValues("moved", "b").Add(3)
	c.WithLabelValues("ask", "a").Add(5)
	h.Observe(1)
	h.Observe(2)
	for _, tc := range []struct {
		name   string
		labels []string
		want   float64
	}{
		{"c_total", nil, 10},
		{"c_total", []string{"type", "moved"}, 5},
		{"c_total", []string{"type", "moved", "node", "b"}, 3},
		{"c_total", []string{"type", "tryagain"}, 0},
		{"h_seconds", nil, 2},
		{"missing", nil, 0},
	} {
		if got := MetricSum(t, reg, tc.name, tc.labels...); got != tc.want {
			t.Errorf("MetricSum(%s, %v) = %v, want %v", tc.name, tc.labels, got, tc.want)
		}
	}
}
